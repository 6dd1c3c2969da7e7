"""CSV exports of a filtered view of the audit log: the CSV itself, a small export
streamed at once (:class:`DirectExport`), a large one written to a file
(:func:`write_csv`), and the audited download of a written one (:func:`open_download`).

Asking for an export (freezing the view, choosing direct or queued) and the job that
writes a queued one are the site's: see ``retention.reports.audit_log_exports``. Who may
export is the caller's to decide (auditors and admins, in the site's views).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from audit import cells
from audit import log as audit
from audit.events import EventType
from audit.models import AuditEvent, AuditExport, AuditExportStatus
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


def write_csv(
    f: EventFilter, out: BinaryIO, *, progress: Callable[[], None] | None = None
) -> WrittenCsv:
    """The CSV of ``f`` into ``out``, in id batches (``progress`` called after each),
    with its row count, size and SHA-256."""
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


def open_download(export: AuditExport, *, acting_user, ip_address: str | None = None):
    """The ready file's bytes in chunks; the download is audited first."""
    if export.status != AuditExportStatus.READY or not export.file:
        raise FileNotFoundError("not ready")
    handle = default_storage.open(export.file.name, "rb")
    audit.record(
        EventType.AUDIT_EXPORT_DOWNLOADED,
        actor=acting_user,
        target=export,
        ip_address=ip_address,
        details={"sha256": export.sha256},
    )

    def chunks() -> Iterator[bytes]:
        with handle:
            yield from iter(lambda: handle.read(64 * 1024), b"")

    return chunks()


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
