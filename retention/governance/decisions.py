"""What happens to a filed request: approving and rejecting its steps (the last approval
schedules the run), the requester or an admin withdrawing it, and expiry when nobody
decides in time. Who may decide is ``retention.access.predicates``.

Each function checks permission, changes state under a row lock and writes its audit
event, in one transaction.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import log as audit
from audit.events import EventType
from retention.access import predicates
from retention.access.second_factor import enforce
from retention.dates import bounds_problem
from retention.errors import Conflict
from retention.governance import approvals, personal
from retention.models import (
    ApprovalStep,
    DeletionRequest,
    Member,
    RequestMethod,
    RequestStatus,
    StepStatus,
)
from retention.notifications import notify
from retention.policies import get_policy, scheduled_run_time
from retention.wipes.schedule import schedule_request


def _locked(request: DeletionRequest) -> DeletionRequest:
    return DeletionRequest.objects.select_for_update().get(pk=request.pk)


def do_approve_step(
    request: DeletionRequest,
    *,
    acting_user: Member,
    verified_second_factor: bool,
    step_order: int | None = None,
    comment: str = "",
) -> DeletionRequest:
    """Approve the current step; the last approval schedules the run (a held personal
    deletion takes effect at once instead).

    ``step_order`` is the step the approver saw and means to approve: if the request has
    moved on to another step meanwhile (a stale page, a double submit), it is a Conflict
    and nothing changes. Pages always send it; None approves whichever step is current.
    ``verified_second_factor``: whether the approver's session or token passed a TOTP
    check (see retention.access.second_factor).
    """
    _check_before_deciding(request, acting_user, step_order, verified_second_factor, approving=True)
    with transaction.atomic():
        locked = _locked(request)
        step = approvals.current_step(locked)
        _check_may_decide(locked, step, acting_user, step_order)
        _check_runnable(locked)
        now = timezone.now()
        step.status, step.approver, step.decided_at = StepStatus.APPROVED, acting_user, now
        step.comment = (comment or "").strip()
        step.save(update_fields=["status", "approver", "decided_at", "comment"])
        audit.record(
            EventType.REQUEST_STEP_APPROVED,
            actor=acting_user,
            target=locked,
            department_id=locked.scope_root_id,
            details={"step": step.order, "role": step.role, "comment": step.comment},
        )
        following = locked.steps.filter(order__gt=step.order).order_by("order").first()
        if following is not None:
            following.status = StepStatus.PENDING
            following.save(update_fields=["status"])
            notify.step_awaits(locked, approvals.current_step(locked))
            notify.decided(locked, approved_step=step)
            return locked
        if locked.method == RequestMethod.PERSONAL:
            # A personal deletion held because its requester deletes often: it takes
            # effect now, on the requester's side only, as it would have when filed.
            personal.remove_for_requester(locked, approved_by=acting_user)
            notify.decided(locked, approved_step=step)
            return locked
        locked.status = RequestStatus.APPROVED
        locked.decided_at = now
        locked.scheduled_for = scheduled_run_time(locked.method, now)
        locked.save(update_fields=["status", "decided_at", "scheduled_for"])
        audit.record(
            EventType.REQUEST_APPROVED,
            actor=acting_user,
            target=locked,
            department_id=locked.scope_root_id,
            details={
                "scheduled_for": locked.scheduled_for.isoformat(),
                "approvers": list(locked.steps.values_list("approver__username", flat=True)),
            },
        )
        notify.decided(locked, approved_step=step)
        notify.scheduled(locked)
        schedule_request(locked)
    return locked


def do_reject_request(
    request: DeletionRequest,
    *,
    acting_user: Member,
    reason: str,
    verified_second_factor: bool,
    step_order: int | None = None,
) -> DeletionRequest:
    """Reject the request at its current step (``step_order``, ``verified_second_factor``:
    as in do_approve_step)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": [_("Say why you reject it; the requester will read it.")]})
    _check_before_deciding(request, acting_user, step_order, verified_second_factor)
    with transaction.atomic():
        locked = _locked(request)
        step = approvals.current_step(locked)
        _check_may_decide(locked, step, acting_user, step_order)
        now = timezone.now()
        step.status, step.approver, step.decided_at, step.comment = (
            StepStatus.REJECTED,
            acting_user,
            now,
            reason,
        )
        step.save(update_fields=["status", "approver", "decided_at", "comment"])
        locked.steps.filter(status=StepStatus.WAITING).update(status=StepStatus.CANCELLED)
        locked.status, locked.decided_at = RequestStatus.REJECTED, now
        locked.save(update_fields=["status", "decided_at"])
        audit.record(
            EventType.REQUEST_REJECTED,
            actor=acting_user,
            target=locked,
            department_id=locked.scope_root_id,
            details={"step": step.order, "role": step.role, "reason": reason},
        )
        notify.decided(locked, rejected_step=step)
    return locked


