"""Keeping records from deletion: security officers place and release holds, admins mark
conversations protected. Which conversations a hold covers, and the lock that makes a
deletion batch see a new hold, are ``retention.records.holds``.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import log as audit
from audit.events import EventType
from retention.access import predicates
from retention.access.second_factor import enforce
from retention.errors import Conflict
from retention.models import (
    Conversation,
    Department,
    Hold,
    Member,
    RequestConversation,
    RequestMethod,
    RequestStatus,
)
from retention.records.holds import hold_guard_exclusive


def do_place_hold(
    *,
    acting_user: Member,
    verified_second_factor: bool,
    kind: str,
    reason: str,
    conversations: list[Conversation],
    departments: list[Department],
) -> Hold:
    if not predicates.may_manage_holds(acting_user):
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
    if not predicates.may_manage_holds(acting_user):
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
    if not predicates.may_set_protected(acting_user):
        raise PermissionDenied(_("Only admins mark conversations protected."))
    enforce(acting_user, verified_second_factor=verified_second_factor, action="set-protected")
    with transaction.atomic():
        if protected:
            # Like a hold: waits for any deletion batch in flight, so that every later
            # batch sees the protection and leaves the conversation.
            hold_guard_exclusive()
        changed = (
            Conversation.objects.filter(pk=conversation.pk)
            .exclude(is_protected=protected)
            .update(is_protected=protected)
        )
        if changed:
            event = (
                EventType.CONVERSATION_PROTECTED
                if protected
                else EventType.CONVERSATION_UNPROTECTED
            )
            audit.record(
                event,
                actor=acting_user,
                target=conversation,
                department_id=conversation.department_id,
                details={"title": conversation.title},
            )
        if changed and protected:
            # Open requests that did not confirm it by name now leave it: say so on each
            # one's timeline (a retention rule's run confirms none).
            for request_id in _open_requests_not_confirming(conversation):
                audit.record(
                    event,
                    actor=acting_user,
                    target_type="retention.deletionrequest",
                    target_id=request_id,
                    department_id=conversation.department_id,
                    details={"conversation": conversation.pk},
                )


def _open_requests_not_confirming(conversation: Conversation) -> list[int]:
    """Batch requests and rule runs still to run (or running) whose frozen scope holds
    the conversation without confirming it by name: their runs will leave it."""
    open_targets = RequestConversation.objects.filter(
        conversation=conversation,
        request__method__in=[RequestMethod.BATCH, RequestMethod.RETENTION],
        request__status__in=[RequestStatus.PENDING, RequestStatus.APPROVED, RequestStatus.RUNNING],
    ).values_list("request_id", "request__confirmed_protected")
    return sorted(
        {pk for pk, confirmed in open_targets if conversation.pk not in (confirmed or [])}
    )
