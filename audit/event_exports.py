"""CSV exports of a filtered view of the audit log, audited like every other export.

:func:`do_export_events` freezes the view at the current head (so the file holds exactly
the events the requester saw, not the export's own event) and then either

- streams it at once (at most ``QINGLI_AUDIT_EXPORT_DIRECT_MAX`` events): the
  ``AUDIT_LOG_EXPORTED`` event is written before the first byte, with the count; or
- queues an :class:`AuditExport` row and a job (:func:`build_export`, enqueued on commit)
  that writes the file in id batches to the default storage, with its SHA-256; the
  requester downloads it (:func:`open_download`, audited).

Who may export is the caller's to decide (auditors and admins, in the site's views).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import django_rq
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from audit import log as audit
from audit.events import EventType
from audit.models import AuditEvent, AuditExport, AuditExportStatus
from audit.selectors import EventFilter, filtered_events

QUEUE = "default"
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


def do_export_events(
    f: EventFilter, *, acting_user, ip_address: str | None = None
) -> DirectExport | AuditExport:
    """Freeze ``f`` at the current head and export it, directly or through a job."""
    with transaction.atomic():
        head = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
        frozen = EventFilter(**{**vars(f), "up_to_id": min(head, f.up_to_id or head)})
        limit = direct_max()
        count = filtered_events(frozen)[: limit + 1].count()
        filters = frozen.to_json()
        if count <= limit:
            audit.record(
                EventType.AUDIT_LOG_EXPORTED,
                actor=acting_user,
                target_type="audit.auditevent",
                ip_address=ip_address,
                details={"filters": filters, "events": count, "format": "csv"},
            )
            return DirectExport(frozen, count)
        export = AuditExport.objects.create(
            requested_by=acting_user, filters=filters, max_event_id=frozen.up_to_id
        )
        audit.record(
            EventType.AUDIT_EXPORT_REQUESTED,
            actor=acting_user,
            target=export,
            ip_address=ip_address,
            details={"filters": filters, "format": "csv"},
        )
        export_id = export.pk
        transaction.on_commit(
            lambda: django_rq.get_queue(QUEUE).enqueue("audit.jobs.build_audit_export", export_id)
        )
    return export


def build_export(export_id: int) -> AuditExport:
    """The job: write the export's file. A row another worker claimed is left alone."""
    claimed = AuditExport.objects.filter(pk=export_id, status=AuditExportStatus.QUEUED).update(
        status=AuditExportStatus.RUNNING, started_at=timezone.now()
    )
    export = AuditExport.objects.get(pk=export_id)
    if not claimed:
        return export
    try:
        digest = hashlib.sha256()
        rows = 0
        with tempfile.TemporaryFile() as buffer:
            for chunk, count in _csv_batches(EventFilter.from_json(export.filters)):
                digest.update(chunk)
                buffer.write(chunk)
                rows += count
            size = buffer.tell()
            buffer.seek(0)
            name = default_storage.save(f"audit-exports/{uuid.uuid4().hex}.csv", File(buffer))
    except Exception as exc:
        with transaction.atomic():
            AuditExport.objects.filter(pk=export.pk).update(
                status=AuditExportStatus.FAILED,
                error=f"{type(exc).__name__}: {exc}",
                finished_at=timezone.now(),
            )
            audit.record(EventType.AUDIT_EXPORT_FAILED, target=export)
        raise
    with transaction.atomic():
        export.file.name = name
        export.rows = rows
        export.size = size
        export.sha256 = digest.hexdigest()
        export.status = AuditExportStatus.READY
        export.finished_at = timezone.now()
        export.save()
        audit.record(
            EventType.AUDIT_EXPORT_COMPLETED,
            actor=None,
            target=export,
            details={"events": rows, "sha256": export.sha256, "size": export.size},
        )
    return export


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
        writer = csv.writer(text)
        writer.writerows(_row(event, zone) for event in batch)
        yield text.getvalue().encode(), len(batch)
        before = batch[-1].pk


def _line(values: list) -> bytes:
    text = io.StringIO()
    csv.writer(text).writerow(values)
    return text.getvalue().encode()


def _row(event: AuditEvent, zone) -> list:
    return [
        event.pk,
        event.created_at.astimezone(zone).isoformat(timespec="microseconds"),
        _cell(event.actor_name),
        event.actor_id or "",
        event.event_type,
        event.label,
        event.target_type,
        _cell(event.target_id),
        event.department_id or "",
        event.ip_address or "",
        json.dumps(event.details, ensure_ascii=False, sort_keys=True),
        event.prev_hash,
        event.hash,
    ]


def _cell(text: str) -> str:
    """Spreadsheets run a cell that starts like a formula: such text gets an apostrophe."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
