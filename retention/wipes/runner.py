"""The leased run loop: a worker takes a run's lease and works it batch by batch from its
checkpoint to the end (a move, a restore, a server-side wipe's phases, or a purge), and
what a run queues next: a retry after a failure, and a purge of records binned for
purging at once. Starting the purge runs of the hourly job is here too, since a purge
start queues runs.

A run walks its request's frozen scope in a fixed order (conversations by id, then
message ids) in batches of at most ``QINGLI_WIPE_BATCH_MESSAGES`` messages. Each batch
is one short transaction that re-checks holds, does its work, and moves the run's
checkpoint, and commits only while its worker still holds the run's lease. A worker
killed at any point leaves a checkpoint that matches exactly what was committed; the
watchdog hands the run to another worker once the lease expires, and it carries on from
there. Running a finished run again changes nothing.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

import audit.log as audit
from audit.events import EventType
from retention.dates import bounds_problem
from retention.jobs.lease import LeaseLost
from retention.models import (
    Conversation,
    DeletionRequest,
    Execution,
    ExecutionKind,
    Tombstone,
    TombstoneState,
)
from retention.records.holds import held_conversations_q, hold_guard_shared
from retention.wipes import claims, move, purge, shred
from retention.wipes.shred import HIDE, PURGE, SHRED
from retention.wipes.units import target_units, tombstone_units

logger = logging.getLogger(__name__)

QUEUE = "wipes"
# Moving to the recycle bin only counts rows: it takes this many times the batch size
# that a deleting batch takes.
MOVE_BUDGET_FACTOR = 4
# Tombstones marked for purging per transaction when a purge starts.
PURGE_START_CHUNK = 2000


def enqueue_run(execution: Execution, *, delay_seconds: int = 0) -> None:
    """Queue the run's job when the transaction commits (after ``delay_seconds``)."""
    execution_id = execution.pk

    def enqueue() -> None:
        queue = django_rq.get_queue(QUEUE)
        if delay_seconds:
            queue.enqueue_in(timedelta(seconds=delay_seconds), run_execution_job, execution_id)
        else:
            queue.enqueue(run_execution_job, execution_id)

    transaction.on_commit(enqueue)


def run_execution_job(execution_id: int) -> str:
    """Take a run over from its checkpoint (a retry, or after a worker died)."""
    return run_execution(execution_id).status


def run_execution(execution_id: int, *, worker: str | None = None) -> Execution:
    """Work a run to its end from its checkpoint, batch by batch, while holding its lease."""
    worker = worker or claims.worker_name()
    execution = claims.acquire(execution_id, worker)
    if execution is None:
        return Execution.objects.get(pk=execution_id)
    pause = settings.QINGLI_WIPE_BATCH_PAUSE_MS / 1000
    try:
        while _step(execution, worker):
            if pause:
                time.sleep(pause)
    except LeaseLost:
        logger.warning("run %s was taken over by another worker", execution_id)
    except Exception as exc:  # any failure: record it, retry later or give up
        logger.exception("run %s failed", execution_id)
        _record_failure(execution, worker, exc)
    return Execution.objects.get(pk=execution_id)


class UnusableRange(Exception):
    """The request's stored date range is outside what Qingli accepts: the run stops."""


def _step(execution: Execution, worker: str) -> bool:
    """One batch. False once the run is finished."""
    request = execution.request
    if execution.kind in (ExecutionKind.MOVE, ExecutionKind.WIPE, ExecutionKind.PURGE):
        # Checked when the run starts too; a run begun before that check stops here. A
        # purge filters rows by the request's range too: never with a bound read clamped.
        problem = bounds_problem(request.sent_after, request.sent_before)
        if problem is not None:
            raise UnusableRange(problem)
    if execution.kind == ExecutionKind.MOVE:
        budget = settings.QINGLI_WIPE_BATCH_MESSAGES * MOVE_BUDGET_FACTOR
        units = target_units(execution, request, budget)
        if not units:
            move.finish_move(execution, request, worker)
            _purge_now_if_due(request)
            return False
        move.move_batch(execution, request, units, worker)
    elif execution.kind == ExecutionKind.WIPE and execution.phase in (SHRED, HIDE):
        conversation_ids = shred.next_target_conversations(execution, request)
        if not conversation_ids:
            _next_phase(execution, worker)
        elif execution.phase == SHRED:
            shred.shred_batch(execution, request, conversation_ids, worker)
        else:
            shred.hide_batch(execution, request, conversation_ids, worker)
    elif execution.kind == ExecutionKind.RESTORE:
        if not move.restore_batch(execution, request, worker):
            return False
    else:
        units = tombstone_units(execution, request, settings.QINGLI_WIPE_BATCH_MESSAGES)
        if not units:
            purge.finish_purge(execution, request, worker)
            return False
        purge.purge_batch(execution, request, units, worker)
    execution.refresh_from_db()
    return True


