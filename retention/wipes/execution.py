"""Running approved requests: moving to the recycle bin, purging, server-side wipes.

A run walks its request's frozen scope in a fixed order (conversations by id, then
message ids) in batches of at most ``QINGLI_WIPE_BATCH_MESSAGES`` messages. Each batch
is one short transaction that re-checks holds, does its work, and moves the run's
checkpoint, and commits only while its worker still holds the run's lease. A worker
killed at any point leaves a checkpoint that matches exactly what was committed; the
watchdog hands the run to another worker once the lease expires, and it carries on from
there. Running a finished run again changes nothing.

- **Move** (batch deletions): one :class:`Tombstone` per conversation range; the rows stay
  and every read leaves them out until the recycle-bin window passes.
- **Purge**: the rows (and attachment files, files first) of purging tombstones are
  deleted for real; a conversation left empty loses its data key.
- **Wipe** (server-side): first destroy the data keys of every conversation wholly in
  scope, which makes its records unreadable at once, then purge the rows.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from functools import reduce
from operator import or_

import django_rq
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.utils import timezone

import audit.log as audit
from audit.events import EventType
from audit.models import AuditEvent, ComplianceReview, ReviewKind
from retention.exports import service as exports
from retention.models import (
    Attachment,
    Conversation,
    DataKey,
    DeletionRequest,
    Execution,
    ExecutionKind,
    ExecutionStatus,
    ExportStatus,
    Message,
    PersonalRemoval,
    RequestConversation,
    RequestMethod,
    RequestStatus,
    Tombstone,
    TombstoneState,
)
from retention.notifications import notify
from retention.policies import first_run_time, get_policy
from retention.records.crypto import new_wrapped_key
from retention.records.holds import held_conversations_q, hold_guard_shared, holds_covering
from retention.records.store import refresh_last_message

logger = logging.getLogger(__name__)

QUEUE = "wipes"
# Conversations per batch in a wipe's first phases, which touch only keys (a few short
# statements, so unreadable comes fast at any size) and then tombstones (set-based
# statements too, but more of them).
SHRED_BATCH_CONVERSATIONS = 5000
HIDE_BATCH_CONVERSATIONS = 2000
# Hiding recomputes the last message of a conversation that keeps records outside the
# scope, an index probe each: at most this many of those per batch.
PARTIAL_CONVERSATIONS_PER_HIDE = 500
# Recycle-bin entries restored per batch of a large restore.
RESTORE_BATCH = 1000
# Tombstones marked for purging per transaction when a purge starts.
PURGE_START_CHUNK = 2000
# Conversations whose remaining messages are counted or deleted in one statement.
UNITS_PER_BATCH = 500
# Moving to the recycle bin only counts rows: it takes this many times the batch size
# that a deleting batch takes.
MOVE_BUDGET_FACTOR = 4

# A server-side wipe's phases: destroy keys, hide the scope, remove the rows.
SHRED, HIDE, PURGE = "shred", "hide", "purge"


class LeaseLost(Exception):
    """Another worker took the run over; this one must stop without committing."""


class ReconciliationError(Exception):
    """A run's counts do not add up to its frozen scope."""


@dataclass(frozen=True)
class Unit:
    """Message ids ``(after_id, up_to_id]`` of one conversation."""

    conversation_id: int
    after_id: int
    up_to_id: int
    tombstone_id: int | None = None
    # Purge units: the chunk reaches the end of its tombstone's range.
    ends_tombstone: bool = False


# --- scheduling ------------------------------------------------------------------------


def schedule_request(request: DeletionRequest) -> None:
    """Queue an approved request for its run time (call inside the approving transaction:
    the job is queued only if it commits)."""
    request_id, at = request.pk, request.scheduled_for
    transaction.on_commit(
        lambda: django_rq.get_queue(QUEUE).enqueue_at(
            at, "retention.jobs.tasks.start_request", request_id
        )
    )


def enqueue_start(request_id: int) -> None:
    """Start a request now (a retention run: approved by its rule)."""
    django_rq.get_queue(QUEUE).enqueue("retention.jobs.tasks.start_request", request_id)


def enqueue_start_if_waiting(request_id: int) -> None:
    """Start an approved request whose time has come (it may have waited for evidence)."""
    due = DeletionRequest.objects.filter(
        pk=request_id, status=RequestStatus.APPROVED, scheduled_for__lte=timezone.now()
    ).exists()
    if due:
        enqueue_start(request_id)


def enqueue_run(execution: Execution, *, delay_seconds: int = 0) -> None:
    execution_id = execution.pk

    def enqueue() -> None:
        queue = django_rq.get_queue(QUEUE)
        if delay_seconds:
            queue.enqueue_in(
                timedelta(seconds=delay_seconds), "retention.jobs.tasks.run_execution", execution_id
            )
        else:
            queue.enqueue("retention.jobs.tasks.run_execution", execution_id)

    transaction.on_commit(enqueue)


