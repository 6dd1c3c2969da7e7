"""A server-side wipe's first two phases: destroy the data keys of the conversations wholly
in scope (the records are unreadable at once), then hide the scope from every read. The
third phase is a purge (``purge.py``). A purge also destroys the key of a conversation it
leaves empty (``destroy_keys_of_emptied``).
"""

from __future__ import annotations

import time

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

import audit.log as audit
from audit.events import EventType
from retention.models import (
    Conversation,
    DataKey,
    DeletionRequest,
    Execution,
    ExecutionKind,
    Message,
    RequestConversation,
    Tombstone,
    TombstoneState,
)
from retention.records.crypto import new_wrapped_key
from retention.records.holds import held_conversations_q, hold_guard_shared
from retention.records.store import refresh_last_message
from retention.wipes import claims
from retention.wipes.outcome import timed
from retention.wipes.units import Unit, held_among, held_in_scope, note_held, sent_q

# A server-side wipe's phases: destroy keys, hide the scope, remove the rows.
SHRED, HIDE, PURGE = "shred", "hide", "purge"
# Conversations per batch in a wipe's first phases, which touch only keys (a few short
# statements, so unreadable comes fast at any size) and then tombstones (set-based
# statements too, but more of them).
SHRED_BATCH_CONVERSATIONS = 5000
HIDE_BATCH_CONVERSATIONS = 2000
# Hiding recomputes the last message of a conversation that keeps records outside the
# scope, an index probe each: at most this many of those per batch.
PARTIAL_CONVERSATIONS_PER_HIDE = 500


def next_target_conversations(execution: Execution, request: DeletionRequest) -> list[int]:
    size = SHRED_BATCH_CONVERSATIONS if execution.phase == SHRED else HIDE_BATCH_CONVERSATIONS
    return list(
        RequestConversation.objects.filter(
            request=request, conversation_id__gt=execution.cursor_conversation
        )
        .order_by("conversation_id")
        .values_list("conversation_id", flat=True)[:size]
    )


# --- phase 1: keys first -------------------------------------------------------------------


def shred_batch(
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
        locked = claims.LEASE.hold(execution, owner=worker)
        hold_guard_shared()
        held = set(
            Conversation.objects.filter(held_conversations_q(), pk__in=batch).values_list(
                "pk", flat=True
            )
        )
        if held:
            locked.held_messages += held_in_scope(request, held)
            note_held(locked, held)
        keys = DataKey.objects.filter(conversation_id__in=batch).exclude(conversation_id__in=held)
        # Lock the keys first; the rows are looked at in a later statement, which then
        # sees any message an ingest (holding the key share-locked) committed meanwhile.
        list(keys.select_for_update().values_list("pk", flat=True))
        outside_scope = Message.all_rows.filter(conversation=OuterRef("conversation_id")).filter(
            ~Q(id__lte=request.max_message_id) | ~sent_q(request)
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
        claims.checkpoint(locked, Unit(conversation_ids[-1], 0, 0))
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
    timed(execution, started)


# --- phase 2: hidden from every read -----------------------------------------------------


def _sql_moments(*moments) -> list:
    """Datetimes as the ORM stores them, for raw SQL: on SQLite they are text, and a value
    stored in another format would compare wrongly with the ORM's."""
    return [connection.ops.adapt_datetimefield_value(m) for m in moments]


def hide_batch(
    execution: Execution, request: DeletionRequest, conversation_ids: list[int], worker: str
) -> None:
    """Phase 2: hide the scope from every read (tombstones that cannot be restored)."""
    started = time.monotonic()
    now = timezone.now()
    with transaction.atomic():
        locked = claims.LEASE.hold(execution, owner=worker)
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
        held = held_among(conversation_ids) | (
            set(locked.held_conversation_ids) & set(conversation_ids)
        )
        new_held = held - set(locked.held_conversation_ids)
        if new_held:
            locked.held_messages += held_in_scope(request, new_held)
            note_held(locked, new_held)
        wiped = [c for c in conversation_ids if c not in held]
        _write_wipe_tombstones(request, wiped, now)
        locked.done_conversations += len(wiped)
        Conversation.objects.filter(pk__in=[c for c in wiped if c in shredded]).update(
            last_message_at=None
        )
        refresh_last_message([c for c in wiped if c not in shredded])
        claims.checkpoint(locked, Unit(conversation_ids[-1], 0, 0))
    timed(execution, started)


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


# --- keys of emptied conversations ---------------------------------------------------------


def destroy_keys_of_emptied(conversation_ids: set[int], kind: str) -> int:
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
