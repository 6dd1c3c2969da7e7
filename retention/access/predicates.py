"""Who may do what: every authorisation question of the product, each answered once.

A question about one object is a predicate ("may this member decide this step?"); where a
page, the API or a notification lists what a member may act on or see, the queryset sits
beside the predicate and states the same rule, clause for clause, so a list and a button
cannot disagree. Pages, the API, the inbox and its badge, notifications and the actions
all ask here. Nothing here changes anything.

May import: ``retention.models``, ``retention.records``, ``retention.policies``,
``retention.errors`` and ``audit``.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from retention.models import (
    ApprovalStep,
    Conversation,
    DeletionRequest,
    Department,
    Hold,
    Member,
    RequestMethod,
    RequestStatus,
    StepStatus,
)
from retention.models.roles import APPROVER_ROLES, AUDIT_LOG_READERS, Role
from retention.models.rules import RetentionRule, RuleStatus

# Roles that oversee every request and hold: security co-approves wipes, admins configure,
# auditors review.
OVERSIGHT_ROLES = (Role.SECURITY, Role.ADMIN, Role.AUDITOR)
# The roles approval steps name: whoever holds one has an approvals inbox.
DECIDING_ROLES = tuple(r for r in Role if r.value in APPROVER_ROLES)
HOLD_READERS = (Role.MANAGER, *OVERSIGHT_ROLES)
REPORT_READERS = (Role.AUDITOR, Role.ADMIN)
REVIEW_READERS = (Role.AUDITOR, Role.ADMIN)
# Admins manage rules; security officers and auditors read them.
RULE_READERS = (Role.ADMIN, Role.SECURITY, Role.AUDITOR)
# A request can be withdrawn until its run starts.
CANCELLABLE = (RequestStatus.PENDING, RequestStatus.APPROVED)


def require(allowed: bool, message: str | None = None) -> None:
    """Refuse (the 403 page, the API's 403) unless ``allowed``."""
    if not allowed:
        raise PermissionDenied(message or _("Your roles do not allow this action."))


# --- filing -------------------------------------------------------------------------------


def filing_methods(member: Member) -> list[str]:
    """The methods the member may file from the wizard: batch for staff and managers,
    server-side wipes for managers and admins (``refusal_to_file`` has the final word on
    each scope). Personal deletions are filed from the conversation page."""
    if member.has_role(Role.AUDITOR):
        return []
    methods = []
    if member.has_role(Role.STAFF, Role.MANAGER):
        methods.append(RequestMethod.BATCH.value)
    if member.has_role(Role.MANAGER, Role.ADMIN):
        methods.append(RequestMethod.SERVER.value)
    return methods


def may_file(member: Member) -> bool:
    """Whether the member files any request from the wizard."""
    return bool(filing_methods(member))


def refusal_to_file(
    member: Member, method: str, *, paths: list[str], whole_company: bool
) -> str | None:
    """Why ``member`` may not file a ``method`` request over the departments with these
    ``paths`` (or the whole company); None: they may. Personal deletions are kept to the
    member's own conversations when their scope is resolved."""
    if member.has_role(Role.AUDITOR):
        return _("Auditors review deletions; they do not file them.")
    if method == RequestMethod.PERSONAL:
        return None
    own = member.department
    managed = own.path if member.has_role(Role.MANAGER) and own else None

    def inside(path: str, root: str | None) -> bool:
        return root is not None and path.startswith(root)

    if method == RequestMethod.SERVER:
        if member.has_role(Role.ADMIN):
            return None
        if not managed:
            return _("Only managers and admins file server-side wipes.")
        only_root = (
            own.parent_id is None
            and not Department.objects.filter(parent__isnull=True).exclude(pk=own.pk).exists()
        )
        if whole_company and not only_root:
            return _("Only an admin or the company's manager may wipe the whole company.")
        if not all(inside(p, managed) for p in paths):
            return _("A manager wipes only within the departments they manage.")
        return None
    # Batch: a manager within their subtree; staff within their own department's subtree.
    if managed and all(inside(p, managed) for p in paths):
        return None
    staff_ok = member.has_role(Role.STAFF) and own is not None
    if staff_ok and all(inside(p, own.path) for p in paths):
        return None
    if not (managed or member.has_role(Role.STAFF)):
        return _("Only staff and managers file batch deletions.")
    return _("This scope reaches beyond the departments you may delete in.")


# --- seeing requests ----------------------------------------------------------------------


def requests_for(viewer: Member) -> QuerySet[DeletionRequest]:
    """Requests the viewer may see: their own, those they decided or may decide, and for
    managers those inside their subtree. Anything else is a 404."""
    qs = DeletionRequest.objects.select_related("requester", "scope_root")
    if viewer.has_role(*OVERSIGHT_ROLES):
        return qs
    scope = Q(requester=viewer) | Q(steps__approver=viewer)
    if viewer.has_role(Role.MANAGER) and viewer.department_id:
        path = viewer.department.path
        scope |= Q(scope_root__path__startswith=path)
        # Requests whose manager step sits above the viewer's department still reach
        # them when they may approve it (they manage an ancestor of the step).
        scope |= Q(steps__role=Role.MANAGER, steps__department__path__startswith=path)
    return qs.filter(pk__in=DeletionRequest.objects.filter(scope).values("pk"))


# --- deciding an approval step ------------------------------------------------------------
# One rule in three shapes: refusal_to_decide (this step, this member: why not),
# steps_awaiting (the steps a member may decide: the inbox and its badge) and
# possible_approvers / eligible_approvers (the members who may decide a step, planned or
# filed). Each states the same clauses: (1) the request and step are pending, (2) not the
# requester, (3) never an auditor, (4) active, (5) no second step of one request, (6) the
# step's role, and for a manager step a manager of one of the step's department's
# ancestors (or of that department).


def refusal_to_decide(step: ApprovalStep, member: Member) -> str | None:
    """Why ``member`` may not decide ``step`` (None: they may)."""
    request = step.request
    if request.status != RequestStatus.PENDING or step.status != StepStatus.PENDING:  # (1)
        return "not-pending"
    if member.pk == request.requester_id:  # (2)
        return _("You cannot decide your own request.")
    if member.has_role(Role.AUDITOR):  # (3)
        return _("Auditors do not approve deletions.")
    if not member.is_active:  # (4)
        return _("Inactive members cannot decide.")
    decided_before = request.steps.exclude(pk=step.pk).filter(approver=member).exists()  # (5)
    if decided_before:
        return _("You already decided another step of this request.")
    if step.role == Role.MANAGER:  # (6)
        if not member.has_role(Role.MANAGER) or member.department_id is None:
            return _("This step needs a manager.")
        if step.department is None or member.department_id not in step.department.ancestor_ids():
            return _("This step needs a manager of the departments in scope.")
        return None
    if not member.has_role(Role(step.role)):
        return _("This step needs a different role.")
    return None


def may_decide(step: ApprovalStep | None, member: Member) -> bool:
    """Whether ``member`` may approve or reject ``step`` now (a request's current step;
    None, when it waits for no decision, is never decidable)."""
    return step is not None and refusal_to_decide(step, member) is None


def may_decide_request(request: DeletionRequest, member: Member) -> bool:
    """Whether ``member`` may approve or reject the step ``request`` waits on now (a
    request has at most one pending step), for callers that do not show the step."""
    pending = request.steps.filter(status=StepStatus.PENDING)
    return any(refusal_to_decide(step, member) is None for step in pending)


def is_approver(member: Member) -> bool:
    """Whether the member holds a role that approval steps name (they have an inbox)."""
    return member.has_role(*DECIDING_ROLES)


def steps_awaiting(member: Member) -> QuerySet[ApprovalStep]:
    """Pending steps of pending requests that ``member`` may decide (the approvals inbox)."""
    if member.has_role(Role.AUDITOR) or not member.is_active:  # (3), (4)
        return ApprovalStep.objects.none()
    roles = [r for r in DECIDING_ROLES if member.has_role(r)]
    if not roles:
        return ApprovalStep.objects.none()
    qs = (
        ApprovalStep.objects.filter(
            status=StepStatus.PENDING,  # (1)
            request__status=RequestStatus.PENDING,
            role__in=[str(r) for r in roles],  # (6)
        )
        .exclude(request__requester=member)  # (2)
        .exclude(request__steps__approver=member)  # (5)
        .select_related("request", "request__requester", "department")
    )
    if member.has_role(Role.MANAGER) and member.department_id:  # (6)
        manager_steps = qs.filter(
            role=Role.MANAGER, department__path__startswith=member.department.path
        )
        other_steps = qs.exclude(role=Role.MANAGER)
        qs = manager_steps | other_steps
    else:
        qs = qs.exclude(role=Role.MANAGER)
    return qs.distinct().order_by("request__filed_at")


def possible_approvers(
    role: str, department: Department | None, *, requester: Member
) -> QuerySet[Member]:
    """Who could decide a step of ``role`` (over ``department`` for a manager step) of a
    request ``requester`` files, before the request exists: clauses (2), (3), (4), (6)."""
    qs = (
        Member.objects.filter(is_active=True, groups__name=role)  # (4), (6)
        .exclude(pk=requester.pk)  # (2)
        .exclude(groups__name=Role.AUDITOR)  # (3)
    )
    if role == Role.MANAGER:  # (6)
        qs = qs.filter(department__in=department.ancestor_ids() if department else [])
    return qs


def eligible_approvers(step: ApprovalStep) -> list[Member]:
    """Everyone who may decide ``step`` now: who the inbox notifications go to."""
    candidates = Member.objects.filter(is_active=True, groups__name=step.role).distinct()
    return [m for m in candidates if refusal_to_decide(step, m) is None]


# --- cancelling and restoring one's own deletion --------------------------------------------


def is_cancellable(request: DeletionRequest) -> bool:
    """Whether the request can still be withdrawn (its run has not started)."""
    return request.status in CANCELLABLE


def is_requester_or_admin(request: DeletionRequest, member: Member) -> bool:
    """Who may withdraw a request: whoever filed it, or an admin."""
    return request.requester_id == member.pk or member.has_role(Role.ADMIN)


def may_cancel(request: DeletionRequest, member: Member) -> bool:
    return is_cancellable(request) and is_requester_or_admin(request, member)


def restorable_q() -> Q:
    """Personal removals that can still be restored (PersonalRemoval rows)."""
    return Q(restored_at__isnull=True, restorable_until__gt=timezone.now())


def is_own_personal_deletion(request: DeletionRequest, member: Member) -> bool:
    """Only the member who deleted something on their side brings it back."""
    return request.method == RequestMethod.PERSONAL and request.requester_id == member.pk


def may_restore_personal(request: DeletionRequest, member: Member) -> bool:
    return (
        is_own_personal_deletion(request, member)
        and request.removals.filter(restorable_q()).exists()
    )


# --- a participant's own side of a conversation ------------------------------------------------


def own_conversations(member: Member) -> QuerySet[Conversation]:
    """The conversations the member takes part in: what they hide or delete on their side."""
    return Conversation.objects.filter(participant__member=member)


def takes_part_in(conversation: Conversation, member: Member) -> bool:
    return own_conversations(member).filter(pk=conversation.pk).exists()


# --- holds and protection --------------------------------------------------------------------


def may_see_holds(member: Member) -> bool:
    """Who opens the holds page (``holds_for`` says which holds they see)."""
    return member.has_role(*HOLD_READERS)


def holds_for(viewer: Member) -> QuerySet[Hold]:
    """Security officers, admins and auditors see every hold; managers those touching
    their subtree; nobody else sees holds (they only see their effect)."""
    qs = Hold.objects.select_related("placed_by", "released_by").prefetch_related(
        "conversations", "departments"
    )
    if viewer.has_role(*OVERSIGHT_ROLES):
        return qs
    if viewer.has_role(Role.MANAGER) and viewer.department_id:
        path = viewer.department.path
        ids = Hold.objects.filter(
            Q(departments__path__startswith=path)
            | Q(conversations__department__path__startswith=path)
        ).values("pk")
        return qs.filter(pk__in=ids)
    return Hold.objects.none()


def may_manage_holds(member: Member) -> bool:
    """Security officers place and release holds."""
    return member.has_role(Role.SECURITY)


def may_set_protected(member: Member) -> bool:
    return member.has_role(Role.ADMIN)


# --- configuration ---------------------------------------------------------------------------


def may_see_frequent_deleters(member: Member) -> bool:
    """The security officer (and admins) see who deletes often, across the company."""
    return member.has_role(Role.SECURITY, Role.ADMIN)


def may_change_policies(member: Member) -> bool:
    return member.has_role(Role.ADMIN)


def may_grant_quota(member: Member) -> bool:
    return member.has_role(Role.ADMIN)


def may_lift_lockouts(member: Member) -> bool:
    return member.has_role(Role.ADMIN)


def may_oversee_authenticators(member: Member) -> bool:
    """Admins see everyone's authenticators and tokens, and reset an authenticator."""
    return member.has_role(Role.ADMIN)


def may_use_admin_site(member: Member) -> bool:
    """The admin site is for active staff accounts with the admin role (the second factor
    is checked on top, by the site)."""
    return bool(member.is_active and member.is_staff and member.has_role(Role.ADMIN))


# --- the recycle bin -------------------------------------------------------------------------


def may_restore_from_bin(member: Member) -> bool:
    """Managers (within their subtree) and admins restore from the shared recycle bin;
    auditors only look, whatever other role they hold."""
    return member.has_role(Role.MANAGER, Role.ADMIN) and not member.has_role(Role.AUDITOR)


# --- audit log, reports, reviews and rules ----------------------------------------------------


def may_read_audit_log(member: Member) -> bool:
    """The explorer, its exports, chain verification and digests."""
    return member.has_role(*AUDIT_LOG_READERS)


def may_read_reports(member: Member) -> bool:
    return member.has_role(*REPORT_READERS)


def require_report_reader(member: Member) -> None:
    require(may_read_reports(member), _("Only auditors and admins read the audit reports."))


def may_read_reviews(member: Member) -> bool:
    return member.has_role(*REVIEW_READERS)


def may_decide_reviews(member: Member) -> bool:
    """Auditors sign off or flag compliance reviews (not one of a deletion they took
    part in: the review service checks that)."""
    return member.has_role(Role.AUDITOR)


def may_read_rules(member: Member) -> bool:
    return member.has_role(*RULE_READERS)


def may_manage_rules(member: Member) -> bool:
    return member.has_role(Role.ADMIN)


def rule_awaits_approval_q() -> Q:
    """Rules, or changes to them, that wait for a second admin."""
    return Q(status=RuleStatus.PENDING) | Q(proposed_keep_days__isnull=False)


def rule_awaits_approval(rule: RetentionRule) -> bool:
    """``rule_awaits_approval_q`` for a rule already loaded."""
    return rule.status == RuleStatus.PENDING or rule.proposed_keep_days is not None


def may_approve_rule(rule: RetentionRule, member: Member) -> bool:
    """A second admin approves a rule, or a change to it: not the one who proposed it."""
    return (
        may_manage_rules(member) and rule_awaits_approval(rule) and rule.proposed_by_id != member.pk
    )


def rules_awaiting(member: Member) -> QuerySet[RetentionRule]:
    """Rules (or changes to them) that wait for a second admin, and this admin may approve."""
    if not may_manage_rules(member):
        return RetentionRule.objects.none()
    return (
        RetentionRule.objects.filter(rule_awaits_approval_q())
        .exclude(proposed_by=member)
        .select_related("department", "proposed_by")
        .order_by("proposed_at")
    )
