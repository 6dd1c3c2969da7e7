"""Approval chains: which steps a request needs, and who may decide each one.

Separation of duties: nobody approves their own request, nobody decides two steps of one
request, and an auditor never approves anything.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from retention.models import (
    ApprovalStep,
    DeletionRequest,
    Department,
    Member,
    RequestMethod,
    RequestStatus,
    StepStatus,
)
from retention.models.roles import Role
from retention.policies import get_policy

HIGH_SENSITIVITY = "high-sensitivity records in scope"
NO_MANAGER_ABOVE = "no other manager above the scope"


def managers_over(department: Department | None, *, excluding: Member) -> QuerySet[Member]:
    """Active managers whose subtree holds ``department`` (the company's for None) and who
    may approve: auditors never do, whatever other role they hold (as in _candidates)."""
    qs = (
        Member.objects.filter(is_active=True, groups__name=Role.MANAGER)
        .exclude(pk=excluding.pk)
        .exclude(groups__name=Role.AUDITOR)
    )
    if department is None:
        return qs.filter(department__parent__isnull=True)
    return qs.filter(department__in=department.ancestor_ids())


def plan_steps(
    method: str, *, root: Department | None, requester: Member, high_sensitivity: int
) -> list[dict]:
    """The steps a new request needs, in order, as ApprovalStep field values."""
    if method == RequestMethod.PERSONAL:
        return []
    roles = list(get_policy("approval_chains")[method])
    becauses = [""] * len(roles)
    if method == RequestMethod.BATCH and high_sensitivity and Role.SECURITY not in roles:
        roles.append(Role.SECURITY.value)
        becauses.append(HIGH_SENSITIVITY)
    planned = []
    for role, because in zip(roles, becauses, strict=True):
        department = None
        if role == Role.MANAGER:
            department = _nearest_manager_level(root, requester)
            if department is None:
                # Nobody above the requester manages the scope: the step goes to an admin,
                # even when the chain has an admin step of its own. The chain keeps its
                # length, and every step still needs a different person.
                role, because = Role.ADMIN.value, NO_MANAGER_ABOVE
        planned.append((role, department, because))
    return [
        {
            "order": order,
            "role": role,
            "department": department,
            "because": because,
            "status": StepStatus.PENDING if order == 1 else StepStatus.WAITING,
        }
        for order, (role, department, because) in enumerate(planned, start=1)
    ]


def _candidates(role: str, department: Department | None, requester: Member) -> list[int]:
    qs = (
        Member.objects.filter(is_active=True, groups__name=role)
        .exclude(pk=requester.pk)
        .exclude(groups__name=Role.AUDITOR)
    )
    if role == Role.MANAGER:
        qs = qs.filter(department__in=department.ancestor_ids() if department else [])
    return list(qs.values_list("pk", flat=True).distinct())


def first_unstaffable_step(steps: list[dict], requester: Member) -> dict | None:
    """The first step that cannot get its own approver, when every step needs a different
    eligible person (None: the chain can be completed)."""
    # With k steps, k candidates per step are enough to decide (Hall's condition).
    candidates = [_candidates(s["role"], s["department"], requester)[: len(steps)] for s in steps]
    taken: dict[int, int] = {}  # member -> step index

    def assign(step: int, seen: set[int]) -> bool:
        for member in candidates[step]:
            if member in seen:
                continue
            seen.add(member)
            if member not in taken or assign(taken[member], seen):
                taken[member] = step
                return True
        return False

    for index, step in enumerate(steps):
        if not assign(index, set()):
            return step
    return None


def _nearest_manager_level(root: Department | None, requester: Member) -> Department | None:
    """Walk up from the scope's root to the first department with a manager other than
    the requester who may approve (not an auditor); its managers and every manager above
    may approve."""
    if root is None:
        return None
    ancestors = Department.objects.in_bulk(root.ancestor_ids())
    for department_id in reversed(root.ancestor_ids()):
        department = ancestors[department_id]
        if managers_over(department, excluding=requester).filter(department=department).exists():
            return department
    return None


def refusal_to_decide(step: ApprovalStep, member: Member) -> str | None:
    """Why ``member`` may not decide ``step`` (None: they may)."""
    request = step.request
    if request.status != RequestStatus.PENDING or step.status != StepStatus.PENDING:
        return "not-pending"
    if member.pk == request.requester_id:
        return _("You cannot decide your own request.")
    if member.has_role(Role.AUDITOR):
        return _("Auditors do not approve deletions.")
    if not member.is_active:
        return _("Inactive members cannot decide.")
    decided_before = request.steps.exclude(pk=step.pk).filter(approver=member).exists()
    if decided_before:
        return _("You already decided another step of this request.")
    if step.role == Role.MANAGER:
        if not member.has_role(Role.MANAGER) or member.department_id is None:
            return _("This step needs a manager.")
        if step.department is None or member.department_id not in step.department.ancestor_ids():
            return _("This step needs a manager of the departments in scope.")
        return None
    if not member.has_role(Role(step.role)):
        return _("This step needs a different role.")
    return None


def current_step(request: DeletionRequest) -> ApprovalStep | None:
    return request.steps.filter(status=StepStatus.PENDING).order_by("order").first()


def steps_awaiting(member: Member) -> QuerySet[ApprovalStep]:
    """Pending steps of pending requests that ``member`` may decide (the approvals inbox)."""
    if member.has_role(Role.AUDITOR) or not member.is_active:
        return ApprovalStep.objects.none()
    roles = [r for r in (Role.MANAGER, Role.SECURITY, Role.ADMIN) if member.has_role(r)]
    if not roles:
        return ApprovalStep.objects.none()
    qs = (
        ApprovalStep.objects.filter(
            status=StepStatus.PENDING,
            request__status=RequestStatus.PENDING,
            role__in=[str(r) for r in roles],
        )
        .exclude(request__requester=member)
        .exclude(request__steps__approver=member)
        .select_related("request", "request__requester", "department")
    )
    if member.has_role(Role.MANAGER) and member.department_id:
        manager_steps = qs.filter(
            role=Role.MANAGER, department__path__startswith=member.department.path
        )
        other_steps = qs.exclude(role=Role.MANAGER)
        qs = manager_steps | other_steps
    else:
        qs = qs.exclude(role=Role.MANAGER)
    return qs.distinct().order_by("request__filed_at")


def eligible_approvers(step: ApprovalStep) -> list[Member]:
    """Everyone who may decide ``step`` now: who the inbox notifications go to."""
    candidates = Member.objects.filter(is_active=True, groups__name=step.role).distinct()
    return [m for m in candidates if refusal_to_decide(step, m) is None]