def start_request(request_id: int, *, now=None) -> Execution | None:
    """Begin an approved request's run, if its time has come. A cancelled request, or one
    already started, is left alone (so a doubled or late job is harmless)."""
    now = now or timezone.now()
    with transaction.atomic():
        request = DeletionRequest.objects.select_for_update().get(pk=request_id)
        if request.status != RequestStatus.APPROVED:
            return None
        if request.method == RequestMethod.PERSONAL:
            return None
        due = first_run_time(max(now, request.scheduled_for or now), get_policy("execution_window"))
        if due > now + timedelta(seconds=1):
            # Early (a clock or a retry) or outside the execution window: come back then.
            if request.scheduled_for != due:
                request.scheduled_for = due
                request.save(update_fields=["scheduled_for"])
                audit.record(
                    EventType.REQUEST_RESCHEDULED,
                    target=request,
                    department_id=request.scope_root_id,
                    details={
                        "scheduled_for": due.isoformat(),
                        "why": "outside the execution window",
                    },
                )
            schedule_request(request)
            return None
        if needs_evidence(request) and not exports.has_evidence_export(request):
            _wait_for_evidence(request)
            return None
        kind = ExecutionKind.WIPE if request.method == RequestMethod.SERVER else ExecutionKind.MOVE
        targets = request.targets.aggregate(n=Sum("messages"), c=Count("id"))
        execution = Execution.objects.create(
            request=request,
            kind=kind,
            phase=SHRED if kind == ExecutionKind.WIPE else "",
            total_messages=targets["n"] or 0,
        )
        request.status = RequestStatus.RUNNING
        request.save(update_fields=["status"])
        audit.record(
            EventType.REQUEST_STARTED,
            target=request,
            department_id=request.scope_root_id,
            details={
                "kind": kind,
                "messages": execution.total_messages,
                "conversations": targets["c"],
                "max_message_id": request.max_message_id,
            },
        )
    return execution


def needs_evidence(request: DeletionRequest) -> bool:
    """High-sensitivity records in scope, or an archiving rule: no run without an export."""
    archive = request.method == RequestMethod.RETENTION and request.scope.get("action") == "archive"
    return archive or bool(request.preview.get("high_sensitivity"))


def _wait_for_evidence(request: DeletionRequest) -> None:
    """Say once on the timeline why the run waits; an archiving rule asks for the export
    itself. The watchdog starts the request once the export is ready."""
    if request.method == RequestMethod.RETENTION and not exports.evidence_export_pending(request):
        exports.do_request_export(
            request, fmt="jsonl", acting_user=request.requester, on_behalf_of_system=True
        )
    said = AuditEvent.objects.filter(
        event_type=EventType.REQUEST_AWAITS_EVIDENCE,
        target_type=request._meta.label_lower,
        target_id=str(request.pk),
    ).exists()
    if not said:
        audit.record(
            EventType.REQUEST_AWAITS_EVIDENCE,
            target=request,
            department_id=request.scope_root_id,
            details={"high_sensitivity": request.preview.get("high_sensitivity", 0)},
        )
        notify.awaits_evidence(request)


# --- the run loop -----------------------------------------------------------------------


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_execution(execution_id: int, *, worker: str | None = None) -> Execution:
    """Work a run to its end from its checkpoint, batch by batch, while holding its lease."""
    worker = worker or worker_name()
    execution = _acquire(execution_id, worker)
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
        _record_failure(execution_id, worker, exc)
    return Execution.objects.get(pk=execution_id)


def _acquire(execution_id: int, worker: str) -> Execution | None:
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
            _fail(execution, f"gave up after {execution.attempts - 1} attempts")
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


def _locked_run(execution: Execution, worker: str) -> Execution:
    """The run's row, locked for this batch, if this worker still holds the lease."""
    locked = Execution.objects.select_for_update().get(pk=execution.pk)
    if locked.lease_owner != worker or locked.status != ExecutionStatus.RUNNING:
        raise LeaseLost
    return locked


def _checkpoint(locked: Execution, unit: Unit | None) -> None:
    if unit is not None:
        locked.cursor_conversation, locked.cursor_id = unit.conversation_id, unit.up_to_id
    locked.batches += 1
    locked.lease_expires_at = timezone.now() + timedelta(seconds=settings.QINGLI_WIPE_LEASE_SECONDS)
    locked.save()


def _timed(execution: Execution, started: float) -> None:
    """Record the batch's whole transaction time, commit included, if it is a new high."""
    elapsed_ms = int((time.monotonic() - started) * 1000)
    Execution.objects.filter(pk=execution.pk, longest_batch_ms__lt=elapsed_ms).update(
        longest_batch_ms=elapsed_ms
    )


