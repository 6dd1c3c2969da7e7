"""Moving a request's records to the recycle bin (one tombstone per conversation range),
and a large restore that brings them back in batches.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from retention.models import (
    DeletionRequest,
    Execution,
    ExecutionStatus,
    RequestConversation,
    RequestMethod,
    Tombstone,
    TombstoneState,
)
from retention.policies import get_policy
from retention.records.holds import hold_guard_shared
from retention.records.store import refresh_last_message
from retention.wipes import claims
from retention.wipes.outcome import complete, end, timed
from retention.wipes.units import (
    Unit,
    held_among,
    live_counts,
    note_held,
    note_protected,
    protected_among,
)

# Recycle-bin entries restored per batch of a large restore.
RESTORE_BATCH = 1000


class ReconciliationError(Exception):
    """A run's counts do not add up to its frozen scope."""


# --- move to the recycle bin -------------------------------------------------------------


def move_batch(
    execution: Execution, request: DeletionRequest, units: list[Unit], worker: str
) -> None:
    started = time.monotonic()
    purge_after = _purge_after(request)
    with transaction.atomic():
        locked = claims.LEASE.hold(execution, owner=worker)
        hold_guard_shared()
        held = held_among(u.conversation_id for u in units)
        # Protected after filing, unconfirmed: left like held ones, and said why. (The
        # guard above keeps a protection, like a hold, from slipping in before the move.)
        protected = protected_among(request, (u.conversation_id for u in units)) - held
        counts = live_counts(units, request)
        tombstones = []
        for unit in units:
            n, size = counts.get(unit.conversation_id, (0, 0))
            if unit.conversation_id in held:
                locked.held_messages += n
                continue
            if unit.conversation_id in protected:
                locked.protected_messages += n
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
        note_held(locked, held)
        note_protected(locked, protected)
        Tombstone.objects.bulk_create(tombstones)
        refresh_last_message({t.conversation_id for t in tombstones if t.messages})
        claims.checkpoint(locked, units[-1])
    timed(execution, started)


def purged_at_once(request: DeletionRequest) -> bool:
    """A retention rule that purges or archives: its binned records are due at once."""
    return request.method == RequestMethod.RETENTION and request.scope.get("action") != "bin"


def _purge_after(request: DeletionRequest) -> datetime:
    """When binned records go for good: after the recycle-bin period, or at once for a
    retention rule that purges (the purge job takes them)."""
    now = timezone.now()
    if purged_at_once(request):
        return now
    return now + timedelta(days=get_policy("recycle_bin_days"))


def finish_move(execution: Execution, request: DeletionRequest, worker: str) -> None:
    with transaction.atomic():
        locked = claims.LEASE.hold(execution, owner=worker)
        # Every conversation of the scope that no hold or new protection kept has
        # tombstones up to the high-water mark: nothing of the approved scope can still
        # be visible.
        uncovered = (
            RequestConversation.objects.filter(request=request)
            .exclude(conversation_id__in=locked.held_conversation_ids)
            .exclude(conversation_id__in=locked.protected_conversation_ids)
            .exclude(
                conversation_id__in=Tombstone.objects.filter(
                    request=request, up_to_id=request.max_message_id
                ).values("conversation_id")
            )
        )
        if uncovered.exists():
            raise ReconciliationError("conversations of the scope were left uncovered")
        complete(locked, request)


# --- restore (a large one) ------------------------------------------------------------------


def restore_batch(execution: Execution, request: DeletionRequest, worker: str) -> bool:
    """The next ``RESTORE_BATCH`` binned ranges of the restore, in (conversation, id)
    order, back in one short transaction with their conversations' last-message dates.
    False once none is left (the run is then complete)."""
    started = time.monotonic()
    with transaction.atomic():
        locked = claims.LEASE.hold(execution, owner=worker)
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
            end(locked, ExecutionStatus.COMPLETED)
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
        claims.checkpoint(locked, None)
    timed(execution, started)
    return True
