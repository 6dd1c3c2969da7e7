"""Purging: the rows and attachment files of purging tombstones deleted for real, files
first, in checkpointed batches; a conversation left empty loses its data key. The last
phase of a server-side wipe is a purge too. Also what tells whether a purge may start on
a request, or is running on it.
"""

from __future__ import annotations

import time

from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

import audit.log as audit
from audit.events import EventType
from audit.models import ComplianceReview, ReviewKind
from retention.models import (
    Attachment,
    DeletionRequest,
    Execution,
    ExecutionKind,
    ExecutionStatus,
    Message,
    PersonalRemoval,
    RequestMethod,
    Tombstone,
    TombstoneState,
)
from retention.records.holds import hold_guard_shared
from retention.wipes import claims
from retention.wipes.outcome import complete, end, outcome_of, timed
from retention.wipes.review import review_summary
from retention.wipes.shred import destroy_keys_of_emptied
from retention.wipes.units import Unit, held_among, note_held, sent_q, units_q


def purge_batch(
    execution: Execution, request: DeletionRequest, units: list[Unit], worker: str
) -> None:
    # The rows of the units; attachments and personal removals by their own conversation
    # and message-id columns, so that each statement is an index range scan.
    def rows_of(units: list[Unit], *, via: str = ""):
        q = units_q(units, id_field=f"{via}_id" if via else "id")
        return q & sent_q(request, prefix=f"{via}__" if via else "")

    started = time.monotonic()
    with transaction.atomic():
        locked = claims.LEASE.hold(execution, owner=worker)
        hold_guard_shared()
        held = held_among({u.conversation_id for u in units})
        if held:
            # A hold placed after the records were binned: they stay (files included), in
            # the bin, and are counted as held (all rows: tombstones hide them from reads).
            kept = [u for u in units if u.conversation_id in held]
            locked.held_messages += Message.all_rows.filter(units_q(kept) & sent_q(request)).count()
            if execution.kind == ExecutionKind.PURGE:
                Tombstone.objects.filter(
                    pk__in=[u.tombstone_id for u in kept], state=TombstoneState.PURGING
                ).update(state=TombstoneState.BINNED)
            note_held(locked, held)
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
            locked.keys_destroyed += destroy_keys_of_emptied(
                {u.conversation_id for u in finished}, execution.kind
            )
        claims.checkpoint(locked, units[-1])
    timed(execution, started)


def finish_purge(execution: Execution, request: DeletionRequest, worker: str) -> None:
    with transaction.atomic():
        locked = claims.LEASE.hold(execution, owner=worker)
        if execution.kind == ExecutionKind.WIPE:
            complete(locked, request)
            kind = ReviewKind.SERVER_WIPE
        else:
            end(locked, ExecutionStatus.COMPLETED)
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


# --- may a purge start? ---------------------------------------------------------------------


def purge_in_progress(request_id: int) -> bool:
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
