"""Every state change of deletion requests, holds, personal deletions and hides.

Each function checks permission, changes state under a row lock and writes its audit
event, in one transaction. Refusals that matter to auditors (quota, eligibility) are
recorded in a transaction of their own, so the refusal survives the error it raises.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import log as audit
from audit.events import EventType
from retention.access.second_factor import enforce
from retention.errors import Conflict
from retention.governance import approvals
from retention.governance.scope import (
    Scope,
    check_authority,
    measure_scope,
    newest_message_id,
    scope_root,
)
from retention.models import (
    ApprovalStep,
    Conversation,
    ConversationHide,
    DeletionRequest,
    Department,
    Hold,
    Member,
    Message,
    Notification,
    PersonalRemoval,
    RequestConversation,
    RequestMethod,
    RequestStatus,
    StepStatus,
)
from retention.models.roles import Role
from retention.notifications import notify
from retention.policies import (
    consecutive_signin_days,
    get_policy,
    personal_quota,
    scheduled_run_time,
    server_cost_cny,
)
from retention.records.holds import hold_guard_exclusive
from retention.wipes.schedule import schedule_request


def _refuse(requester: Member, *, why: str, message: str, details: dict) -> None:
    """Record a refusal in its own transaction, then raise it."""
    with transaction.atomic():
        audit.record(
            EventType.REQUEST_REFUSED,
            actor=requester,
            target=requester,
            department_id=requester.department_id,
            details={"why": why, **details},
        )
    raise PermissionDenied(message)


def _personal_deletions_this_month(requester: Member) -> int:
    today = timezone.localdate()
    return DeletionRequest.objects.filter(
        requester=requester,
        method=RequestMethod.PERSONAL,
        filed_at__date__gte=today.replace(day=1),
    ).count()


# --- filing ------------------------------------------------------------------------------


def do_file_request(
    *, requester: Member, scope: Scope, reason: str, idempotency_key: str = ""
) -> tuple[DeletionRequest, bool]:
    """File a request (personal ones take effect at once). Returns (request, created):
    a repeated Idempotency-Key returns the first request instead of filing twice, and
    is a Conflict when it comes with a different body."""
    if idempotency_key:
        earlier = DeletionRequest.objects.filter(
            requester=requester, idempotency_key=idempotency_key
        ).first()
        if earlier is not None:
            return _replayed(earlier, scope, reason), False
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": [_("Say why these records should be deleted.")]})
    check_authority(requester, scope)
    if scope.method == RequestMethod.BATCH:
        needed = get_policy("batch_min_consecutive_signin_days")
        streak = consecutive_signin_days(requester)
        if streak < needed:
            _refuse(
                requester,
                why="eligibility",
                message=_(
                    "Batch deletions need sign-ins on %(needed)d consecutive days; "
                    "you have %(streak)d."
                )
                % {"needed": needed, "streak": streak},
                details={"needed": needed, "streak": streak},
            )
    max_id = settled_high_water_mark()
    try:
        with transaction.atomic():
            if scope.method == RequestMethod.PERSONAL:
                _check_quota(requester)
            return _file(requester, scope, reason, idempotency_key, max_id), True
    except QuotaExhausted as refusal:
        _refuse(
            requester,
            why="quota",
            message=_(
                "You have used all %(allowed)d personal deletions this month. "
                "An admin can grant you more."
            )
            % {"allowed": refusal.allowed},
            details={"used": refusal.used, "allowed": refusal.allowed},
        )
    except IntegrityError:
        # Two identical filings raced on the same Idempotency-Key: the first one won.
        if not idempotency_key:
            raise
        earlier = DeletionRequest.objects.get(requester=requester, idempotency_key=idempotency_key)
        return _replayed(earlier, scope, reason), False


def _replayed(earlier: DeletionRequest, scope: Scope, reason: str) -> DeletionRequest:
    """The request an Idempotency-Key filed, if this body is the one it was filed with:
    the same method, scope and reason, confirming every protected conversation it
    confirmed. Anything else is another request sent with a reused key."""

    def normalized(data: dict) -> dict:
        return {k: sorted(v) if isinstance(v, list) else v for k, v in data.items()}

    same = (
        earlier.method == scope.method
        and normalized(earlier.scope) == normalized(scope.as_json())
        and earlier.reason == (reason or "").strip()
        and set(earlier.confirmed_protected or []) <= scope.confirm_protected
    )
    if not same:
        raise Conflict(
            _(
                "This Idempotency-Key was already used for a different request (#%(id)s). "
                "Send a new key to file another request."
            )
            % {"id": earlier.pk}
        )
    return earlier


class QuotaExhausted(Exception):
    def __init__(self, used: int, allowed: int):
        super().__init__(f"{used} of {allowed} used")
        self.used, self.allowed = used, allowed


def _check_quota(requester: Member) -> None:
    """Inside the filing transaction, with the member's row locked, so that concurrent
    personal deletions are counted one after another."""
    Member.objects.select_for_update().filter(pk=requester.pk).first()
    used, allowed = _personal_deletions_this_month(requester), personal_quota(requester)
    if used >= allowed:
        raise QuotaExhausted(used, allowed)


def settled_high_water_mark() -> int:
    """The newest message id such that every message at or below it has committed.

    An insert still in flight may already hold a lower id than the newest committed one;
    on PostgreSQL a SHARE lock waits for such inserts to finish (they hold ROW EXCLUSIVE
    from before they take an id) and is released at once. SQLite has one writer at a
    time, so what is committed is all there is.
    """
    if connection.vendor != "postgresql":
        return newest_message_id()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {Message._meta.db_table} IN SHARE MODE")
        return newest_message_id()


def _file(
    requester: Member, scope: Scope, reason: str, idempotency_key: str, max_id: int
) -> DeletionRequest:
    measurement = measure_scope(scope, requester=requester, max_message_id=max_id)
    preview = measurement.preview
    unconfirmed = preview["excluded"]["protected_unconfirmed"]
    if unconfirmed and scope.method != RequestMethod.PERSONAL:
        raise ValidationError(
            {
                "confirm_protected": [
                    _(
                        "This scope touches protected conversations: %(titles)s. Tick each one "
                        "to confirm it is to be deleted (API: list its id in "
                        "confirm_protected), or narrow the scope."
                    )
                    % {"titles": "、".join(p["title"] for p in unconfirmed)}
                ]
            }
        )
    if scope.method == RequestMethod.PERSONAL and preview["excluded"]["held"]["conversations"]:
        raise ValidationError(
            {"scope": [_("This conversation is on hold: nothing in it can be deleted now.")]}
        )
    if scope.method != RequestMethod.PERSONAL and preview["messages"] == 0:
        raise ValidationError({"scope": [_("Nothing in this scope can be deleted.")]})
    root = scope_root(scope)
    request = DeletionRequest.objects.create(
        requester=requester,
        method=scope.method,
        status=RequestStatus.PENDING,
        reason=reason,
        scope=scope.as_json(),
        scope_root=root,
        sent_after=scope.sent_after,
        sent_before=scope.sent_before,
        max_message_id=max_id,
        preview=preview,
        confirmed_protected=preview["protected_confirmed"],
        cost_estimate_cny=(
            server_cost_cny(preview["messages"]) if scope.method == RequestMethod.SERVER else None
        ),
        idempotency_key=idempotency_key,
    )
    audit.record(
        EventType.REQUEST_FILED,
        actor=requester,
        target=request,
        department_id=root.pk if root else None,
        details={
            "method": request.method,
            "scope": request.scope,
            "reason": reason,
            "messages": preview["messages"],
            "conversations": preview["conversations"],
            "held_excluded": preview["excluded"]["held"]["messages"],
        },
    )
    if scope.method == RequestMethod.PERSONAL:
        _remove_for_requester(request, scope)
        return request
    RequestConversation.objects.bulk_create(
        [
            RequestConversation(request=request, conversation_id=c, department_id=d, messages=n)
            for c, d, n in measurement.targets
        ],
        batch_size=2000,
    )
    steps = approvals.plan_steps(
        scope.method,
        root=root,
        requester=requester,
        high_sensitivity=preview["high_sensitivity"],
    )
    unstaffable = approvals.first_unstaffable_step(steps, requester)
    if unstaffable is not None:
        # Better refused now than left pending for nobody until it expires.
        raise ValidationError(
            {
                "scope": [
                    _(
                        "Nobody else could approve step %(order)d (%(role)s) of this request: "
                        "every step needs a different eligible person. Ask an admin to assign "
                        "the role, or narrow the scope."
                    )
                    % {"order": unstaffable["order"], "role": Role(unstaffable["role"]).label}
                ]
            }
        )
    ApprovalStep.objects.bulk_create([ApprovalStep(request=request, **s) for s in steps])
    notify.step_awaits(request)
    return request


def _remove_for_requester(request: DeletionRequest, scope: Scope) -> None:
    """A personal deletion: gone from the requester's view only, restorable for a while."""
    now = timezone.now()
    conversation = scope.message.conversation if scope.message else scope.conversations[0]
    PersonalRemoval.objects.create(
        member=request.requester,
        conversation=conversation,
        message=scope.message,
        up_to_message_id=request.max_message_id,
        request=request,
        restorable_until=now + timedelta(days=get_policy("recycle_bin_days")),
    )
    request.status = RequestStatus.COMPLETED
    request.decided_at = now
    request.save(update_fields=["status", "decided_at"])
    audit.record(
        EventType.PERSONAL_DELETED,
        actor=request.requester,
        target=request,
        department_id=conversation.department_id,
        details={
            "conversation": conversation.pk,
            "message": scope.message.pk if scope.message else None,
            "messages": request.preview["messages"],
        },
    )