def _purge_now_if_due(request: DeletionRequest) -> None:
    """A retention rule that purges or archives: purge what the move binned now, not at the
    next hour. (Only a move's end can leave records due at once: a wipe is a server-side
    request's.)"""
    if move.purged_at_once(request):
        transaction.on_commit(lambda: django_rq.get_queue("maintenance").enqueue(purge_recycle_bin))


def _next_phase(execution: Execution, worker: str) -> None:
    with transaction.atomic():
        locked = claims.LEASE.hold(execution, owner=worker)
        if locked.phase == SHRED:
            locked.phase = HIDE
            locked.unreadable_at = timezone.now()
        else:
            locked.phase = PURGE
        locked.cursor_conversation, locked.cursor_id = 0, 0
        locked.save()


# --- failure ------------------------------------------------------------------------------


def _record_failure(execution: Execution, worker: str, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}"[:2000]
    with transaction.atomic():
        try:
            locked = claims.LEASE.hold(execution, owner=worker)
        except LeaseLost:
            return
        if isinstance(exc, UnusableRange) or locked.attempts >= settings.QINGLI_WIPE_MAX_ATTEMPTS:
            claims.LEASE.fail(locked, error)
            return
        locked.last_error = error
        locked.save(update_fields=["last_error"])
        # Let go of the run for a while, a little longer each time: the deadline is the
        # back-off's end, so the watchdog retries even if the retry job is lost. The
        # checkpoint keeps what was done.
        backoff = min(300, 10 * 2 ** (locked.attempts - 1))
        claims.LEASE.release(locked, backoff=timedelta(seconds=backoff))
        enqueue_run(locked, delay_seconds=backoff)


# --- the recycle bin's end --------------------------------------------------------------


def start_due_purges(*, now: datetime | None = None) -> list[int]:
    """Requests whose recycle-bin window has passed get a purge run (holds skipped)."""
    now = now or timezone.now()
    # Binned past their window, and purging ones whose run ended with them skipped (a
    # hold covered them then; it may be released now).
    due_q = Q(state=TombstoneState.BINNED, purge_after__lte=now) | Q(state=TombstoneState.PURGING)
    held_now = Conversation.objects.filter(held_conversations_q()).values("pk")
    due = (
        Tombstone.objects.filter(due_q)
        .exclude(conversation__in=held_now)
        .values_list("request_id", flat=True)
        .distinct()
    )
    started = []
    for request_id in list(due):
        if purge.purge_in_progress(request_id):
            continue
        # Marked purging in short transactions (a request can have thousands of ranges);
        # a start cut short leaves purging ranges that the next start picks up.
        binned = list(
            Tombstone.objects.filter(
                request_id=request_id, state=TombstoneState.BINNED, purge_after__lte=now
            ).values_list("pk", flat=True)
        )
        for first in range(0, len(binned), PURGE_START_CHUNK):
            with transaction.atomic():
                DeletionRequest.objects.select_for_update().get(pk=request_id)  # vs restores
                if purge.purge_in_progress(request_id):
                    break  # a large restore began meanwhile: its ranges stay binned
                hold_guard_shared()
                held_now = Conversation.objects.filter(held_conversations_q()).values("pk")
                Tombstone.objects.filter(
                    pk__in=binned[first : first + PURGE_START_CHUNK], state=TombstoneState.BINNED
                ).exclude(conversation__in=held_now).update(state=TombstoneState.PURGING)
        with transaction.atomic():
            request = DeletionRequest.objects.select_for_update().get(pk=request_id)
            if purge.purge_in_progress(request_id):
                continue
            held_now = Conversation.objects.filter(held_conversations_q()).values("pk")
            purging = Tombstone.objects.filter(
                request=request, state=TombstoneState.PURGING
            ).exclude(conversation__in=held_now)
            totals = purging.aggregate(n=Sum("messages"), c=Count("conversation_id", distinct=True))
            if not totals["c"]:
                continue
            execution = Execution.objects.create(
                request=request, kind=ExecutionKind.PURGE, total_messages=totals["n"] or 0
            )
            audit.record(
                EventType.RECYCLE_PURGE_STARTED,
                target=request,
                department_id=request.scope_root_id,
                details={"messages": totals["n"] or 0, "conversations": totals["c"]},
            )
            enqueue_run(execution)
            started.append(execution.pk)
    return started


def purge_recycle_bin() -> list[int]:
    """The hourly job: start the purge runs that are due."""
    return start_due_purges()