def _check_before_deciding(
    request: DeletionRequest,
    member: Member,
    step_order: int | None,
    verified: bool,
    *,
    approving: bool = False,
) -> None:
    """Who decides and the request's state are refused first (checked again under the
    lock), then a missing second factor: its refusal is audited in its own transaction."""
    fresh = DeletionRequest.objects.get(pk=request.pk)
    _check_may_decide(fresh, approvals.current_step(fresh), member, step_order)
    if approving:
        _check_runnable(fresh)
    enforce(member, verified_second_factor=verified, action="decide-request")


def _check_runnable(request: DeletionRequest) -> None:
    """A request whose stored date range lies outside what Qingli accepts (it never passed
    the inputs) is not approved: its run would refuse it anyway. Rejecting it still works."""
    problem = bounds_problem(request.sent_after, request.sent_before)
    if problem is not None:
        raise Conflict(problem)


def _check_may_decide(
    request: DeletionRequest, step: ApprovalStep | None, member: Member, step_order: int | None
) -> None:
    if request.status != RequestStatus.PENDING or step is None:
        raise Conflict(
            _("This request is %(status)s; it is not waiting for a decision.")
            % {"status": request.get_status_display()}
        )
    if step_order is not None and step.order != step_order:
        raise Conflict(
            _(
                "This decision was for step %(expected)d, but the request now waits for "
                "step %(current)d. Nothing was changed: look at the request again first."
            )
            % {"expected": step_order, "current": step.order}
        )
    refusal = predicates.refusal_to_decide(step, member)
    if refusal is not None:
        raise PermissionDenied(refusal)


def do_cancel_request(request: DeletionRequest, *, acting_user: Member) -> DeletionRequest:
    """The requester (or an admin) withdraws a request until its run starts."""
    with transaction.atomic():
        locked = _locked(request)
        if not predicates.is_requester_or_admin(locked, acting_user):
            raise PermissionDenied(_("Only the requester or an admin can cancel a request."))
        if not predicates.is_cancellable(locked):
            raise Conflict(
                _("This request is %(status)s; it can no longer be cancelled.")
                % {"status": locked.get_status_display()}
            )
        previous = locked.status
        locked.status, locked.decided_at = RequestStatus.CANCELLED, timezone.now()
        locked.save(update_fields=["status", "decided_at"])
        locked.steps.filter(status__in=[StepStatus.PENDING, StepStatus.WAITING]).update(
            status=StepStatus.CANCELLED
        )
        audit.record(
            EventType.REQUEST_CANCELLED,
            actor=acting_user,
            target=locked,
            department_id=locked.scope_root_id,
            details={"was": previous},
        )
    return locked


def do_expire_stale_requests(*, now=None) -> int:
    """Pending requests nobody decided within the policy's days expire (idempotent)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=get_policy("approval_expiry_days"))
    expired = 0
    for pk in DeletionRequest.objects.filter(
        status=RequestStatus.PENDING, filed_at__lt=cutoff
    ).values_list("pk", flat=True):
        with transaction.atomic():
            updated = DeletionRequest.objects.filter(pk=pk, status=RequestStatus.PENDING).update(
                status=RequestStatus.EXPIRED, decided_at=now
            )
            if not updated:
                continue  # decided meanwhile
            ApprovalStep.objects.filter(
                request_id=pk, status__in=[StepStatus.PENDING, StepStatus.WAITING]
            ).update(status=StepStatus.CANCELLED)
            audit.record(
                EventType.REQUEST_EXPIRED,
                target_type="retention.deletionrequest",
                target_id=pk,
                details={"filed_before": cutoff.isoformat()},
            )
            expired += 1
    return expired