def do_restore_personal(request: DeletionRequest, *, acting_user: Member) -> None:
    """Bring a personal deletion back into the requester's view, within the window."""
    with transaction.atomic():
        locked = DeletionRequest.objects.select_for_update().get(pk=request.pk)
        if locked.requester_id != acting_user.pk or locked.method != RequestMethod.PERSONAL:
            raise PermissionDenied(_("Only the member who deleted it can restore it."))
        removal = locked.removals.filter(restored_at__isnull=True).first()
        if removal is None:
            raise Conflict(_("This deletion has already been restored."))
        if removal.restorable_until < timezone.now():
            raise Conflict(_("The recycle-bin period has passed; it can no longer be restored."))
        removal.restored_at = timezone.now()
        removal.save(update_fields=["restored_at"])
        audit.record(
            EventType.PERSONAL_RESTORED,
            actor=acting_user,
            target=locked,
            department_id=removal.conversation.department_id,
            details={"conversation": removal.conversation_id, "message": removal.message_id},
        )


# --- deciding ---------------------------------------------------------------------------


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
    """Approve the current step; the last approval schedules the run.

    ``step_order`` is the step the approver saw and means to approve: if the request has
    moved on to another step meanwhile (a stale page, a double submit), it is a Conflict
    and nothing changes. Pages always send it; None approves whichever step is current.
    ``verified_second_factor``: whether the approver's session or token passed a TOTP
    check (see retention.access.second_factor).
    """
    _check_before_deciding(request, acting_user, step_order, verified_second_factor)
    with transaction.atomic():
        locked = _locked(request)
        step = approvals.current_step(locked)
        _check_may_decide(locked, step, acting_user, step_order)
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
            notify.step_awaits(locked)
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
    request: DeletionRequest, member: Member, step_order: int | None, verified: bool
) -> None:
    """Who decides and the request's state are refused first (checked again under the
    lock), then a missing second factor: its refusal is audited in its own transaction."""
    fresh = DeletionRequest.objects.get(pk=request.pk)
    _check_may_decide(fresh, approvals.current_step(fresh), member, step_order)
    enforce(member, verified_second_factor=verified, action="decide-request")


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
    refusal = approvals.refusal_to_decide(step, member)
    if refusal is not None:
        raise PermissionDenied(refusal)


