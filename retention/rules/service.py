"""Retention rules: which conversations a rule governs, its dry run, its approval and its
daily run.

Precedence, the same everywhere (the dry run, the daily run, a conversation's
"effective policy"):

1. A hold beats every rule: held conversations are never touched.
2. A rule governs the conversations it matches (its department subtree and/or kind,
   minus its exclusions) unless another approved rule that matches them keeps longer.
   Keeping beats deleting: the longest keep wins; between equal keeps the gentler
   action wins (recycle bin, then archive, then purge), then the older rule.

A run is a system deletion request whose frozen scope is the dry run of that moment,
carried out by the same checkpointed engine as any approved request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from operator import or_

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

import audit.log as audit
from audit.events import EventType
from retention.access.second_factor import enforce
from retention.errors import Conflict
from retention.governance.decisions import do_cancel_request
from retention.governance.filing import settled_high_water_mark
from retention.models import (
    Conversation,
    DeletionRequest,
    Department,
    Member,
    Message,
    Participant,
    RequestConversation,
    RequestMethod,
    RequestStatus,
    Sensitivity,
)
from retention.models.roles import Role
from retention.models.rules import APPROVED_STATUSES, RetentionRule, RuleAction, RuleStatus
from retention.notifications import notify
from retention.policies import get_policy
from retention.records.holds import held_conversations_q
from retention.wipes import execution

# Admins manage rules; security officers and auditors read them.
RULE_READERS = (Role.ADMIN, Role.SECURITY, Role.AUDITOR)

# Frozen-scope rows a retention run writes per transaction.
TARGETS_PER_TRANSACTION = 2000

ACTION_GENTLENESS = {RuleAction.BIN: 0, RuleAction.ARCHIVE: 1, RuleAction.PURGE: 2}


def require_admin(member: Member) -> None:
    if not member.has_role(Role.ADMIN):
        raise PermissionDenied(_("Only admins manage retention rules."))


# --- which conversations a rule governs ----------------------------------------------------


def matches_q(rule: RetentionRule) -> Q:
    """Conversations the rule's own terms cover (before holds and other rules). A rule
    without terms covers everything: an explicit condition, because an empty Q() would
    vanish when OR-ed with others and exclude nothing when negated."""
    q = Q(pk__isnull=False)
    if rule.department_id:
        q &= Q(department__path__startswith=rule.department.path)
    if rule.kind:
        q &= Q(kind=rule.kind)
    # A subquery, not a list read here: one rule's terms cost no query of their own.
    q &= ~Q(pk__in=rule.excluded_conversations.values("pk"))
    return q


def _rank(rule: RetentionRule, keep_days: int) -> tuple:
    # Higher ranks win: longer keep, then gentler action, then the older rule.
    return (keep_days, -ACTION_GENTLENESS[rule.action], -rule.pk)


def _standing(rule: RetentionRule, now: datetime | None) -> tuple:
    """A rule's rank against the others: by the keep it applies now (an approved
    shortening counts only once its grace is over), the same for every comparison, so
    that every overlap belongs to exactly one rule."""
    return _rank(rule, in_force_keep_days(rule, now))


def in_force_keep_days(rule: RetentionRule, now: datetime | None = None) -> int:
    """The keep the rule applies now: an approved shorter keep bites only after grace.
    Of an approved shortening still in grace, the longer keep counts."""
    now = now or timezone.now()
    if rule.next_keep_days is not None and rule.next_keep_from and rule.next_keep_from <= now:
        return rule.next_keep_days
    return rule.keep_days


def governed_conversations(
    rule: RetentionRule, *, now: datetime | None = None, keep_days: int | None = None
) -> QuerySet[Conversation]:
    """Conversations this rule governs: it matches them and no approved rule that keeps
    longer (or as long, but gentler or older) matches them too. Holds not yet applied."""
    rank = _rank(rule, keep_days) if keep_days else _standing(rule, now)
    qs = Conversation.objects.filter(matches_q(rule))
    others = RetentionRule.objects.filter(status__in=APPROVED_STATUSES).exclude(pk=rule.pk)
    beating = [
        matches_q(o) for o in others.select_related("department") if _standing(o, now) > rank
    ]
    if beating:
        qs = qs.exclude(reduce(or_, beating))
    return qs


@dataclass
class Effective:
    rule: RetentionRule | None
    keep_days: int | None
    held: bool
    matching: list[RetentionRule]
    why: str


def effective_policy(conversation: Conversation, *, now: datetime | None = None) -> Effective:
    """What happens to a conversation's records, and why (for its page and the API)."""
    held = Conversation.objects.filter(held_conversations_q(), pk=conversation.pk).exists()
    approved = list(
        RetentionRule.objects.filter(status__in=APPROVED_STATUSES).select_related("department")
    )
    # Which rules cover it, in one query: a flag per rule.
    covered = Conversation.objects.filter(pk=conversation.pk).aggregate(
        **{f"rule_{r.pk}": Count("pk", filter=matches_q(r)) for r in approved}
    )
    matching = [r for r in approved if covered[f"rule_{r.pk}"]]
    if held:
        return Effective(
            None, None, True, matching, _("On hold: no rule touches it until the hold is released.")
        )
    if conversation.is_protected:
        return Effective(
            None,
            None,
            False,
            matching,
            _(
                "Protected: retention rules leave it; only a deletion request that confirms it "
                "by name can take its records."
            ),
        )
    if not matching:
        return Effective(
            None,
            None,
            False,
            [],
            _("No retention rule covers it: it is kept until someone deletes it."),
        )
    winner = max(matching, key=lambda r: _standing(r, now))
    keep = in_force_keep_days(winner, now)
    if len(matching) == 1:
        why = _("Only this rule covers it.")
    else:
        why = _("%(n)s rules cover it; the longest keep wins (keeping beats deleting).") % {
            "n": len(matching)
        }
    return Effective(winner, keep, False, matching, why)