def _step(execution: Execution, worker: str) -> bool:
    """One batch. False once the run is finished."""
    request = execution.request
    if execution.kind == ExecutionKind.MOVE:
        budget = settings.QINGLI_WIPE_BATCH_MESSAGES * MOVE_BUDGET_FACTOR
        units = _target_units(execution, request, budget)
        if not units:
            _finish_move(execution, request, worker)
            return False
        _move_batch(execution, request, units, worker)
    elif execution.kind == ExecutionKind.WIPE and execution.phase in (SHRED, HIDE):
        conversation_ids = _next_target_conversations(execution, request)
        if not conversation_ids:
            _next_phase(execution, worker)
        elif execution.phase == SHRED:
            _shred_batch(execution, request, conversation_ids, worker)
        else:
            _hide_batch(execution, request, conversation_ids, worker)
    elif execution.kind == ExecutionKind.RESTORE:
        if not _restore_batch(execution, request, worker):
            return False
    else:
        units = _tombstone_units(execution, request, settings.QINGLI_WIPE_BATCH_MESSAGES)
        if not units:
            _finish_purge(execution, request, worker)
            return False
        _purge_batch(execution, request, units, worker)
    execution.refresh_from_db()
    return True


# --- choosing the next batch --------------------------------------------------------------


def _chunk_end(conversation_id: int, after_id: int, up_to_id: int, budget: int) -> int:
    """The id that ends a chunk of at most ``budget`` stored rows after ``after_id`` (an
    index-only probe on (conversation, id)); ``up_to_id`` when fewer rows remain."""
    ids = Message.all_rows.filter(
        conversation_id=conversation_id, id__gt=after_id, id__lte=up_to_id
    ).order_by("id")
    end = ids.values_list("id", flat=True)[budget - 1 : budget].first()
    return up_to_id if end is None else end


def _target_units(execution: Execution, request: DeletionRequest, budget: int) -> list[Unit]:
    """The next conversations (or chunk of one) after the checkpoint, up to the budget.
    The frozen per-conversation counts tell which conversations fit without probing."""
    high = request.max_message_id
    after_conversation, after_id = execution.cursor_conversation, execution.cursor_id
    targets = (
        RequestConversation.objects.filter(request=request, conversation_id__gte=after_conversation)
        .order_by("conversation_id")
        .values_list("conversation_id", "messages")
    )
    units: list[Unit] = []
    left = budget
    for conversation_id, frozen in targets[: UNITS_PER_BATCH + 1]:
        start = after_id if conversation_id == after_conversation else 0
        if start >= high:
            continue  # this conversation was finished by the last batch
        if start == 0 and frozen <= left:
            end = high
        else:
            end = _chunk_end(conversation_id, start, high, left)
        units.append(Unit(conversation_id, start, end))
        left -= max(frozen if start == 0 and end == high else left, 1)
        if end < high or left <= 0 or len(units) >= UNITS_PER_BATCH:
            break
    return units


def _next_target_conversations(execution: Execution, request: DeletionRequest) -> list[int]:
    size = SHRED_BATCH_CONVERSATIONS if execution.phase == SHRED else HIDE_BATCH_CONVERSATIONS
    return list(
        RequestConversation.objects.filter(
            request=request, conversation_id__gt=execution.cursor_conversation
        )
        .order_by("conversation_id")
        .values_list("conversation_id", flat=True)[:size]
    )


def _tombstone_units(execution: Execution, request: DeletionRequest, budget: int) -> list[Unit]:
    """The next chunk of rows to purge: purging tombstones in (conversation, id) order."""
    after_conversation, after_id = execution.cursor_conversation, execution.cursor_id
    tombstones = (
        Tombstone.objects.filter(
            request=request,
            state=TombstoneState.PURGING,
            conversation_id__gte=after_conversation,
        )
        .exclude(conversation_id=after_conversation, up_to_id__lte=after_id)
        .order_by("conversation_id", "after_id")
        .values_list("pk", "conversation_id", "after_id", "up_to_id", "messages")
    )
    units: list[Unit] = []
    left = budget
    for pk, conversation_id, lower, upper, counted in tombstones[: UNITS_PER_BATCH + 1]:
        start = max(lower, after_id) if conversation_id == after_conversation else lower
        if start == lower and counted and counted <= left:
            end = upper
            left -= counted
        else:
            end = _chunk_end(conversation_id, start, upper, left)
            left = 0 if end < upper else left - 1
        units.append(Unit(conversation_id, start, end, pk, ends_tombstone=end == upper))
        if end < upper or left <= 0 or len(units) >= UNITS_PER_BATCH:
            break
    return units


# --- what a unit covers --------------------------------------------------------------------


def _sent_q(request: DeletionRequest, prefix: str = "") -> Q:
    q = Q()
    if request.sent_after:
        q &= Q(**{f"{prefix}sent_at__gte": request.sent_after})
    if request.sent_before:
        q &= Q(**{f"{prefix}sent_at__lt": request.sent_before})
    return q


def _units_q(
    units: list[Unit], *, conversation: str = "conversation_id", id_field: str = "id"
) -> Q:
    """The rows of the units, grouped by id range: whole conversations all share one range,
    so a batch is a few ``conversation IN (...) AND id range`` terms, not one per unit."""
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for unit in units:
        groups[(unit.after_id, unit.up_to_id)].append(unit.conversation_id)
    return reduce(
        or_,
        [
            Q(
                **{
                    f"{conversation}__in": ids,
                    f"{id_field}__gt": after_id,
                    f"{id_field}__lte": up_to_id,
                }
            )
            for (after_id, up_to_id), ids in groups.items()
        ],
    )


