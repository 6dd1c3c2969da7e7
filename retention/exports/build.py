"""The export's build job: claim the row, write the file through a writer into a sealed
(encrypted, hashed) file, and record the outcome.

``build_export`` takes a queued export (compare-and-swap), encrypts the file under a fresh
data key of its own (``retention.exports.sealed``; the key is kept on the row, wrapped by
the master key), writes it to the default storage under a random name and records the
SHA-256, size and counts of the plaintext, in the row and in the audit log.

The job touches the row's heartbeat every few seconds; a run that was taken for dead
meanwhile (its export queued again by ``retention.exports.service.requeue_stalled_exports``)
learns so at its next beat and stops, writing nothing.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
import uuid
from datetime import timedelta
from typing import Any

import django_rq
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone, translation
from rq.job import JobStatus

from audit.events import EventType
from retention.exports import trail
from retention.exports.sealed import SealedWriter
from retention.exports.writers import WRITERS
from retention.models import Export, ExportStatus
from retention.records import crypto

logger = logging.getLogger(__name__)

QUEUE = "default"
# A running export touches its heartbeat at most this often (seconds).
BEAT_SECONDS = 5.0
# A running export whose heartbeat is older than this was left by a dead worker.
STALLED_AFTER = timedelta(minutes=10)
# RQ states of a job that will still run.
PENDING_JOB_STATUSES = {
    JobStatus.CREATED,
    JobStatus.QUEUED,
    JobStatus.STARTED,
    JobStatus.DEFERRED,
    JobStatus.SCHEDULED,
}
# Runs an export gets: one whose writing kills its worker every time fails in the end.
MAX_ATTEMPTS = 3


def job_id(export_id: int) -> str:
    return f"export-{export_id}"


def enqueue_build(export_id: int) -> None:
    """The export's job, on commit, under an id of its own: a job that Redis lost can
    then be told from one that still waits its turn."""
    transaction.on_commit(
        lambda: django_rq.get_queue(QUEUE).enqueue(
            build_export_job, export_id, job_id=job_id(export_id)
        )
    )


def build_export_job(export_id: int) -> str:
    """The queue job: write an export's file (a request's frozen scope or a conversation);
    a request that waited for it as evidence starts now rather than at the watchdog's
    next look."""
    # wipes.execution imports retention.exports.service, which imports this module.
    from retention.wipes.execution import enqueue_start_if_waiting

    export = build_export(export_id)
    if export.status == ExportStatus.READY and export.request_id:
        enqueue_start_if_waiting(export.request_id)
    return export.status


class _Superseded(Exception):
    """This run was taken for dead and the export queued again: it stops, writing nothing."""


def build_export(export_id: int) -> Export:
    """Write the export's file, encrypted under a fresh data key. A second run of the same
    job does nothing; a run of a restarted export starts from scratch, removing whatever
    file an earlier run left."""
    export, data_key = _claim(export_id)
    if data_key is None:
        return export
    name = export.file.name
    try:
        with (
            tempfile.TemporaryFile() as handle,
            translation.override(export.language or settings.LANGUAGE_CODE),
        ):
            sink = _Sink(SealedWriter(handle, data_key, export.pk), export)
            WRITERS[export.format](export, sink)
            sink.close()
            _beat(export)
            handle.seek(0)
            name = default_storage.save(name, File(handle))
        if not _finish(export, name, sink):
            raise _Superseded
    except _Superseded:
        logger.warning("export %s: run %s was superseded by a restart", export_id, export.attempts)
        default_storage.delete(name)
    except Exception as exc:
        logger.exception("export %s failed", export_id)
        fail(export, f"{type(exc).__name__}: {exc}")
        default_storage.delete(name)  # this run's own name: safe whoever runs now
    export.refresh_from_db()
    return export


def _claim(export_id: int) -> tuple[Export, bytes | None]:
    """Take a queued export (compare-and-swap) for a new run with a fresh data key and a
    fresh file name, both on the row before any byte is written. None: not queued."""
    now = timezone.now()
    with transaction.atomic():
        claimed = Export.objects.filter(pk=export_id, status=ExportStatus.QUEUED).update(
            status=ExportStatus.RUNNING,
            started_at=now,
            heartbeat_at=now,
            attempts=F("attempts") + 1,
        )
        export = Export.objects.select_related("request", "conversation", "requested_by").get(
            pk=export_id
        )
        if not claimed:
            return export, None
        left_behind = export.file.name
        data_key, export.wrapped_key = crypto.new_export_key(export.pk)
        export.file = f"exports/{uuid.uuid4().hex}.enc"
        export.save(update_fields=["file", "wrapped_key"])
    if left_behind:
        default_storage.delete(left_behind)  # an earlier run's, if it got that far
    return export, data_key


def this_run(export: Export) -> QuerySet[Export]:
    """The row, as long as this run is still the export's latest."""
    return Export.objects.filter(
        pk=export.pk, status=ExportStatus.RUNNING, attempts=export.attempts
    )


def _beat(export: Export) -> None:
    """Alive (every ``BEAT_SECONDS`` while reading, and before the file is saved). A run
    that is no longer the latest stops here."""
    if not this_run(export).update(heartbeat_at=timezone.now()):
        raise _Superseded


class _Heartbeat:
    """Touches the export's heartbeat once ``BEAT_SECONDS`` have passed since the last."""

    def __init__(self, export: Export) -> None:
        self.export = export
        self.last = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self.last >= BEAT_SECONDS:
            _beat(self.export)
            self.last = time.monotonic()


class _Sink:
    """Plaintext to the sealed file, counted and hashed on the way: the checksum and size
    are those of what a download gives back."""

    def __init__(self, out: SealedWriter, export: Export) -> None:
        self.out = out
        self.heartbeat = _Heartbeat(export)
        self.digest = hashlib.sha256()
        self.size = 0
        self.messages = 0
        self.unreadable = 0

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.digest.update(data)
        self.size += len(data)

    def close(self) -> None:
        self.out.close()

    def count(self, records: list[dict[str, Any]]) -> None:
        self.messages += len(records)
        self.unreadable += sum(1 for r in records if r["unreadable"])


def _finish(export: Export, name: str, sink: _Sink) -> bool:
    """Ready, and audited; False if this run was superseded meanwhile."""
    done = {
        "status": ExportStatus.READY,
        "finished_at": timezone.now(),
        "file": name,
        "sha256": sink.digest.hexdigest(),
        "size": sink.size,
        "messages": sink.messages,
        "unreadable": sink.unreadable,
    }
    with transaction.atomic():
        if not this_run(export).update(**done):
            return False
        trail.record(
            EventType.EXPORT_COMPLETED,
            export,
            **{k: done[k] for k in ("sha256", "size", "messages", "unreadable")},
        )
    return True


def fail(export: Export, error: str, *, still: Q | None = None) -> bool:
    """Failed and audited, with neither file nor key; False if a restart took over (or
    the row no longer matches ``still``). The caller deletes the file."""
    error = error[:2000]
    with transaction.atomic():
        failed = (
            this_run(export)
            .filter(still or Q())
            .update(
                status=ExportStatus.FAILED,
                finished_at=timezone.now(),
                error=error,
                file="",
                wrapped_key=None,
            )
        )
        if failed:
            trail.record(EventType.EXPORT_FAILED, export, error=error)
    return bool(failed)