# --- the dry run -----------------------------------------------------------------------------


@dataclass
class RuleMeasurement:
    preview: dict
    targets: list[tuple[int, int, int]]
    cutoff: datetime
    max_message_id: int


def measure_rule(
    rule: RetentionRule,
    *,
    now: datetime | None = None,
    max_message_id: int | None = None,
    keep_days: int | None = None,
) -> RuleMeasurement:
    """Exactly what the rule would take at ``now`` (with ``keep_days`` instead of its own,
    for a proposed change), by department, and what holds keep."""
    now = now or timezone.now()
    keep = keep_days or in_force_keep_days(rule, now)
    cutoff = now - timedelta(days=keep)
    if max_message_id is None:
        max_message_id = settled_high_water_mark()
    governed = governed_conversations(rule, now=now, keep_days=keep)
    held_ids = set(governed.filter(held_conversations_q()).values_list("pk", flat=True))
    # Protected conversations go only with a request that confirms each one by name: a
    # rule leaves them, and its dry run says how much it leaves.
    protected_ids = set(
        governed.filter(is_protected=True).exclude(pk__in=held_ids).values_list("pk", flat=True)
    )
    old = Q(sent_at__lt=cutoff, id__lte=max_message_id)
    taken = governed.exclude(pk__in=held_ids | protected_ids)
    rows = list(
        Message.objects.filter(old, conversation__in=taken.values("pk"))
        .values_list("conversation_id", "conversation__department_id")
        .annotate(
            n=Count("id"),
            high=Count("id", filter=Q(sensitivity=Sensitivity.HIGH)),
            size=Sum("body_bytes"),
        )
        .order_by()
    )
    departments: dict[int, dict] = {}
    for _conversation, department, n, high, size in rows:
        row = departments.setdefault(
            department, {"messages": 0, "conversations": 0, "high_sensitivity": 0, "bytes": 0}
        )
        row["messages"] += n
        row["conversations"] += 1
        row["high_sensitivity"] += high
        row["bytes"] += size or 0
    names = dict(Department.objects.filter(pk__in=departments).values_list("pk", "name"))

    def left(ids: set[int]) -> dict:
        messages = Message.objects.filter(old, conversation_id__in=ids).count() if ids else 0
        return {"conversations": len(ids), "messages": messages}

    preview = {
        "messages": sum(d["messages"] for d in departments.values()),
        "conversations": len(rows),
        "high_sensitivity": sum(d["high_sensitivity"] for d in departments.values()),
        "bytes": sum(d["bytes"] for d in departments.values()),
        "by_department": [
            {"department": pk, "name": names.get(pk, ""), **row}
            for pk, row in sorted(departments.items(), key=lambda item: -item[1]["messages"])
        ],
        "excluded": {"held": left(held_ids), "protected": left(protected_ids)},
        "keep_days": keep,
        "cutoff": cutoff.isoformat(),
        "max_message_id": max_message_id,
        "computed_at": now.isoformat(),
    }
    return RuleMeasurement(preview, [(c, d, n) for c, d, n, *_ in rows], cutoff, max_message_id)


# --- managing rules --------------------------------------------------------------------------