def _held(conversation_ids) -> set[int]:
    return set(
        Conversation.objects.filter(
            held_conversations_q(), pk__in=list(conversation_ids)
        ).values_list("pk", flat=True)
    )


def _live_counts(units: list[Unit], request: DeletionRequest) -> dict[int, tuple[int, int]]:
    rows = (
        Message.objects.filter(_units_q(units), _sent_q(request))
        .values("conversation_id")
        .annotate(n=Count("id"), b=Sum("body_bytes"))
        .order_by()
    )
    return {r["conversation_id"]: (r["n"], r["b"] or 0) for r in rows}


def _note_held(locked: Execution, held: set[int]) -> None:
    locked.held_conversation_ids = sorted(set(locked.held_conversation_ids) | held)


def _held_in_scope(request: DeletionRequest, conversation_ids) -> int:
    """Visible messages of the frozen scope in these (held) conversations."""
    return Message.objects.filter(
        _sent_q(request), conversation_id__in=conversation_ids, id__lte=request.max_message_id
    ).count()


# --- move to the recycle bin -------------------------------------------------------------


def _move_batch(
    execution: Execution, request: DeletionRequest, units: list[Unit], worker: str
) -> None:
    started = time.monotonic()
    purge_after = _purge_after(request)
    with transaction.atomic():
        locked = _locked_run(execution, worker)
        hold_guard_shared()
        held = _held(u.conversation_id for u in units)
        counts = _live_counts(units, request)
        tombstones = []
        for unit in units:
            n, size = counts.get(unit.conversation_id, (0, 0))
            if unit.conversation_id in held:
                locked.held_messages += n
                continue
            if unit.after_id == 0:
                locked.done_conversations += 1
            locked.done_messages += n
            # Even an empty range gets its tombstone: the run's coverage is then explicit,
            # and the final check needs to look at tombstones only.
            tombstones.append(
                Tombstone(
                    request=request,
                    conversation_id=unit.conversation_id,
                    after_id=unit.after_id,
                    up_to_id=unit.up_to_id,
                    sent_after=request.sent_after,
                    sent_before=request.sent_before,
                    messages=n,
                    bytes=size,
                    state=TombstoneState.BINNED,
                    purge_after=purge_after,
                )
            )
        _note_held(locked, held)
        Tombstone.objects.bulk_create(tombstones)
        refresh_last_message({t.conversation_id for t in tombstones if t.messages})
        _checkpoint(locked, units[-1])
    _timed(execution, started)


def _purged_at_once(request: DeletionRequest) -> bool:
    """A retention rule that purges or archives: its binned records are due at once."""
    return request.method == RequestMethod.RETENTION and request.scope.get("action") != "bin"


def _purge_after(request: DeletionRequest):
    """When binned records go for good: after the recycle-bin period, or at once for a
    retention rule that purges (the purge job takes them)."""
    now = timezone.now()
    if _purged_at_once(request):
        return now
    return now + timedelta(days=get_policy("recycle_bin_days"))


def _finish_move(execution: Execution, request: DeletionRequest, worker: str) -> None:
    with transaction.atomic():
        locked = _locked_run(execution, worker)
        # Every conversation of the scope that no hold kept has tombstones up to the
        # high-water mark: nothing of the approved scope can still be visible.
        uncovered = (
            RequestConversation.objects.filter(request=request)
            .exclude(conversation_id__in=locked.held_conversation_ids)
            .exclude(
                conversation_id__in=Tombstone.objects.filter(
                    request=request, up_to_id=request.max_message_id
                ).values("conversation_id")
            )
        )
        if uncovered.exists():
            raise ReconciliationError("conversations of the scope were left uncovered")
        _complete(locked, request)


def _complete(locked: Execution, request: DeletionRequest) -> None:
    # Fewer than approved: another request took some first. More: records of the scope
    # that sat in another request's recycle bin when this one was measured came back.
    settled = locked.done_messages + locked.held_messages
    locked.vanished_messages = max(0, locked.total_messages - settled)
    _end(locked, ExecutionStatus.COMPLETED)
    DeletionRequest.objects.filter(pk=request.pk).update(status=RequestStatus.COMPLETED)
    if locked.held_conversation_ids:
        holds = holds_covering(locked.held_conversation_ids)[:20]
        audit.record(
            EventType.HELD_RECORDS_SKIPPED,
            target=request,
            department_id=request.scope_root_id,
            details={
                "messages": locked.held_messages,
                "conversations": locked.held_conversations,
                "conversation_ids": locked.held_conversation_ids[:50],
                "holds": [{"hold": h.pk, "kind": h.kind, "reason": h.reason} for h in holds],
            },
        )
    audit.record(
        EventType.REQUEST_EXECUTED,
        target=request,
        department_id=request.scope_root_id,
        details=outcome_of(locked),
    )
    notify.executed(request, locked)
    if _purged_at_once(request):
        # Purge them now, not at the next hour.
        transaction.on_commit(
            lambda: django_rq.get_queue("maintenance").enqueue(
                "retention.jobs.tasks.purge_recycle_bin"
            )
        )


