"""Walk the audit chain and find the first link that does not hold."""

from __future__ import annotations

from dataclasses import dataclass

from audit.log import GENESIS_HASH, hash_of_event
from audit.models import AuditEvent


@dataclass(frozen=True)
class ChainReport:
    intact: bool
    events_checked: int
    last_good_id: int | None
    broken_id: int | None = None
    reason: str = ""


def verify_chain(*, chunk_size: int = 5000) -> ChainReport:
    """Recompute every event's hash in id order; stop at the first one that disagrees."""
    expected_prev = GENESIS_HASH
    last_good_id = None
    checked = 0
    events = AuditEvent.objects.order_by("id").iterator(chunk_size=chunk_size)
    for event in events:
        checked += 1
        if event.prev_hash != expected_prev:
            return ChainReport(
                False,
                checked,
                last_good_id,
                event.pk,
                "its link to the previous event does not match (an event before it "
                "was removed, inserted or changed)",
            )
        if hash_of_event(event) != event.hash:
            return ChainReport(
                False, checked, last_good_id, event.pk, "its content does not match its hash"
            )
        expected_prev = event.hash
        last_good_id = event.pk
    return ChainReport(True, checked, last_good_id)
