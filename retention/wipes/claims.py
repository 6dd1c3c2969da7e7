"""Which worker works a run: a run's row is held through the job lease every job row
shares (``LEASE``, a ``retention.jobs.lease.Lease`` under a deadline). A worker claims it
(``acquire``: a run past its attempts fails instead, and a run taken over from its
checkpoint is audited as resumed), holds it for each batch (``LEASE.hold``), pushes the
deadline on with each batch's checkpoint (``checkpoint``) and lets go of it for a
back-off after a failure (``LEASE.release``). A run whose deadline passed is the
watchdog's (``LEASE.stale``).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import audit.log as audit
from audit.events import EventType
from retention.jobs.lease import Lease
from retention.models import Execution, ExecutionStatus
from retention.wipes.outcome import failed
from retention.wipes.units import Unit

# A run's lease: a deadline and its worker's name. A failure ends the lease too, and
# fails the request with it. The run's job is queued by the run loop (``runner``), which
# sits above the batches that hold the row.
LEASE: Lease[Execution] = Lease(
    model=Execution,
    queued=ExecutionStatus.QUEUED,
    running=ExecutionStatus.RUNNING,
    failed=ExecutionStatus.FAILED,
    stale_after=lambda: timedelta(seconds=settings.QINGLI_WIPE_LEASE_SECONDS),
    max_attempts=lambda: settings.QINGLI_WIPE_MAX_ATTEMPTS,
    heartbeat=None,
    expires="lease_expires_at",
    owner="lease_owner",
    # Set at the first claim only: a resumed run keeps its start (see ``acquire``).
    started=None,
    error="last_error",
    cleared_on_failure={"lease_owner": "", "lease_expires_at": None},
    on_failed=failed,
)


def worker_name() -> str:
    """This worker's name on the leases it holds: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(execution_id: int, worker: str) -> Execution | None:
    """Take the run's lease, unless the run is finished or another worker holds it, or a
    retry backs off (None then). A run that used up its attempts fails instead."""
    now = timezone.now()
    with transaction.atomic():
        # Queued, or running under a deadline that passed or that this worker holds.
        execution = LEASE.claim(execution_id, owner=worker, take_expired=True, now=now)
        if execution is None:
            return None
        if execution.attempts > settings.QINGLI_WIPE_MAX_ATTEMPTS:
            LEASE.fail(execution, f"gave up after {execution.attempts - 1} attempts")
            return None
        resuming = execution.started_at is not None
        if resuming:
            execution.resumes += 1
        else:
            execution.started_at = now
        execution.save(update_fields=["started_at", "resumes"])
        if resuming:
            audit.record(
                EventType.REQUEST_RESUMED,
                target=execution.request,
                department_id=execution.request.scope_root_id,
                details={
                    "kind": execution.kind,
                    "phase": execution.phase,
                    "checkpoint": [execution.cursor_conversation, execution.cursor_id],
                    "done": execution.done_messages,
                    "attempt": execution.attempts,
                    "previous_worker_error": execution.last_error[:500],
                },
            )
    return execution


def checkpoint(locked: Execution, unit: Unit | None) -> None:
    """Move the run's checkpoint past the batch, and push the lease's deadline on (the
    run's sign of life), in the batch's transaction."""
    if unit is not None:
        locked.cursor_conversation, locked.cursor_id = unit.conversation_id, unit.up_to_id
    locked.batches += 1
    locked.save()
    # After the save, which writes the deadline as it was read.
    LEASE.beat(locked)