def _end(execution: Execution, status: str) -> None:
    execution.status, execution.finished_at = status, timezone.now()
    execution.lease_owner, execution.lease_expires_at = "", None
    execution.save()


def outcome_of(execution: Execution) -> dict:
    """A run's counts, as the timeline, the API and the compliance review show them."""
    return {
        "kind": execution.kind,
        "approved_messages": execution.total_messages,
        "deleted_messages": execution.done_messages,
        "deleted_conversations": execution.done_conversations,
        "held_messages": execution.held_messages,
        "held_conversations": execution.held_conversations,
        "gone_before_run": execution.vanished_messages,
        "attachments_removed": execution.attachments_removed,
        "keys_destroyed": execution.keys_destroyed,
        "batches": execution.batches,
        "longest_batch_ms": execution.longest_batch_ms,
        "resumes": execution.resumes,
    }


# --- restore (a large one) ------------------------------------------------------------------


def _restore_batch(execution: Execution, request: DeletionRequest, worker: str) -> bool:
    """The next ``RESTORE_BATCH`` binned ranges of the restore, in (conversation, id)
    order, back in one short transaction with their conversations' last-message dates.
    False once none is left (the run is then complete)."""
    started = time.monotonic()
    with transaction.atomic():
        locked = _locked_run(execution, worker)
        after_conversation, after_pk = locked.cursor_conversation, locked.cursor_id
        pending = Tombstone.objects.filter(request=request, state=TombstoneState.BINNED).filter(
            Q(conversation_id__gt=after_conversation)
            | Q(conversation_id=after_conversation, pk__gt=after_pk)
        )
        if locked.conversation_ids is not None:
            pending = pending.filter(conversation_id__in=locked.conversation_ids)
        batch = list(
            pending.order_by("conversation_id", "pk")
            .select_for_update()
            .values_list("pk", "conversation_id", "messages")[:RESTORE_BATCH]
        )
        if not batch:
            _end(locked, ExecutionStatus.COMPLETED)
            return False
        Tombstone.objects.filter(
            pk__in=[pk for pk, _c, _m in batch], state=TombstoneState.BINNED
        ).update(
            state=TombstoneState.RESTORED,
            restored_at=timezone.now(),
            restored_by_id=locked.acting_member_id,
        )
        conversations = {c for _pk, c, _m in batch}
        refresh_last_message(conversations)
        locked.done_messages += sum(m for _pk, _c, m in batch)
        # Ranges come conversation by conversation: one the last batch began is not new.
        locked.done_conversations += len(conversations - {after_conversation})
        locked.cursor_conversation, locked.cursor_id = batch[-1][1], batch[-1][0]
        _checkpoint(locked, None)
    _timed(execution, started)
    return True


# --- server-side wipe: keys first ---------------------------------------------------------


def _shred_batch(
    execution: Execution, request: DeletionRequest, conversation_ids: list[int], worker: str
) -> None:
    """Phase 1: destroy the data key of every conversation whose stored records all lie in
    the scope. Nothing else happens here, so the whole scope is unreadable within a few
    short statements per 5,000 conversations. The batch's conversations are named by a
    range of the frozen scope, not by a list of ids, to keep the statements small."""
    started = time.monotonic()
    batch = RequestConversation.objects.filter(
        request=request,
        conversation_id__gt=execution.cursor_conversation,
        conversation_id__lte=conversation_ids[-1],
    ).values("conversation_id")
    with transaction.atomic():
        locked = _locked_run(execution, worker)
        hold_guard_shared()
        held = set(
            Conversation.objects.filter(held_conversations_q(), pk__in=batch).values_list(
                "pk", flat=True
            )
        )
        if held:
            locked.held_messages += _held_in_scope(request, held)
            _note_held(locked, held)
        keys = DataKey.objects.filter(conversation_id__in=batch).exclude(conversation_id__in=held)
        # Lock the keys first; the rows are looked at in a later statement, which then
        # sees any message an ingest (holding the key share-locked) committed meanwhile.
        list(keys.select_for_update().values_list("pk", flat=True))
        outside_scope = Message.all_rows.filter(conversation=OuterRef("conversation_id")).filter(
            ~Q(id__lte=request.max_message_id) | ~_sent_q(request)
            if (request.sent_after or request.sent_before)
            else Q(id__gt=request.max_message_id)
        )
        # Conversations with records outside the scope keep their key: those records
        # stay readable; the scoped rows are hidden next and removed in the purge phase.
        destroyed = (
            keys.filter(wrapped_key__isnull=False)
            .exclude(Exists(outside_scope))
            .update(wrapped_key=None, destroyed_at=timezone.now())
        )
        locked.keys_destroyed += destroyed
        _checkpoint(locked, Unit(conversation_ids[-1], 0, 0))
        if destroyed:
            audit.record(
                EventType.KEYS_DESTROYED_BY_WIPE,
                target=request,
                department_id=request.scope_root_id,
                details={
                    "keys": destroyed,
                    "conversations": len(conversation_ids) - len(held),
                    "from_conversation": conversation_ids[0],
                    "to_conversation": conversation_ids[-1],
                },
            )
    _timed(execution, started)


