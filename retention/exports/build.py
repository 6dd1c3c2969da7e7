"""The export's build job: claim the row, write the file through a writer into a sealed
(encrypted, hashed) file, and record the outcome.

``build_export`` takes a queued export (compare-and-swap), encrypts the file under a fresh
data key of its own (``retention.exports.sealed``; the key is kept on the row, wrapped by
the master key), writes it to the default storage under a random name and records the
SHA-256, size and counts of the plaintext, in the row and in the audit log.

The row is held through its lease (``LEASE``, a ``retention.jobs.lease.Lease``): the job
touches its heartbeat every few seconds; a run that was taken for dead meanwhile (its
export queued again by the lease's sweep, ``service.requeue_stalled_exports``) learns so
at its next beat and stops, writing nothing. ``build_export_job`` is the queue job.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import translation
from django.utils.translation import gettext_lazy

from audit.events import EventType
from retention.exports import trail
from retention.exports.sealed import SealedWriter
from retention.exports.writers import WRITERS
from retention.jobs.lease import Lease, LeaseLost, pacer
from retention.models import Export, ExportStatus
from retention.records import crypto
from retention.wipes.schedule import enqueue_start_if_waiting

logger = logging.getLogger(__name__)

QUEUE = "default"
# A running export touches its heartbeat at most this often (seconds).
BEAT_SECONDS = 5.0
# A running export whose heartbeat is older than this was left by a dead worker.
STALLED_AFTER = timedelta(minutes=10)
# Runs an export gets: one whose writing kills its worker every time fails in the end.
MAX_ATTEMPTS = 3


def build_export_job(export_id: int) -> str:
    """The queue job: write an export's file (a request's frozen scope or a conversation);
    a request that waited for it as evidence starts now rather than at the watchdog's
    next look."""
    export = build_export(export_id)
    if export.status == ExportStatus.READY and export.request_id:
        enqueue_start_if_waiting(export.request_id)
    return export.status


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
            raise LeaseLost
    except LeaseLost:  # taken for dead and queued again: this run stops, writing nothing
        logger.warning("export %s: run %s was superseded by a restart", export_id, export.attempts)
        default_storage.delete(name)
    except Exception as exc:
        logger.exception("export %s failed", export_id)
        LEASE.fail(export, f"{type(exc).__name__}: {exc}")
        default_storage.delete(name)  # this run's own name: safe whoever runs now
    export.refresh_from_db()
    return export


def _claim(export_id: int) -> tuple[Export, bytes | None]:
    """Take a queued export (compare-and-swap) for a new run with a fresh data key and a
    fresh file name, both on the row before any byte is written. None: not queued."""
    with transaction.atomic():
        export = LEASE.claim(export_id)
        if export is None:
            return Export.objects.select_related(*LEASE.related).get(pk=export_id), None
        left_behind = export.file.name
        data_key, export.wrapped_key = crypto.new_export_key(export.pk)
        export.file = f"exports/{uuid.uuid4().hex}.enc"
        export.save(update_fields=["file", "wrapped_key"])
    if left_behind:
        default_storage.delete(left_behind)  # an earlier run's, if it got that far
    return export, data_key


def _beat(export: Export) -> None:
    """Alive (every ``BEAT_SECONDS`` while reading, and before the file is saved). A run
    that is no longer the latest stops here (LeaseLost)."""
    LEASE.beat(export)


class _Sink:
    """Plaintext to the sealed file, counted and hashed on the way: the checksum and size
    are those of what a download gives back."""

    def __init__(self, out: SealedWriter, export: Export) -> None:
        self.out = out
        self.heartbeat = pacer(lambda: _beat(export), BEAT_SECONDS)
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
        "file": name,
        "sha256": sink.digest.hexdigest(),
        "size": sink.size,
        "messages": sink.messages,
        "unreadable": sink.unreadable,
    }
    with transaction.atomic():
        if not LEASE.finish(export, ExportStatus.READY, **done):
            return False
        trail.record(
            EventType.EXPORT_COMPLETED,
            export,
            **{k: done[k] for k in ("sha256", "size", "messages", "unreadable")},
        )
    return True


def _restarted(export: Export, details: dict[str, Any]) -> None:
    trail.record(EventType.EXPORT_RESTARTED, export, **details)


def _failed(export: Export, error: str) -> None:
    trail.record(EventType.EXPORT_FAILED, export, error=error)


def _discard(export: Export) -> None:
    """The file a dead run left, once its export failed."""
    if export.file.name:
        default_storage.delete(export.file.name)


# The export's lease: a heartbeat, the attempt number telling runs apart. A failed export
# keeps neither file nor key.
LEASE: Lease[Export] = Lease(
    model=Export,
    queued=ExportStatus.QUEUED,
    running=ExportStatus.RUNNING,
    failed=ExportStatus.FAILED,
    stale_after=STALLED_AFTER,
    max_attempts=MAX_ATTEMPTS,
    job=build_export_job,
    queue=QUEUE,
    job_id="export-{pk}",
    related=("request", "conversation", "requested_by"),
    cleared_on_failure={"file": "", "wrapped_key": None},
    gave_up=gettext_lazy("Its worker stopped %(n)d times while writing it."),
    job_ended=gettext_lazy("Its job ended (%(status)s) before the export began."),
    on_requeued=_restarted,
    on_failed=_failed,
    discard=_discard,
)
