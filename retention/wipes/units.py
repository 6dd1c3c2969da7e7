"""The work units of a run: which message ids of which conversations the next batch takes
(``Unit``), which rows a unit covers, and which of them a hold keeps (or a protection
the request did not confirm).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import reduce
from operator import or_

from django.db.models import Count, Q, Sum

from retention.models import (
    Conversation,
    DeletionRequest,
    Execution,
    Message,
    RequestConversation,
    Tombstone,
    TombstoneState,
)
from retention.records.holds import held_conversations_q

# Conversations whose remaining messages are counted or deleted in one statement.
UNITS_PER_BATCH = 500


@dataclass(frozen=True)
class Unit:
    """Message ids ``(after_id, up_to_id]`` of one conversation."""

    conversation_id: int
    after_id: int
    up_to_id: int
    tombstone_id: int | None = None
    # Purge units: the chunk reaches the end of its tombstone's range.
    ends_tombstone: bool = False


# --- choosing the next batch --------------------------------------------------------------


def _chunk_end(conversation_id: int, after_id: int, up_to_id: int, budget: int) -> int:
    """The id that ends a chunk of at most ``budget`` stored rows after ``after_id`` (an
    index-only probe on (conversation, id)); ``up_to_id`` when fewer rows remain."""
    ids = Message.all_rows.filter(
        conversation_id=conversation_id, id__gt=after_id, id__lte=up_to_id
    ).order_by("id")
    end = ids.values_list("id", flat=True)[budget - 1 : budget].first()
    return up_to_id if end is None else end


def target_units(execution: Execution, request: DeletionRequest, budget: int) -> list[Unit]:
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


def tombstone_units(execution: Execution, request: DeletionRequest, budget: int) -> list[Unit]:
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


def sent_q(request: DeletionRequest, prefix: str = "") -> Q:
    q = Q()
    if request.sent_after:
        q &= Q(**{f"{prefix}sent_at__gte": request.sent_after})
    if request.sent_before:
        q &= Q(**{f"{prefix}sent_at__lt": request.sent_before})
    return q


def units_q(units: list[Unit], *, conversation: str = "conversation_id", id_field: str = "id") -> Q:
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


def held_among(conversation_ids: Iterable[int]) -> set[int]:
    return set(
        Conversation.objects.filter(
            held_conversations_q(), pk__in=list(conversation_ids)
        ).values_list("pk", flat=True)
    )


def protected_among(request: DeletionRequest, conversation_ids: Iterable[int]) -> set[int]:
    """Conversations protected now that the request did not confirm by name: protected
    after it was filed (a retention rule's run confirms none). A move to the recycle bin
    (a batch request's, a rule's run) leaves them."""
    return set(
        Conversation.objects.filter(is_protected=True, pk__in=list(conversation_ids))
        .exclude(pk__in=request.confirmed_protected or [])
        .values_list("pk", flat=True)
    )


def note_protected(locked: Execution, protected: set[int]) -> None:
    locked.protected_conversation_ids = sorted(set(locked.protected_conversation_ids) | protected)


def live_counts(units: list[Unit], request: DeletionRequest) -> dict[int, tuple[int, int]]:
    rows = (
        Message.objects.filter(units_q(units), sent_q(request))
        .values("conversation_id")
        .annotate(n=Count("id"), b=Sum("body_bytes"))
        .order_by()
    )
    return {r["conversation_id"]: (r["n"], r["b"] or 0) for r in rows}


def note_held(locked: Execution, held: set[int]) -> None:
    locked.held_conversation_ids = sorted(set(locked.held_conversation_ids) | held)


def held_in_scope(request: DeletionRequest, conversation_ids: Iterable[int]) -> int:
    """Visible messages of the frozen scope in these (held) conversations."""
    return Message.objects.filter(
        sent_q(request), conversation_id__in=conversation_ids, id__lte=request.max_message_id
    ).count()
