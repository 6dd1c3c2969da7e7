"""CSV exports of the audit log as queue jobs: asking for one, the job that writes a large
one under its lease, and the sweep of exports whose worker died.

:func:`do_export_events` freezes the view at the current head (so the file holds exactly
the events the requester saw, not the export's own event) and then either

- streams it at once (at most ``QINGLI_AUDIT_EXPORT_DIRECT_MAX`` events): the
  ``AUDIT_LOG_EXPORTED`` event is written before the first byte, with the count; or
- queues an :class:`AuditExport` row and a job (:func:`build_audit_export`, enqueued on
  commit) that writes the file in id batches to the default storage, with its SHA-256.

A written file is sealed like a request's export (``retention.exports.sealed``, kind
``audit-export``) under a fresh data key, kept on the row wrapped by the master key; its
checksum and size are those of the CSV a download gives back (:func:`open_audit_download`,
decrypted as it streams, audited). After the ``export_keep_days`` policy it expires
(:func:`expire_audit_exports`, daily): file deleted, key destroyed, audited.

The CSV itself is the audit app's (``audit.event_exports``).
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction

from audit import log as audit
from audit.event_exports import DirectExport, direct_max, write_csv
from audit.events import EventType
from audit.models import AuditExport, AuditExportStatus
from audit.selectors import EventFilter, filtered_events
from audit.verification import head_id
from retention.exports.download import open_sealed
from retention.exports.sealed import SealedWriter, expire_sealed
from retention.jobs.lease import Lease, LeaseLost, pacer
from retention.models import Member
from retention.records import crypto

logger = logging.getLogger(__name__)

QUEUE = "default"
# The sealed files' kind: their chunks and keys never open as a request export's.
KIND = "audit-export"
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
        head = head_id() or 0
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
    """Write the export's file, sealed under a fresh data key (the row gets the key,
    wrapped, when it is ready). A row another worker claimed is left alone; a run taken
    for dead meanwhile stops, removing its file."""
    # The file's name goes on the row before any byte is written, so a run that dies
    # after saving it leaves a file the next run (or the sweep, failing it) removes.
    with transaction.atomic():
        export = LEASE.claim(export_id)
        if export is None:
            return AuditExport.objects.get(pk=export_id)
        left_behind = export.file.name
        export.file = f"audit-exports/{uuid.uuid4().hex}.enc"
        export.save(update_fields=["file"])
    if left_behind:
        default_storage.delete(left_behind)  # an earlier run's, if it got that far
    name = export.file.name
    try:
        data_key, wrapped = crypto.new_export_key(export.pk, kind=KIND)
        with tempfile.TemporaryFile() as buffer:
            sealed = SealedWriter(buffer, data_key, export.pk, kind=KIND)
            written = write_csv(
                EventFilter.from_json(export.filters),
                sealed,
                progress=pacer(lambda: LEASE.beat(export), BEAT_SECONDS),
            )
            sealed.close()
            LEASE.beat(export)
            buffer.seek(0)
            name = default_storage.save(name, File(buffer))
        with transaction.atomic():
            done = {"file": name, "rows": written.rows, "size": written.size}
            if not LEASE.finish(
                export,
                AuditExportStatus.READY,
                sha256=written.sha256,
                wrapped_key=wrapped,
                **done,
            ):
                raise LeaseLost
            audit.record(
                EventType.AUDIT_EXPORT_COMPLETED,
                actor=None,
                target=export,
                details={"events": written.rows, "sha256": written.sha256, "size": written.size},
            )
    except LeaseLost:
        logger.warning("audit export %s: run %s was superseded", export_id, export.attempts)
        default_storage.delete(name)  # this run's own name: safe whoever runs now
    except Exception as exc:
        LEASE.fail(export, f"{type(exc).__name__}: {exc}")
        default_storage.delete(name)
        raise
    export.refresh_from_db()
    return export


def build_audit_export_job(export_id: int) -> str:
    """The queue job: write a large CSV export of the audit log."""
    return build_audit_export(export_id).status


def requeue_stalled_audit_exports() -> list[int]:
    """Every five minutes: exports whose worker went silent are queued again (or failed)."""
    return LEASE.sweep()


def open_audit_download(
    export: AuditExport, *, acting_user: Member, ip_address: str | None = None
) -> Iterator[bytes]:
    """The ready export's CSV, decrypted a chunk at a time as it streams, the download
    audited. The key and the first chunk are checked before anything is audited or sent;
    a later chunk that does not authenticate stops the stream, never sending garbage.
    Who may download is the caller's to decide (the requester, in the site's views)."""

    def record(export: AuditExport) -> None:
        audit.record(
            EventType.AUDIT_EXPORT_DOWNLOADED,
            actor=acting_user,
            target=export,
            ip_address=ip_address,
            details={"sha256": export.sha256},
        )

    return open_sealed(
        export,
        ready=AuditExportStatus.READY,
        expired=AuditExportStatus.EXPIRED,
        record=record,
        kind=KIND,
    )


def expire_audit_exports(*, now: datetime | None = None) -> list[int]:
    """Daily: a ready export finished more than ``export_keep_days`` ago expires. Its key
    is destroyed first (so the file is unreadable even if deleting it fails), then its
    file is deleted; the row, its checksum and counts stay, and each expiry is audited.
    A file written before these exports were sealed (no key) expires at once. Running it
    again expires nothing twice."""

    def record(export: AuditExport, keep_days: int) -> None:
        audit.record(
            EventType.AUDIT_EXPORT_EXPIRED,
            actor=None,
            target=export,
            details={
                "sha256": export.sha256,
                "finished_at": export.finished_at.isoformat() if export.finished_at else None,
                "keep_days": keep_days,
                "encrypted": export.wrapped_key is not None,
            },
        )

    return expire_sealed(
        AuditExport,
        ready=AuditExportStatus.READY,
        expired=AuditExportStatus.EXPIRED,
        record=record,
        now=now,
    )


def _discard(export: AuditExport) -> None:
    """The file a dead run left, once its export failed."""
    if export.file.name:
        default_storage.delete(export.file.name)


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
    cleared_on_failure={"file": "", "wrapped_key": None},
    on_failed=_failed,
    discard=_discard,
)