def do_cancel_request(request: DeletionRequest, *, acting_user: Member) -> DeletionRequest:
    """The requester (or an admin) withdraws a request until its run starts."""
    with transaction.atomic():
        locked = _locked(request)
        if locked.requester_id != acting_user.pk and not acting_user.has_role(Role.ADMIN):
            raise PermissionDenied(_("Only the requester or an admin can cancel a request."))
        if locked.status not in (RequestStatus.PENDING, RequestStatus.APPROVED):
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


# --- holds and protection ----------------------------------------------------------------


def do_place_hold(
    *,
    acting_user: Member,
    verified_second_factor: bool,
    kind: str,
    reason: str,
    conversations: list[Conversation],
    departments: list[Department],
) -> Hold:
    if not acting_user.has_role(Role.SECURITY):
        raise PermissionDenied(_("Only security officers place holds."))
    enforce(acting_user, verified_second_factor=verified_second_factor, action="place-hold")
    errors = {}
    if not (reason or "").strip():
        errors["reason"] = [_("Say why the records must be kept.")]
    if not conversations and not departments:
        errors["scope"] = [_("Name at least one conversation or department to hold.")]
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        # Waits for any deletion batch in flight: after this, every batch sees the hold.
        hold_guard_exclusive()
        hold = Hold.objects.create(kind=kind, reason=reason.strip(), placed_by=acting_user)
        hold.conversations.set(conversations)
        hold.departments.set(departments)
        affected = _pending_requests_touching(hold)
        audit.record(
            EventType.HOLD_PLACED,
            actor=acting_user,
            target=hold,
            details={
                "kind": kind,
                "reason": hold.reason,
                "conversations": [c.pk for c in conversations],
                "departments": [d.pk for d in departments],
                "requests_affected": affected,
            },
        )
        for request_id in affected:
            # The hold shows on each open request's timeline.
            audit.record(
                EventType.HOLD_PLACED,
                actor=acting_user,
                target_type="retention.deletionrequest",
                target_id=request_id,
                details={"hold": hold.pk, "kind": kind, "reason": hold.reason},
            )
    return hold


