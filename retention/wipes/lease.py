"""A run's lease: one worker at a time works a run. It takes the lease (``acquire``),
renews it with every batch's checkpoint, lets go of it for a back-off after a failure,
and a lease that runs out (``expired_runs``) lets the watchdog hand the run to another
worker.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

import audit.log as audit
from audit.events import EventType
from retention.models import Execution, ExecutionStatus
from retention.wipes.outcome import fail
from retention.wipes.units import Unit


class LeaseLost(Exception):
    """Another worker took the run over; this one must stop without committing."""


def worker_name() -> str:
    """This worker's name on the leases it holds: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire(execution_id: int, worker: str) -> Execution | None:
    """Take the run's lease, unless the run is finished or another worker holds it (None
    then). A run that used up its attempts fails instead."""
    now = timezone.now()
    with transaction.atomic():
        execution = Execution.objects.select_for_update().get(pk=execution_id)
        if execution.status not in (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING):
            return None  # finished: running it again changes nothing
        if (
            execution.lease_expires_at
            and execution.lease_expires_at > now
            and execution.lease_owner != worker
        ):
            return None  # another worker is on it, or a retry is backing off
        resuming = execution.started_at is not None
        execution.attempts += 1
        if execution.attempts > settings.QINGLI_WIPE_MAX_ATTEMPTS:
            fail(execution, f"gave up after {execution.attempts - 1} attempts")
            return None
        execution.status = ExecutionStatus.RUNNING
        execution.lease_owner = worker
        execution.lease_expires_at = now + timedelta(seconds=settings.QINGLI_WIPE_LEASE_SECONDS)
        execution.started_at = execution.started_at or now
        if resuming:
            execution.resumes += 1
        execution.save()
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


def locked_run(execution: Execution, worker: str) -> Execution:
    """The run's row, locked for this batch, if this worker still holds the lease."""
    locked = Execution.objects.select_for_update().get(pk=execution.pk)
    if locked.lease_owner != worker or locked.status != ExecutionStatus.RUNNING:
        raise LeaseLost
    return locked


def checkpoint(locked: Execution, unit: Unit | None) -> None:
    """Move the run's checkpoint past the batch and renew the lease (the heartbeat)."""
    if unit is not None:
        locked.cursor_conversation, locked.cursor_id = unit.conversation_id, unit.up_to_id
    locked.batches += 1
    locked.lease_expires_at = timezone.now() + timedelta(seconds=settings.QINGLI_WIPE_LEASE_SECONDS)
    locked.save()


def back_off(execution: Execution) -> int:
    """Let go of a failed run for a while: the lease runs out with the back-off, so the
    watchdog retries even if the retry job is lost. A little longer each time."""
    backoff = min(300, 10 * 2 ** (execution.attempts - 1))
    execution.lease_owner = ""
    execution.lease_expires_at = timezone.now() + timedelta(seconds=backoff)
    return backoff


def expired_runs(now: datetime) -> list[int]:
    """Runs whose worker went silent (lease expired), and runs queued a minute ago that no
    worker took."""
    return list(
        Execution.objects.filter(
            Q(status=ExecutionStatus.RUNNING, lease_expires_at__lt=now)
            | Q(status=ExecutionStatus.QUEUED, created_at__lt=now - timedelta(minutes=1))
        ).values_list("pk", flat=True)
    )
