"""Filing deletion requests: the checks (authority, eligibility, quota, idempotency),
the frozen scope and its approval chain, and personal deletions, which take effect at
once and which the requester may restore for a while.

Each function checks permission, changes state under a row lock and writes its audit
event, in one transaction. Refusals that matter to auditors (quota, eligibility) are
recorded in a transaction of their own, so the refusal survives the error it raises.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import log as audit
from audit.events import EventType
from retention.access import predicates
from retention.errors import Conflict
from retention.governance import approvals, personal
from retention.governance.scope import (
    Scope,
    check_authority,
    measure_scope,
    newest_message_id,
    scope_root,
)
from retention.models import (
    ApprovalStep,
    DeletionRequest,
    Member,
    Message,
    RequestConversation,
    RequestMethod,
    RequestStatus,
)
from retention.models.roles import Role
from retention.notifications import notify
from retention.policies import consecutive_signin_days, get_policy, personal_quota, server_cost_cny


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
    """Personal deletions filed this month, those awaiting approval included; one that was
    rejected, withdrawn or expired removed nothing and uses no quota."""
    today = timezone.localdate()
    return (
        DeletionRequest.objects.filter(
            requester=requester,
            method=RequestMethod.PERSONAL,
            filed_at__date__gte=today.replace(day=1),
        )
        .exclude(
            status__in=[RequestStatus.REJECTED, RequestStatus.CANCELLED, RequestStatus.EXPIRED]
        )
        .count()
    )


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
        frequent, recent, threshold = personal.is_frequent(requester)
        if not frequent:
            personal.remove_for_requester(request)
            return request
        return _hold_for_manager(request, recent=recent, threshold=threshold)
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
    notify.step_awaits(request, approvals.current_step(request))
    return request


def _hold_for_manager(request: DeletionRequest, *, recent: int, threshold: int) -> DeletionRequest:
    """A member who deletes often: their personal deletion waits for their manager (one
    step), and nothing is removed until it is approved."""
    requester = request.requester
    step = approvals.plan_review_step(requester)
    if approvals.first_unstaffable_step([step], requester) is not None:
        raise ValidationError(
            {
                "scope": [
                    _(
                        "You made %(n)d personal deletions in the last %(hours)d hours, so this "
                        "one needs approval, but nobody could approve it. Ask an admin."
                    )
                    % {"n": recent, "hours": get_policy("frequent_deletion_window_hours")}
                ]
            }
        )
    ApprovalStep.objects.create(request=request, **step)
    audit.record(
        EventType.PERSONAL_HELD_FOR_REVIEW,
        actor=requester,
        target=request,
        department_id=requester.department_id,
        details={
            "deletions": recent,
            "threshold": threshold,
            "window_hours": get_policy("frequent_deletion_window_hours"),
            "step_role": step["role"],
            "step_department": step["department"].pk if step["department"] else None,
        },
    )
    notify.step_awaits(request, approvals.current_step(request))
    return request


def do_restore_personal(request: DeletionRequest, *, acting_user: Member) -> None:
    """Bring a personal deletion back into the requester's view, within the window."""
    with transaction.atomic():
        locked = DeletionRequest.objects.select_for_update().get(pk=request.pk)
        if not predicates.is_own_personal_deletion(locked, acting_user):
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
