"""Transaction-scoped locks that keep deletion and holds from crossing each other.

Every batch of a deletion checks holds inside its own transaction while holding the
*shared* hold guard; placing a hold takes it *exclusively*. A hold therefore either
commits before a batch reads holds (and the batch skips its records) or waits until the
batch has committed: it can never slip in between the check and the delete. Batches are
short, so a hold waits a fraction of a second at most.

SQLite has one writer at a time and needs nothing more.
"""

from __future__ import annotations

from django.db import connection

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
