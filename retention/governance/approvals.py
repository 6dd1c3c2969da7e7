"""Approval chains: which steps a request needs, whether each can be staffed, and the
step a request waits on. Who may decide a step is ``retention.access.predicates``.
"""

from __future__ import annotations

from retention.access.predicates import possible_approvers
from retention.models import (
    ApprovalStep,
    DeletionRequest,
    Department,
    Member,
    RequestMethod,
    StepStatus,
)
from retention.models.roles import Role
from retention.policies import get_policy

HIGH_SENSITIVITY = "high-sensitivity records in scope"
NO_MANAGER_ABOVE = "no other manager above the scope"
FREQUENT_DELETIONS = "frequent personal deletions"


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


def plan_review_step(requester: Member) -> dict:
    """The one step of a personal deletion held because its requester deletes often: a
    manager of the requester's own department or above (an admin when there is none)."""
    department = None
    if requester.department_id is not None:
        department = _nearest_manager_level(requester.department, requester)
    role = Role.MANAGER.value if department is not None else Role.ADMIN.value
    return {
        "order": 1,
        "role": role,
        "department": department,
        "because": FREQUENT_DELETIONS,
        "status": StepStatus.PENDING,
    }


def first_unstaffable_step(steps: list[dict], requester: Member) -> dict | None:
    """The first step that cannot get its own approver, when every step needs a different
    eligible person (None: the chain can be completed)."""
    # With k steps, k candidates per step are enough to decide (Hall's condition).
    candidates = [
        list(
            possible_approvers(s["role"], s["department"], requester=requester)
            .values_list("pk", flat=True)
            .distinct()
        )[: len(steps)]
        for s in steps
    ]
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
        managers = possible_approvers(Role.MANAGER, department, requester=requester)
        if managers.filter(department=department).exists():
            return department
    return None


def current_step(request: DeletionRequest) -> ApprovalStep | None:
    """The step the request waits on (None: it waits for no decision)."""
    return request.steps.filter(status=StepStatus.PENDING).order_by("order").first()
