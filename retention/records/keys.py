"""Master-key rotation: every live data key re-wrapped under the current master key, and
how many keys each master key still wraps (so a retired one can be destroyed)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction

from audit import log as audit
from audit.events import EventType
from audit.models import AuditExport
from retention.models import DataKey, Export, Member
from retention.models.roles import Role
from retention.records import crypto


def do_rotate_master_key(*, actor: Member | None, batch_size: int = 1000) -> dict[str, int]:
    """Re-wrap every live data key (conversations', export files' and audit-log export
    files') with the current master key, in short batches.

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
        (AuditExport, "id", crypto.rewrapped_audit_export_key),
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
    """How many live data keys (conversations', export files' and audit-log export
    files') each master key wraps."""
    counts: dict[str, int] = {}
    for model in (DataKey, Export, AuditExport):
        for wrapped in (
            model.objects.filter(wrapped_key__isnull=False)
            .values_list("wrapped_key", flat=True)
            .iterator(chunk_size=5000)
        ):
            key_id = crypto.wrapped_with(bytes(wrapped)).hex()
            counts[key_id] = counts.get(key_id, 0) + 1
    return counts
