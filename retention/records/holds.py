"""Which records are held, and the locks that keep deletion and holds from crossing.

Holds beat every deletion path: requests, retention rules, purges, wipes and crypto-
shredding all ask ``held_conversations_q`` / ``holds_covering`` here, inside the
transaction that deletes.

Transaction-scoped locks that keep deletion and holds from crossing each other:

Every batch of a deletion checks holds inside its own transaction while holding the
*shared* hold guard; placing a hold takes it *exclusively*. A hold therefore either
commits before a batch reads holds (and the batch skips its records) or waits until the
batch has committed: it can never slip in between the check and the delete. Batches are
short, so a hold waits a fraction of a second at most.

SQLite has one writer at a time and needs nothing more.
"""

from __future__ import annotations

from functools import reduce
from operator import or_

from django.db import connection
from django.db.models import Q, QuerySet

from retention.models import Conversation, Department, Hold

# An arbitrary constant naming this lock in PostgreSQL's advisory-lock space.
HOLD_GUARD = 0x51494E47  # "QING"


def hold_guard_shared() -> None:
    """Inside a deletion batch's transaction, before it reads the active holds."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [HOLD_GUARD])


def hold_guard_exclusive() -> None:
    """Inside the transaction that places a hold, before it writes it."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [HOLD_GUARD])


def holds_covering(conversation_ids: list[int]) -> QuerySet[Hold]:
    """Active holds on these conversations, directly or through a department above them
    (what ``held_conversations_q`` matches, seen from the other side)."""
    departments = Department.objects.filter(
        pk__in=Conversation.objects.filter(pk__in=conversation_ids).values("department")
    )
    above = {pk for department in departments for pk in department.ancestor_ids()}
    return (
        Hold.objects.filter(released_at__isnull=True)
        .filter(Q(conversations__in=conversation_ids) | Q(departments__in=above))
        .distinct()
        .order_by("pk")
    )


def held_conversations_q() -> Q:
    """Conversations under an active hold, directly or through a held department subtree."""
    active = Hold.objects.filter(released_at__isnull=True)
    q = Q(pk__in=active.values("conversations"))
    paths = Hold.departments.through.objects.filter(hold__released_at__isnull=True).values_list(
        "department__path", flat=True
    )
    return reduce(or_, [Q(department__path__startswith=p) for p in set(paths)], q)