def _pending_requests_touching(hold: Hold) -> list[int]:
    """Open requests with a frozen conversation that this hold now covers."""
    q = Q(conversation__in=hold.conversations.all())
    for department in hold.departments.all():
        q |= Q(conversation__department__path__startswith=department.path)
    return sorted(
        set(
            RequestConversation.objects.filter(
                q, request__status__in=[RequestStatus.PENDING, RequestStatus.APPROVED]
            ).values_list("request_id", flat=True)
        )
    )


def do_release_hold(
    hold: Hold, *, acting_user: Member, verified_second_factor: bool, reason: str = ""
) -> Hold:
    if not acting_user.has_role(Role.SECURITY):
        raise PermissionDenied(_("Only security officers release holds."))
    enforce(acting_user, verified_second_factor=verified_second_factor, action="release-hold")
    with transaction.atomic():
        locked = Hold.objects.select_for_update().get(pk=hold.pk)
        if locked.released_at is not None:
            raise Conflict(_("This hold has already been released."))
        locked.released_at, locked.released_by = timezone.now(), acting_user
        locked.release_reason = (reason or "").strip()
        locked.save(update_fields=["released_at", "released_by", "release_reason"])
        audit.record(
            EventType.HOLD_RELEASED,
            actor=acting_user,
            target=locked,
            details={"reason": locked.release_reason},
        )
    return locked


def do_set_protected(
    conversation: Conversation,
    *,
    acting_user: Member,
    protected: bool,
    verified_second_factor: bool,
) -> None:
    if not acting_user.has_role(Role.ADMIN):
        raise PermissionDenied(_("Only admins mark conversations protected."))
    enforce(acting_user, verified_second_factor=verified_second_factor, action="set-protected")
    with transaction.atomic():
        changed = (
            Conversation.objects.filter(pk=conversation.pk)
            .exclude(is_protected=protected)
            .update(is_protected=protected)
        )
        if changed:
            audit.record(
                EventType.CONVERSATION_PROTECTED
                if protected
                else EventType.CONVERSATION_UNPROTECTED,
                actor=acting_user,
                target=conversation,
                department_id=conversation.department_id,
                details={"title": conversation.title},
            )


# --- hide -------------------------------------------------------------------------------


def do_hide_conversation(conversation: Conversation, *, acting_user: Member) -> bool:
    """Fold a conversation away for oneself; nothing is deleted. Returns False if it
    already was hidden."""
    if not conversation.participant_set.filter(member=acting_user).exists():
        raise PermissionDenied(_("You can hide only conversations you take part in."))
    with transaction.atomic():
        _hide, created = ConversationHide.objects.get_or_create(
            member=acting_user, conversation=conversation
        )
        if created:
            audit.record(
                EventType.CONVERSATION_HIDDEN,
                actor=acting_user,
                target=conversation,
                department_id=conversation.department_id,
            )
    return created


def do_unhide_conversation(conversation: Conversation, *, acting_user: Member) -> bool:
    with transaction.atomic():
        deleted, _rows = ConversationHide.objects.filter(
            member=acting_user, conversation=conversation
        ).delete()
        if deleted:
            audit.record(
                EventType.CONVERSATION_UNHIDDEN,
                actor=acting_user,
                target=conversation,
                department_id=conversation.department_id,
            )
    return bool(deleted)


def do_mark_notifications_read(viewer: Member, ids: list[int] | None = None) -> int:
    """Mark the viewer's unread notifications (or only ``ids`` of them) read. Not audited:
    it changes nothing but the viewer's own inbox."""
    unread = Notification.objects.filter(recipient=viewer, read_at__isnull=True)
    if ids is not None:
        unread = unread.filter(pk__in=ids)
    return unread.update(read_at=timezone.now())
