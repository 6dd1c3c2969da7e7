"""The one entry point through which every part of Qingli writes to the audit log."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.events import EventType
from audit.models import AuditEvent

GENESIS_HASH = "0" * 64
# Any constant works; it only has to be the same for every writer.
_CHAIN_LOCK_KEY = 0x51_494E_474C_49


def _clean_text(text: str) -> str:
    # PostgreSQL text and jsonb refuse NUL; lone surrogates cannot be encoded at all.
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _stable(value: Any) -> Any:
    """A JSON value that reads back from any database exactly as written: floats become
    strings (jsonb turns 1e20 into an integer), text loses what databases refuse."""
    if isinstance(value, dict):
        return {_clean_text(str(k)): _stable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_stable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return repr(value)
    return _clean_text(str(value))


def canonical_details(details: dict[str, Any] | None) -> dict[str, Any]:
    """Details as they will read back from the JSON column, so the hash is stable."""
    return _stable(details or {})


def canonical_ip(address: str | None) -> str | None:
    """The address as the database will return it (IPv6 compressed, lower case)."""
    if not address:
        return None
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def hash_of_event(event: AuditEvent) -> str:
    """SHA-256 over the event's fields and its predecessor's hash (the chain link)."""
    return hash_of_fields(
        prev_hash=event.prev_hash,
        created_at=event.created_at,
        actor_id=event.actor_id,
        actor_name=event.actor_name,
        event_type=int(event.event_type),
        target_type=event.target_type,
        target_id=event.target_id,
        department_id=event.department_id,
        ip_address=event.ip_address,
        details=event.details,
    )


def hash_of_fields(
    *,
    prev_hash: str,
    created_at: datetime,
    actor_id: int | None,
    actor_name: str,
    event_type: int,
    target_type: str,
    target_id: str,
    department_id: int | None,
    ip_address: str | None,
    details: dict[str, Any],
) -> str:
    """The chain's hash formula (docs/audit.md spells it out for outside verifiers)."""
    payload = json.dumps(
        [
            prev_hash,
            created_at.astimezone(UTC).isoformat(timespec="microseconds"),
            actor_id,
            actor_name,
            event_type,
            target_type,
            target_id,
            department_id,
            ip_address,
            details,
        ],
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _lock_chain_head() -> None:
    # PostgreSQL: writers take turns for the head; SQLite already has one writer at a time.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])


def record(
    event_type: EventType,
    *,
    actor=None,
    target=None,
    target_type: str = "",
    target_id: str | int = "",
    department_id: int | None = None,
    ip_address: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction.

    ``target`` may be a model instance (its label and pk are recorded); ``actor`` a member
    or None for the system. Call it as late as possible in a transaction: the chain head is
    locked until the transaction ends.
    """
    if target is not None:
        target_type = target._meta.label_lower
        target_id = target.pk
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    actor_name = _clean_text(actor.get_username())[:150] if actor_id else ""
    with transaction.atomic():
        _lock_chain_head()
        head = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        event = AuditEvent(
            created_at=timezone.now(),
            actor_id=actor_id,
            actor_name=actor_name,
            event_type=int(event_type),
            target_type=target_type,
            target_id=_clean_text(str(target_id))[:64],
            department_id=department_id,
            ip_address=canonical_ip(ip_address),
            details=canonical_details(details),
            prev_hash=head or GENESIS_HASH,
        )
        event.hash = hash_of_event(event)
        event.save(force_insert=True)
    return event


def client_ip(request) -> str | None:
    """The address a request came from, for the audit log and the sign-in lockout.

    Behind ``QINGLI_PROXY_COUNT`` reverse proxies that each append to X-Forwarded-For, it is
    that many entries from the right: the address our outermost proxy saw. Entries further
    left were written by the client and prove nothing.
    """
    proxies = getattr(settings, "QINGLI_PROXY_COUNT", 0)
    if proxies:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= proxies:
            return canonical_ip(forwarded[-proxies])
    return canonical_ip(request.META.get("REMOTE_ADDR"))