def _sql_moments(*moments) -> list:
    """Datetimes as the ORM stores them, for raw SQL: on SQLite they are text, and a value
    stored in another format would compare wrongly with the ORM's."""
    return [connection.ops.adapt_datetimefield_value(m) for m in moments]


def _hide_batch(
    execution: Execution, request: DeletionRequest, conversation_ids: list[int], worker: str
) -> None:
    """Phase 2: hide the scope from every read (tombstones that cannot be restored)."""
    started = time.monotonic()
    now = timezone.now()
    with transaction.atomic():
        locked = _locked_run(execution, worker)
        hold_guard_shared()
        # A conversation whose key is gone had nothing outside the scope: it has no last
        # message any more. The others keep records and need theirs recomputed, an index
        # probe each, so a batch takes only so many of them.
        shredded = set(
            DataKey.objects.filter(
                conversation_id__in=conversation_ids, wrapped_key__isnull=True
            ).values_list("conversation_id", flat=True)
        )
        partial = [c for c in conversation_ids if c not in shredded]
        if len(partial) > PARTIAL_CONVERSATIONS_PER_HIDE:
            last = partial[PARTIAL_CONVERSATIONS_PER_HIDE - 1]
            conversation_ids = [c for c in conversation_ids if c <= last]
        # Held when the run reached them (phase 1) or now: skipped either way.
        held = _held(conversation_ids) | (set(locked.held_conversation_ids) & set(conversation_ids))
        new_held = held - set(locked.held_conversation_ids)
        if new_held:
            locked.held_messages += _held_in_scope(request, new_held)
            _note_held(locked, new_held)
        wiped = [c for c in conversation_ids if c not in held]
        _write_wipe_tombstones(request, wiped, now)
        locked.done_conversations += len(wiped)
        Conversation.objects.filter(pk__in=[c for c in wiped if c in shredded]).update(
            last_message_at=None
        )
        refresh_last_message([c for c in wiped if c not in shredded])
        _checkpoint(locked, Unit(conversation_ids[-1], 0, 0))
    _timed(execution, started)


