"""State changes of the store and of sessions. Each checks permission, changes state and
writes its audit event in one transaction."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from audit import log as audit
from audit.events import EventType
from retention.models import Conversation, DataKey, Member, SignInDay
from retention.roles import Role


def do_record_sign_in(*, member: Member, request: HttpRequest | None, via: str = "web") -> None:
    """Audit a successful sign-in and count the day toward sign-in streaks."""
    with transaction.atomic():
        SignInDay.objects.get_or_create(member=member, day=timezone.localdate())
        audit.record(
            EventType.SIGN_IN if via == "web" else EventType.TOKEN_ISSUED,
            actor=member,
            target=member,
            department_id=member.department_id,
            ip_address=audit.client_ip(request) if request else None,
            details={"via": via},
        )


def do_record_sign_out(*, member: Member, request: HttpRequest | None) -> None:
    audit.record(
        EventType.SIGN_OUT,
        actor=member,
        target=member,
        department_id=member.department_id,
        ip_address=audit.client_ip(request) if request else None,
    )


def do_record_failed_sign_in(
    *, username: str, request: HttpRequest | None, via: str = "web"
) -> None:
    # The attempted name is kept (truncated): it is how guessing attacks show in the log.
    audit.record(
        EventType.SIGN_IN_FAILED if via == "web" else EventType.TOKEN_REFUSED,
        target_type="retention.member",
        target_id=str(username)[:64],
        ip_address=audit.client_ip(request) if request else None,
        details={"username": str(username)[:150], "via": via},
    )


def do_destroy_conversation_key(
    conversation: Conversation, *, actor: Member | None, reason: str
) -> bool:
    """Crypto-shred a conversation: its data key is erased, so no copy of its records,
    here or in any backup, can be decrypted again. ``actor=None`` means a system job
    acting on an approved request. Returns False if the key was already gone."""
    if actor is not None and not actor.has_role(Role.ADMIN):
        raise PermissionDenied("only an admin or an approved wipe may destroy a data key")
    with transaction.atomic():
        destroyed = DataKey.objects.filter(
            conversation=conversation, wrapped_key__isnull=False
        ).update(wrapped_key=None, destroyed_at=timezone.now())
        if destroyed:
            audit.record(
                EventType.CONVERSATION_KEY_DESTROYED,
                actor=actor,
                target=conversation,
                department_id=conversation.department_id,
                details={"reason": reason, "title": conversation.title},
            )
    return bool(destroyed)