def _validate(keep_days, action) -> None:
    errors = {}
    if not isinstance(keep_days, int) or isinstance(keep_days, bool) or not 1 <= keep_days <= 36500:
        errors["keep_days"] = [_("Keep for a whole number of days, from 1 to 36500.")]
    if action not in RuleAction.values:
        errors["action"] = [_("Choose bin, archive or purge.")]
    if errors:
        raise ValidationError(errors)


def do_create_rule(
    *,
    acting_user: Member,
    name: str,
    keep_days: int,
    action: str,
    department: Department | None = None,
    kind: str = "",
    excluded: list[Conversation] = (),
) -> RetentionRule:
    """A new rule starts as a draft: it does nothing until enabled and approved."""
    require_admin(acting_user)
    _validate(keep_days, action)
    if not (name or "").strip():
        raise ValidationError({"name": [_("Give the rule a name.")]})
    with transaction.atomic():
        rule = RetentionRule.objects.create(
            name=name.strip(),
            department=department,
            kind=kind,
            keep_days=keep_days,
            action=action,
            created_by=acting_user,
        )
        rule.excluded_conversations.set(excluded)
        audit.record(
            EventType.RULE_CREATED,
            actor=acting_user,
            target=rule,
            department_id=rule.department_id,
            details=_describe(rule),
        )
    return rule


def _describe(rule: RetentionRule) -> dict:
    return {
        "name": rule.name,
        "department": rule.department_id,
        "kind": rule.kind,
        "keep_days": rule.keep_days,
        "action": rule.action,
        "excluded": sorted(rule.excluded_conversations.values_list("pk", flat=True)),
    }


def do_preview_rule(rule: RetentionRule, *, acting_user: Member) -> dict:
    """The dry run, stored on the rule: enabling needs one no older than a day."""
    require_admin(acting_user)
    measured = measure_rule(rule, keep_days=rule.proposed_keep_days)
    RetentionRule.objects.filter(pk=rule.pk).update(
        last_preview=measured.preview, last_preview_at=timezone.now()
    )
    rule.last_preview, rule.last_preview_at = measured.preview, timezone.now()
    return measured.preview


def do_propose(
    rule: RetentionRule, *, acting_user: Member, keep_days: int | None = None
) -> RetentionRule:
    """Ask for a rule to be enabled, or an active rule to keep less: a second admin must
    approve, after a fresh dry run."""
    require_admin(acting_user)
    with transaction.atomic():
        locked = RetentionRule.objects.select_for_update().get(pk=rule.pk)
        if keep_days is not None:
            _validate(keep_days, locked.action)
        if locked.status in (RuleStatus.DRAFT, RuleStatus.DISABLED):
            if keep_days is not None:
                locked.keep_days = keep_days
            locked.status = RuleStatus.PENDING
        elif locked.status in APPROVED_STATUSES:
            if keep_days is None or keep_days >= in_force_keep_days(locked):
                raise ValidationError(
                    {"keep_days": [_("Propose a shorter keep; keeping longer needs no approval.")]}
                )
            locked.proposed_keep_days = keep_days
        else:
            raise Conflict(_("This rule already awaits a second admin."))
        fresh = locked.last_preview_at and locked.last_preview_at > timezone.now() - timedelta(
            days=1
        )
        if not fresh:
            raise Conflict(_("Run the dry run first: approvers must see what the rule would take."))
        # Approvers see the dry run of exactly what is proposed (the keep may have changed
        # with the proposal), measured now.
        locked.last_preview = measure_rule(locked, keep_days=locked.proposed_keep_days).preview
        locked.last_preview_at = timezone.now()
        locked.proposed_by, locked.proposed_at = acting_user, timezone.now()
        locked.save()
        audit.record(
            EventType.RULE_PROPOSED,
            actor=acting_user,
            target=locked,
            department_id=locked.department_id,
            details={
                **_describe(locked),
                "proposed_keep_days": locked.proposed_keep_days,
                "preview_messages": locked.last_preview.get("messages"),
            },
        )
        admins = Member.objects.filter(is_active=True, groups__name=Role.ADMIN).exclude(
            pk=acting_user.pk
        )
        notify.rule_needs_approval(locked, admins)
    return locked