def _write_wipe_tombstones(request: DeletionRequest, conversation_ids: list[int], now) -> None:
    """One tombstone over the scope of each conversation, written by one INSERT … SELECT
    from the frozen scope: building thousands of objects in Python would cost more than
    the rest of the batch."""
    if not conversation_ids:
        return
    tombstones = connection.ops.quote_name(Tombstone._meta.db_table)
    targets = connection.ops.quote_name(RequestConversation._meta.db_table)
    listed = ", ".join(["%s"] * len(conversation_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {tombstones} (request_id, conversation_id, after_id, up_to_id, "
            "sent_after, sent_before, messages, bytes, state, created_at, purge_after) "
            "SELECT request_id, conversation_id, 0, %s, %s, %s, messages, 0, %s, %s, %s "
            f"FROM {targets} WHERE request_id = %s AND conversation_id IN ({listed}) "
            "ON CONFLICT DO NOTHING",
            [
                request.max_message_id,
                *_sql_moments(request.sent_after, request.sent_before),
                TombstoneState.PURGING,
                *_sql_moments(now, now),
                request.pk,
                *conversation_ids,
            ],
        )


def _next_phase(execution: Execution, worker: str) -> None:
    with transaction.atomic():
        locked = _locked_run(execution, worker)
        if locked.phase == SHRED:
            locked.phase = HIDE
            locked.unreadable_at = timezone.now()
        else:
            locked.phase = PURGE
        locked.cursor_conversation, locked.cursor_id = 0, 0
        locked.save()


# --- purge: rows and files gone ---------------------------------------------------------


def _purge_batch(
    execution: Execution, request: DeletionRequest, units: list[Unit], worker: str
) -> None:
    # The rows of the units; attachments and personal removals by their own conversation
    # and message-id columns, so that each statement is an index range scan.
    def rows_of(units: list[Unit], *, via: str = ""):
        q = _units_q(units, id_field=f"{via}_id" if via else "id")
        return q & _sent_q(request, prefix=f"{via}__" if via else "")

    started = time.monotonic()
    with transaction.atomic():
        locked = _locked_run(execution, worker)
        hold_guard_shared()
        held = _held({u.conversation_id for u in units})
        if held:
            # A hold placed after the records were binned: they stay (files included), in
            # the bin, and are counted as held (all rows: tombstones hide them from reads).
            kept = [u for u in units if u.conversation_id in held]
            locked.held_messages += Message.all_rows.filter(
                _units_q(kept) & _sent_q(request)
            ).count()
            if execution.kind == ExecutionKind.PURGE:
                Tombstone.objects.filter(
                    pk__in=[u.tombstone_id for u in kept], state=TombstoneState.PURGING
                ).update(state=TombstoneState.BINNED)
            _note_held(locked, held)
        purging = [u for u in units if u.conversation_id not in held]
        if purging:
            # Files first, once holds are checked and while no hold can be placed: if the
            # worker dies before the commit, the rows are still there and the next attempt
            # deletes them (and the missing files) again; the other order could leave
            # files that no row points to.
            for name in (
                Attachment.objects.filter(rows_of(purging, via="message"))
                .values_list("file", flat=True)
                .iterator()
            ):
                default_storage.delete(name)
            db = Message.objects.db
            PersonalRemoval.objects.filter(rows_of(purging, via="message"))._raw_delete(db)
            locked.attachments_removed += Attachment.objects.filter(
                rows_of(purging, via="message")
            )._raw_delete(db)
            locked.done_messages += Message.all_rows.filter(rows_of(purging))._raw_delete(db)
            finished = [u for u in purging if u.ends_tombstone]
            Tombstone.objects.filter(pk__in=[u.tombstone_id for u in finished]).update(
                state=TombstoneState.PURGED, purged_at=timezone.now()
            )
            locked.keys_destroyed += _destroy_keys_of_emptied(
                {u.conversation_id for u in finished}, execution.kind
            )
        _checkpoint(locked, units[-1])
    _timed(execution, started)


def _finish_purge(execution: Execution, request: DeletionRequest, worker: str) -> None:
    with transaction.atomic():
        locked = _locked_run(execution, worker)
        if execution.kind == ExecutionKind.WIPE:
            _complete(locked, request)
            kind = ReviewKind.SERVER_WIPE
        else:
            _end(locked, ExecutionStatus.COMPLETED)
            audit.record(
                EventType.RECYCLE_PURGED,
                target=request,
                department_id=request.scope_root_id,
                details=outcome_of(locked),
            )
            kind = (
                ReviewKind.RETENTION_PURGE
                if request.method == RequestMethod.RETENTION
                else ReviewKind.RECYCLE_PURGE
            )
        ComplianceReview.objects.create(
            kind=kind, request=request, summary=review_summary(request, locked)
        )


def _destroy_keys_of_emptied(conversation_ids: set[int], kind: str) -> int:
    """A conversation the run left with no rows at all loses its data key, so that no
    copy of its records (a backup) can ever be read again. After a recycle-bin purge the
    conversation gets a fresh key and lives on; after a server-side wipe it is closed.
    """
    if not conversation_ids:
        return 0
    # Lock the keys first, then look for rows in a later statement: an ingest that
    # share-locked a key and committed a message meanwhile is then seen, not missed.
    locked = list(
        DataKey.objects.select_for_update()
        .filter(conversation_id__in=conversation_ids, wrapped_key__isnull=False)
        .values_list("conversation_id", flat=True)
    )
    # One index probe per conversation (a semi-join), however many rows are left.
    emptied = set(
        Conversation.objects.filter(pk__in=locked)
        .exclude(Exists(Message.all_rows.filter(conversation=OuterRef("pk"))))
        .values_list("pk", flat=True)
    )
    now = timezone.now()
    if kind == ExecutionKind.WIPE:
        return DataKey.objects.filter(conversation_id__in=emptied).update(
            wrapped_key=None, destroyed_at=now
        )
    if emptied:
        _install_fresh_keys(sorted(emptied), now)
    return len(emptied)


def _install_fresh_keys(conversation_ids: list[int], now) -> None:
    """One statement for all: Django's bulk_update builds a CASE per row, which costs more
    than the rest of a purge batch."""
    table = connection.ops.quote_name(DataKey._meta.db_table)
    rows = ", ".join(["(%s, %s)"] * len(conversation_ids))
    params: list = []
    for conversation_id in conversation_ids:
        params += [conversation_id, new_wrapped_key(conversation_id)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH fresh(conversation_id, wrapped_key) AS (VALUES {rows}) "
            f"UPDATE {table} SET destroyed_at = %s, wrapped_key = (SELECT f.wrapped_key "
            f"FROM fresh f WHERE f.conversation_id = {table}.conversation_id) "
            f"WHERE conversation_id IN (SELECT conversation_id FROM fresh)",
            [*params, *_sql_moments(now)],
        )


def review_summary(request: DeletionRequest, execution: Execution) -> dict:
    """What a permanent deletion removed and on whose say-so, for the auditor."""
    by_department = list(
        Tombstone.objects.filter(request=request, state=TombstoneState.PURGED)
        .values("conversation__department_id", "conversation__department__name")
        .annotate(conversations=Count("conversation_id", distinct=True), messages=Sum("messages"))
        .order_by("conversation__department_id")
    )
    return {
        **outcome_of(execution),
        "method": request.method,
        "max_message_id": request.max_message_id,
        "sent_after": request.sent_after.isoformat() if request.sent_after else None,
        "sent_before": request.sent_before.isoformat() if request.sent_before else None,
        "departments": [
            {
                "department": row["conversation__department_id"],
                "name": row["conversation__department__name"],
                "conversations": row["conversations"],
                "messages": row["messages"],
            }
            for row in by_department[:200]
        ],
        "approvals": [
            {
                "order": s.order,
                "role": s.role,
                "approver": s.approver.username if s.approver else None,
            }
            for s in request.steps.select_related("approver")
        ],
        "requester": request.requester.username,
        "exports": [
            {"export": e.pk, "format": e.format, "sha256": e.sha256, "by": e.requested_by.username}
            for e in exports.exports_of(request).filter(status=ExportStatus.READY)
        ],
    }


# --- failure ------------------------------------------------------------------------------


def _record_failure(execution_id: int, worker: str, exc: Exception) -> None:
    with transaction.atomic():
        execution = Execution.objects.select_for_update().get(pk=execution_id)
        if execution.lease_owner != worker:
            return
        execution.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        if execution.attempts >= settings.QINGLI_WIPE_MAX_ATTEMPTS:
            _fail(execution, execution.last_error)
            return
        # Back off a little more each time; the checkpoint keeps what was done. The lease
        # runs out with the back-off, so the watchdog retries even if the job is lost.
        backoff = min(300, 10 * 2 ** (execution.attempts - 1))
        execution.lease_owner = ""
        execution.lease_expires_at = timezone.now() + timedelta(seconds=backoff)
        execution.save()
        enqueue_run(execution, delay_seconds=backoff)


def _fail(execution: Execution, reason: str) -> None:
    execution.last_error = reason[:2000]
    _end(execution, ExecutionStatus.FAILED)
    request = execution.request
    if request.status == RequestStatus.RUNNING:
        DeletionRequest.objects.filter(pk=request.pk).update(status=RequestStatus.FAILED)
    audit.record(
        EventType.REQUEST_FAILED,
        target=request,
        department_id=request.scope_root_id,
        details={
            **outcome_of(execution),
            "reason": execution.last_error,
            "attempts": execution.attempts,
        },
    )
    notify.failed(request, execution)


# --- the watchdog -----------------------------------------------------------------------


def watch(*, now=None) -> dict[str, int]:
    """Every minute: start approved requests whose time has come (a lost scheduled job),
    and hand runs whose worker went silent (lease expired) to a new worker."""
    now = now or timezone.now()
    started = 0
    for request_id in (
        DeletionRequest.objects.filter(status=RequestStatus.APPROVED, scheduled_for__lte=now)
        .exclude(method=RequestMethod.PERSONAL)
        .values_list("pk", flat=True)
    ):
        django_rq.get_queue(QUEUE).enqueue("retention.jobs.tasks.start_request", request_id)
        started += 1
    stale = Execution.objects.filter(
        Q(status=ExecutionStatus.RUNNING, lease_expires_at__lt=now)
        | Q(status=ExecutionStatus.QUEUED, created_at__lt=now - timedelta(minutes=1))
    ).values_list("pk", flat=True)
    resumed = 0
    for execution_id in stale:
        django_rq.get_queue(QUEUE).enqueue("retention.jobs.tasks.run_execution", execution_id)
        resumed += 1
    return {"started": started, "resumed": resumed}


# --- the recycle bin's end --------------------------------------------------------------


def _purge_in_progress(request_id: int) -> bool:
    """A purge or wipe is on the request, or a restore that has not finished: no purge
    starts until it has (what a restore's audit event says it restores, it restores). A
    restore run that failed keeps the records in the bin until a restore is asked again."""
    active = [ExecutionStatus.QUEUED, ExecutionStatus.RUNNING]
    if Execution.objects.filter(
        request_id=request_id, kind__in=[ExecutionKind.PURGE, ExecutionKind.WIPE], status__in=active
    ).exists():
        return True
    last_restore = (
        Execution.objects.filter(request_id=request_id, kind=ExecutionKind.RESTORE)
        .order_by("-pk")
        .values_list("status", flat=True)
        .first()
    )
    return last_restore in (*active, ExecutionStatus.FAILED)


def purge_running(request_id: int) -> bool:
    """A purge run is queued or running on the request: nothing of it may be restored now."""
    return Execution.objects.filter(
        request_id=request_id,
        kind=ExecutionKind.PURGE,
        status__in=[ExecutionStatus.QUEUED, ExecutionStatus.RUNNING],
    ).exists()


def start_due_purges(*, now=None) -> list[int]:
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
        if _purge_in_progress(request_id):
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
                if _purge_in_progress(request_id):
                    break  # a large restore began meanwhile: its ranges stay binned
                hold_guard_shared()
                held_now = Conversation.objects.filter(held_conversations_q()).values("pk")
                Tombstone.objects.filter(
                    pk__in=binned[first : first + PURGE_START_CHUNK], state=TombstoneState.BINNED
                ).exclude(conversation__in=held_now).update(state=TombstoneState.PURGING)
        with transaction.atomic():
            request = DeletionRequest.objects.select_for_update().get(pk=request_id)
            if _purge_in_progress(request_id):
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
