"""CSV exports of the audit log as queue jobs: asking for one, the job that writes a large
one under its lease, and the sweep of exports whose worker died.

:func:`do_export_events` freezes the view at the current head (so the file holds exactly
the events the requester saw, not the export's own event) and then either

- streams it at once (at most ``QINGLI_AUDIT_EXPORT_DIRECT_MAX`` events): the
  ``AUDIT_LOG_EXPORTED`` event is written before the first byte, with the count; or
- queues an :class:`AuditExport` row and a job (:func:`build_audit_export`, enqueued on
  commit) that writes the file in id batches to the default storage, with its SHA-256.

The CSV itself and the audited download are the audit app's (``audit.event_exports``).
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from datetime import timedelta

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction

from audit import log as audit
from audit.event_exports import DirectExport, direct_max, write_csv
from audit.events import EventType
from audit.models import AuditEvent, AuditExport, AuditExportStatus
from audit.selectors import EventFilter, filtered_events
from retention.jobs.lease import Lease, LeaseLost, pacer
from retention.models import Member

logger = logging.getLogger(__name__)

QUEUE = "default"
# A running export touches its heartbeat at most this often (seconds).
BEAT_SECONDS = 5.0
# A running export whose heartbeat is older than this was left by a dead worker.
STALLED_AFTER = timedelta(minutes=10)
# Runs an export gets before it fails.
MAX_ATTEMPTS = 3


def do_export_events(
    f: EventFilter, *, acting_user: Member, ip_address: str | None = None
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
        LEASE.enqueue(export.pk)
    return export


def build_audit_export(export_id: int) -> AuditExport:
    """Write the export's file. A row another worker claimed is left alone; a run taken
    for dead meanwhile stops, removing its file."""
    export = LEASE.claim(export_id)
    if export is None:
        return AuditExport.objects.get(pk=export_id)
    name = ""
    try:
        with tempfile.TemporaryFile() as buffer:
            written = write_csv(
                EventFilter.from_json(export.filters),
                buffer,
                progress=pacer(lambda: LEASE.beat(export), BEAT_SECONDS),
            )
            LEASE.beat(export)
            buffer.seek(0)
            name = default_storage.save(f"audit-exports/{uuid.uuid4().hex}.csv", File(buffer))
        with transaction.atomic():
            done = {"file": name, "rows": written.rows, "size": written.size}
            if not LEASE.finish(export, AuditExportStatus.READY, sha256=written.sha256, **done):
                raise LeaseLost
            audit.record(
                EventType.AUDIT_EXPORT_COMPLETED,
                actor=None,
                target=export,
                details={"events": written.rows, "sha256": written.sha256, "size": written.size},
            )
    except LeaseLost:
        logger.warning("audit export %s: run %s was superseded", export_id, export.attempts)
        if name:
            default_storage.delete(name)
    except Exception as exc:
        LEASE.fail(export, f"{type(exc).__name__}: {exc}")
        raise
    export.refresh_from_db()
    return export


def build_audit_export_job(export_id: int) -> str:
    """The queue job: write a large CSV export of the audit log."""
    return build_audit_export(export_id).status


def requeue_stalled_audit_exports() -> list[int]:
    """Every five minutes: exports whose worker went silent are queued again (or failed)."""
    return LEASE.sweep()


def _failed(export: AuditExport, error: str) -> None:
    audit.record(EventType.AUDIT_EXPORT_FAILED, target=export)


# An audit-log export's lease: a heartbeat, the attempt number telling runs apart.
LEASE: Lease[AuditExport] = Lease(
    model=AuditExport,
    queued=AuditExportStatus.QUEUED,
    running=AuditExportStatus.RUNNING,
    failed=AuditExportStatus.FAILED,
    stale_after=STALLED_AFTER,
    max_attempts=MAX_ATTEMPTS,
    job=build_audit_export_job,
    queue=QUEUE,
    job_id="audit-export-{pk}",
    related=("requested_by",),
    on_failed=_failed,
)
