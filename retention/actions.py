"""State changes of the store and of sessions. Each checks permission, changes state and
writes its audit event in one transaction."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from audit import log as audit
from audit.events import EventType
from retention import crypto
from retention.models import Conversation, DataKey, Export, Member, SignInDay
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


def _record_session_end(
    event_type: EventType, *, member: Member, request: HttpRequest | None, **details
) -> None:
    audit.record(
        event_type,
        actor=member,
        target=member,
        department_id=member.department_id,
        ip_address=audit.client_ip(request) if request else None,
        details=details,
    )


def do_record_sign_out(*, member: Member, request: HttpRequest | None) -> None:
    _record_session_end(EventType.SIGN_OUT, member=member, request=request)


def do_record_session_expired(
    *, member: Member, request: HttpRequest | None, idle_minutes: int
) -> None:
    """A browser session ended because it went unused (retention/web/sessions.py)."""
    _record_session_end(
        EventType.SESSION_EXPIRED, member=member, request=request, idle_minutes=idle_minutes
    )


def do_record_failed_sign_in(
    *, username: str, request: HttpRequest | None, via: str = "web"
) -> None:
    # The attempted name is kept (truncated): it is how guessing attacks show in the log.
    # ``locked_out``: the sign-in was refused by a lockout, or this failure started one.
    audit.record(
        EventType.SIGN_IN_FAILED if via == "web" else EventType.TOKEN_REFUSED,
        target_type="retention.member",
        target_id=str(username)[:64],
        ip_address=audit.client_ip(request) if request else None,
        details={
            "username": str(username)[:150],
            "via": via,
            "locked_out": bool(getattr(request, "axes_locked_out", False)),
        },
    )


def do_destroy_conversation_key(
    conversation: Conversation, *, actor: Member | None, reason: str
) -> bool:
    """Crypto-shred a conversation: its data key is erased, so no copy of its records in
    the live database or storage can be decrypted again (backups: see rotate_master_key).
    Refused while the conversation is on hold. ``actor=None`` means a system job
    acting on an approved request. Returns False if the key was already gone."""
    if actor is not None and not actor.has_role(Role.ADMIN):
        raise PermissionDenied("only an admin or an approved wipe may destroy a data key")
    from retention.deletion.scope import held_conversations_q

    with transaction.atomic():
        # Holds beat every deletion path, crypto-shredding included; checked in the same
        # transaction that destroys, so a hold placed a moment earlier is seen.
        if Conversation.objects.filter(held_conversations_q(), pk=conversation.pk).exists():
            raise PermissionDenied("this conversation is on hold: its key cannot be destroyed")
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


def do_rotate_master_key(*, actor: Member | None, batch_size: int = 1000) -> dict[str, int]:
    """Re-wrap every live data key (conversations' and export files') with the current
    master key, in short batches.

    Each row changes only if it still holds what was read (compare-and-swap), so a key
    destroyed meanwhile stays destroyed. Once nothing is left under a retired master key,
    that key can be removed from the configuration and destroyed: backups made before
    the rotation then read nothing.
    """
    if actor is not None and not actor.has_role(Role.ADMIN):
        raise PermissionDenied("only an admin may rotate the master key")
    current = crypto.current_master_key_id()
    rewrapped = already = 0
    for model, owner, rewrap in (
        (DataKey, "conversation_id", crypto.rewrapped),
        (Export, "id", crypto.rewrapped_export_key),
    ):
        last_pk = 0
        while True:
            rows = list(
                model.objects.filter(**{f"{owner}__gt": last_pk, "wrapped_key__isnull": False})
                .order_by(owner)
                .values_list(owner, "wrapped_key")[:batch_size]
            )
            if not rows:
                break
            last_pk = rows[-1][0]
            with transaction.atomic():
                for pk, wrapped in rows:
                    wrapped = bytes(wrapped)
                    if crypto.wrapped_with(wrapped) == current:
                        already += 1
                        continue
                    rewrapped += model.objects.filter(**{owner: pk, "wrapped_key": wrapped}).update(
                        wrapped_key=rewrap(pk, wrapped)
                    )
    outcome = {"rewrapped": rewrapped, "already_current": already}
    with transaction.atomic():
        audit.record(
            EventType.MASTER_KEY_ROTATED,
            actor=actor,
            target_type="retention.datakey",
            details={**outcome, "master_key_id": current.hex()},
        )
    return outcome


def data_keys_by_master_key() -> dict[str, int]:
    """How many live data keys (conversations' and export files') each master key wraps."""
    counts: dict[str, int] = {}
    for model in (DataKey, Export):
        for wrapped in (
            model.objects.filter(wrapped_key__isnull=False)
            .values_list("wrapped_key", flat=True)
            .iterator(chunk_size=5000)
        ):
            key_id = crypto.wrapped_with(bytes(wrapped)).hex()
            counts[key_id] = counts.get(key_id, 0) + 1
    return counts