def do_approve_rule(
    rule: RetentionRule, *, acting_user: Member, verified_second_factor: bool
) -> RetentionRule:
    """A second admin approves; the change bites after the grace period, and the members
    of every affected conversation are told when."""
    require_admin(acting_user)
    enforce(acting_user, verified_second_factor=verified_second_factor, action="approve-rule")
    with transaction.atomic():
        locked = RetentionRule.objects.select_for_update().get(pk=rule.pk)
        waiting = locked.status == RuleStatus.PENDING or locked.proposed_keep_days is not None
        if not waiting:
            raise Conflict(_("Nothing about this rule awaits approval."))
        if locked.proposed_by_id == acting_user.pk:
            raise PermissionDenied(_("A second admin must approve: not the one who proposed it."))
        now = timezone.now()
        effective_from = now + timedelta(days=get_policy("retention_grace_days"))
        if locked.status == RuleStatus.PENDING:
            locked.status = RuleStatus.SCHEDULED
            locked.effective_from = effective_from
        else:
            locked.next_keep_days, locked.next_keep_from = locked.proposed_keep_days, effective_from
            locked.proposed_keep_days = None
        locked.approved_by, locked.approved_at = acting_user, now
        locked.save()
        audit.record(
            EventType.RULE_APPROVED,
            actor=acting_user,
            target=locked,
            department_id=locked.department_id,
            details={
                **_describe(locked),
                "next_keep_days": locked.next_keep_days,
                "effective_from": effective_from.isoformat(),
            },
        )
        affected = Member.objects.filter(
            pk__in=Participant.objects.filter(
                conversation__in=governed_conversations(locked).values("pk")
            ).values("member")
        )
        notify.rule_scheduled(locked, affected)
    return locked


def do_relax_rule(
    rule: RetentionRule,
    *,
    acting_user: Member,
    verified_second_factor: bool,
    keep_days: int | None = None,
    disable: bool = False,
) -> RetentionRule:
    """Keep longer, or switch the rule off: both delete less, so they apply at once."""
    require_admin(acting_user)
    enforce(acting_user, verified_second_factor=verified_second_factor, action="relax-rule")
    with transaction.atomic():
        locked = RetentionRule.objects.select_for_update().get(pk=rule.pk)
        before = _describe(locked)
        if disable:
            if locked.status == RuleStatus.DISABLED:
                raise Conflict(_("This rule is already disabled."))
            locked.status = RuleStatus.DISABLED
            locked.proposed_keep_days = locked.next_keep_days = locked.next_keep_from = None
            # "At once" includes a run filed but not started yet.
            for waiting in _open_runs(locked).filter(status=RequestStatus.APPROVED):
                do_cancel_request(waiting, acting_user=acting_user)
        else:
            _validate(keep_days, locked.action)
            if keep_days <= max(locked.keep_days, in_force_keep_days(locked)):
                raise ValidationError(
                    {"keep_days": [_("To keep less, propose the change for approval.")]}
                )
            locked.keep_days, locked.next_keep_days, locked.proposed_keep_days = (
                keep_days,
                None,
                None,
            )
        locked.save()
        audit.record(
            EventType.RULE_RELAXED,
            actor=acting_user,
            target=locked,
            department_id=locked.department_id,
            details={"before": before, "after": _describe(locked), "disabled": disable},
        )
    return locked


# --- the daily run ---------------------------------------------------------------------------


def _open_runs(rule: RetentionRule) -> QuerySet[DeletionRequest]:
    return DeletionRequest.objects.filter(
        method=RequestMethod.RETENTION,
        scope__rule=rule.pk,
        status__in=[RequestStatus.APPROVED, RequestStatus.RUNNING],
    )


def run_due_rules(*, now: datetime | None = None) -> list[int]:
    """Every approved rule past its grace period runs once per day: its dry run of this
    moment becomes a system request that the engine carries out."""
    now = now or timezone.now()
    started = []
    for rule in RetentionRule.objects.filter(
        status__in=APPROVED_STATUSES, effective_from__lte=now
    ).select_related("department"):
        if _open_runs(rule).exists():
            continue  # the last run has not finished (or waits for its evidence)
        # Claimed with a compare-and-swap: two cron ticks at once file one run.
        claimed = (
            RetentionRule.objects.filter(pk=rule.pk)
            .filter(Q(last_run_at__isnull=True) | Q(last_run_at__lte=now - timedelta(hours=20)))
            .update(last_run_at=now)
        )
        if not claimed:
            continue  # already ran today
        try:
            request = start_rule_run(rule, now=now)
        except Exception as exc:  # one broken rule must not stop the others
            RetentionRule.objects.filter(pk=rule.pk).update(
                last_run_at=now,
                last_run_ok=False,
                last_run_error=f"{type(exc).__name__}: {exc}"[:2000],
            )
            audit.record(
                EventType.RULE_RUN_FAILED,
                target=rule,
                department_id=rule.department_id,
                details={"error": f"{type(exc).__name__}: {exc}"[:500]},
            )
            continue
        if request is not None:
            started.append(request.pk)
    return started


