"""Walk the audit chain and find the first link that does not hold.

Besides each event's link and hash, the walk checks the daily digests: a digest names
the head of a finished day and its hash, so a chain rewritten from some event onwards
(every hash recomputed, every link consistent) still disagrees with the digests recorded
before the rewrite, and with the copies outside verifiers keep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from audit.log import GENESIS_HASH, hash_of_event
from audit.models import AuditEvent, ChainDigest


@dataclass(frozen=True)
class ChainReport:
    intact: bool
    events_checked: int
    last_good_id: int | None
    broken_id: int | None = None
    reason: str = ""
    digests_checked: int = 0


def verify_chain(
    *,
    chunk_size: int = 5000,
    up_to: int | None = None,
    digests: dict[int, list[tuple[str, str]]] | None = None,
    progress: Callable[[], None] | None = None,
) -> ChainReport:
    """Recompute every event's hash in id order (up to event ``up_to`` if given); stop at
    the first one that disagrees with its link, its hash or a digest.

    ``digests`` maps event ids to the ``(label, hash)`` pairs the event must match; by
    default the recorded daily digests (up to ``up_to``). ``progress`` is called after
    every ``chunk_size`` events (a job's heartbeat).
    """
    if digests is None:
        digests = recorded_digests(up_to=up_to)
    else:
        digests = {event_id: list(pins) for event_id, pins in digests.items()}
    expected_prev = GENESIS_HASH
    last_good_id = None
    checked = 0
    digests_checked = 0
    events = AuditEvent.objects.order_by("id")
    if up_to is not None:
        events = events.filter(id__lte=up_to)
    for event in events.iterator(chunk_size=chunk_size):
        checked += 1
        pinned = digests.pop(event.pk, [])
        reason = _disagreement(event, expected_prev, pinned)
        if reason:
            return ChainReport(False, checked, last_good_id, event.pk, reason, digests_checked)
        digests_checked += len(pinned)
        expected_prev = event.hash
        last_good_id = event.pk
        if progress is not None and checked % chunk_size == 0:
            progress()
    if digests:
        missing = min(digests)
        label, _hash = digests[missing][0]
        return ChainReport(
            False,
            checked,
            last_good_id,
            missing,
            f"the head event of the digest of {label} is missing from the chain",
            digests_checked,
        )
    return ChainReport(True, checked, last_good_id, digests_checked=digests_checked)


def _disagreement(event: AuditEvent, expected_prev: str, pinned: list[tuple[str, str]]) -> str:
    """Why the event breaks the chain, or "" when it holds."""
    if event.prev_hash != expected_prev:
        return (
            "its link to the previous event does not match (an event before it "
            "was removed, inserted or changed)"
        )
    if hash_of_event(event) != event.hash:
        return "its content does not match its hash"
    for label, digest_hash in pinned:
        if digest_hash != event.hash:
            return (
                f"its hash does not match the digest of {label} (the chain up to it "
                "was rewritten after the digest was taken, or the digest was changed)"
            )
    return ""


def recorded_digests(*, up_to: int | None = None) -> dict[int, list[tuple[str, str]]]:
    """The daily digests as ``{head event id: [(day, head hash), ...]}`` (days without
    events share their head with the day before)."""
    rows = ChainDigest.objects.order_by("day")
    if up_to is not None:
        rows = rows.filter(head_event_id__lte=up_to)
    found: dict[int, list[tuple[str, str]]] = {}
    for day, event_id, head_hash in rows.values_list("day", "head_event_id", "head_hash"):
        found.setdefault(event_id, []).append((day.isoformat(), head_hash))
    return found
