"""CSV exports of a filtered view of the audit log: the CSV itself, a small export
streamed at once (:class:`DirectExport`) and a large one written to a file-like sink
(:func:`write_csv`).

Asking for an export (freezing the view, choosing direct or queued), the job that writes
a queued one (sealed, under a key of its own), its audited download and its expiry are
the site's: see ``retention.reports.audit_log_exports``. Who may export is the caller's to
decide (auditors and admins, in the site's views).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.utils import timezone

from audit import cells
from audit.models import AuditEvent, AuditExport
from audit.selectors import EventFilter, filtered_events

BATCH = 5000
COLUMNS = [
    "id",
    "time",
    "actor",
    "actor_id",
    "action",
    "action_label",
    "object_type",
    "object_id",
    "department_id",
    "ip_address",
    "details",
    "prev_hash",
    "hash",
]


def direct_max() -> int:
    return getattr(settings, "QINGLI_AUDIT_EXPORT_DIRECT_MAX", 10_000)


@dataclass(frozen=True)
class DirectExport:
    """A small export: stream ``chunks()`` as the response body."""

    events: EventFilter
    count: int

    def chunks(self) -> Iterator[bytes]:
        return csv_chunks(self.events)


@dataclass(frozen=True)
class WrittenCsv:
    rows: int
    size: int
    sha256: str


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


def write_csv(
    f: EventFilter, out: Sink, *, progress: Callable[[], None] | None = None
) -> WrittenCsv:
    """The CSV of ``f`` into ``out`` (a file, or a writer that seals it), in id batches
    (``progress`` called after each), with the row count, size and SHA-256 of the CSV."""
    digest = hashlib.sha256()
    rows = size = 0
    for chunk, count in _csv_batches(f):
        digest.update(chunk)
        out.write(chunk)
        rows += count
        size += len(chunk)
        if progress is not None:
            progress()
    return WrittenCsv(rows, size, digest.hexdigest())


def exports_of(member) -> Iterable[AuditExport]:
    return AuditExport.objects.filter(requested_by=member).order_by("-id")


# --- the CSV itself -----------------------------------------------------------------------


def csv_chunks(f: EventFilter) -> Iterator[bytes]:
    for chunk, _count in _csv_batches(f):
        yield chunk


def _csv_batches(f: EventFilter) -> Iterator[tuple[bytes, int]]:
    """UTF-8 with a byte-order mark (spreadsheets read Chinese right), newest first, in
    batches of ids so memory stays flat at any size."""
    yield "\ufeff".encode() + _line(COLUMNS), 0
    zone = timezone.get_current_timezone()
    before = None
    while True:
        qs = filtered_events(f)
        if before is not None:
            qs = qs.filter(id__lt=before)
        batch = list(qs[:BATCH])
        if not batch:
            return
        text = io.StringIO()
        cells.CsvWriter(text).writerows(_row(event, zone) for event in batch)
        yield text.getvalue().encode(), len(batch)
        before = batch[-1].pk


def _line(values: list) -> bytes:
    text = io.StringIO()
    cells.CsvWriter(text).writerow(values)
    return text.getvalue().encode()


def _row(event: AuditEvent, zone) -> list:
    return [
        event.pk,
        event.created_at.astimezone(zone).isoformat(timespec="microseconds"),
        event.actor_name,
        event.actor_id or "",
        event.event_type,
        event.label,
        event.target_type,
        event.target_id,
        event.department_id or "",
        event.ip_address or "",
        json.dumps(event.details, ensure_ascii=False, sort_keys=True),
        event.prev_hash,
        event.hash,
    ]