def start_rule_run(rule: RetentionRule, *, now: datetime) -> DeletionRequest | None:
    if rule.next_keep_days is not None and rule.next_keep_from <= now:
        # The approved shorter keep is in force from now on.
        RetentionRule.objects.filter(pk=rule.pk).update(
            keep_days=rule.next_keep_days, next_keep_days=None, next_keep_from=None
        )
        rule.keep_days, rule.next_keep_days, rule.next_keep_from = rule.next_keep_days, None, None
    if rule.status == RuleStatus.SCHEDULED:
        RetentionRule.objects.filter(pk=rule.pk).update(status=RuleStatus.ACTIVE)
        rule.status = RuleStatus.ACTIVE
    measured = measure_rule(rule, now=now)
    # A draft until its frozen scope is written, in short transactions: a run cut short
    # leaves a draft that never runs, and the rule runs again the next night.
    request = DeletionRequest.objects.create(
        requester=rule.approved_by or rule.created_by,
        method=RequestMethod.RETENTION,
        status=RequestStatus.DRAFT,
        reason=_("Retention rule “%(name)s”: keep %(days)s days, then %(action)s.")
        % {"name": rule.name, "days": rule.keep_days, "action": rule.get_action_display()},
        scope={"rule": rule.pk, "keep_days": rule.keep_days, "action": rule.action},
        scope_root=rule.department,
        sent_before=measured.cutoff,
        max_message_id=measured.max_message_id,
        preview=measured.preview,
        decided_at=now,
        scheduled_for=now,
    )
    for first in range(0, len(measured.targets), TARGETS_PER_TRANSACTION):
        RequestConversation.objects.bulk_create(
            [
                RequestConversation(request=request, conversation_id=c, department_id=d, messages=n)
                for c, d, n in measured.targets[first : first + TARGETS_PER_TRANSACTION]
            ]
        )
    with transaction.atomic():
        DeletionRequest.objects.filter(pk=request.pk).update(status=RequestStatus.APPROVED)
        request.status = RequestStatus.APPROVED
        RetentionRule.objects.filter(pk=rule.pk).update(
            last_run_at=now, last_run_ok=True, last_run_error=""
        )
        audit.record(
            EventType.RULE_RUN,
            target=rule,
            department_id=rule.department_id,
            details={
                "request": request.pk,
                "messages": measured.preview["messages"],
                "conversations": measured.preview["conversations"],
                "held_messages": measured.preview["excluded"]["held"]["messages"],
                "keep_days": rule.keep_days,
                "cutoff": measured.cutoff.isoformat(),
            },
        )
        request_id = request.pk
        transaction.on_commit(lambda: execution.enqueue_start(request_id))
    return request


def rules_awaiting(viewer: Member) -> QuerySet[RetentionRule]:
    """Rules (or changes to them) that wait for a second admin, and this admin may approve."""
    if not viewer.has_role(Role.ADMIN):
        return RetentionRule.objects.none()
    waiting = Q(status=RuleStatus.PENDING) | Q(proposed_keep_days__isnull=False)
    return (
        RetentionRule.objects.filter(waiting)
        .exclude(proposed_by=viewer)
        .select_related("department", "proposed_by")
        .order_by("proposed_at")
    )


def unhealthy_rules(*, now: datetime | None = None) -> list[dict]:
    """Rules in force whose daily run failed or did not happen (for the admin dashboard)."""
    now = now or timezone.now()
    problems = []
    for rule in RetentionRule.objects.filter(status__in=APPROVED_STATUSES, effective_from__lte=now):
        if rule.last_run_ok is False:
            problems.append(
                {
                    "rule": rule,
                    "problem": _("its last run failed: %(error)s") % {"error": rule.last_run_error},
                }
            )
        elif rule.effective_from < now - timedelta(hours=26) and (
            rule.last_run_at is None or rule.last_run_at < now - timedelta(hours=26)
        ):
            problems.append({"rule": rule, "problem": _("it has not run for more than a day")})
    return problems


def check_rule_health(*, now: datetime | None = None) -> int:
    """Daily: tell the admins about rules whose runs failed or stopped."""
    problems = unhealthy_rules(now=now)
    if problems:
        admins = Member.objects.filter(is_active=True, groups__name=Role.ADMIN)
        notify.rules_unhealthy([p["rule"] for p in problems], admins)
    return len(problems)
