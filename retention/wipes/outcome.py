"""How a run ends (completed, or what its failure does to its request) and the counts it
reports: the timeline, the API and the compliance review all show ``outcome_of``.
"""

from __future__ import annotations

import time

from django.utils import timezone

import audit.log as audit
from audit.events import EventType
from retention.models import DeletionRequest, Execution, ExecutionStatus, RequestStatus
from retention.notifications import notify
from retention.records.holds import holds_covering


def outcome_of(execution: Execution) -> dict:
    """A run's counts, as the timeline, the API and the compliance review show them."""
    return {
        "kind": execution.kind,
        "approved_messages": execution.total_messages,
        "deleted_messages": execution.done_messages,
        "deleted_conversations": execution.done_conversations,
        "held_messages": execution.held_messages,
        "held_conversations": execution.held_conversations,
        "protected_messages": execution.protected_messages,
        "protected_conversations": execution.protected_conversations,
        "gone_before_run": execution.vanished_messages,
        "attachments_removed": execution.attachments_removed,
        "keys_destroyed": execution.keys_destroyed,
        "batches": execution.batches,
        "longest_batch_ms": execution.longest_batch_ms,
        "resumes": execution.resumes,
    }


def timed(execution: Execution, started: float) -> None:
    """Record the batch's whole transaction time, commit included, if it is a new high."""
    elapsed_ms = int((time.monotonic() - started) * 1000)
    Execution.objects.filter(pk=execution.pk, longest_batch_ms__lt=elapsed_ms).update(
        longest_batch_ms=elapsed_ms
    )


def complete(locked: Execution, request: DeletionRequest) -> None:
    """The run did all it could: the request is completed, with what holds kept and what
    was left because it was marked protected after filing. (Records a retention rule
    binned for purging at once are purged next: the run loop queues that.)"""
    # Fewer than approved: another request took some first. More: records of the scope
    # that sat in another request's recycle bin when this one was measured came back.
    settled = locked.done_messages + locked.skipped_messages
    locked.vanished_messages = max(0, locked.total_messages - settled)
    end(locked, ExecutionStatus.COMPLETED)
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
    if locked.protected_conversation_ids:
        audit.record(
            EventType.PROTECTED_RECORDS_SKIPPED,
            target=request,
            department_id=request.scope_root_id,
            details={
                "messages": locked.protected_messages,
                "conversations": locked.protected_conversations,
                "conversation_ids": locked.protected_conversation_ids[:50],
            },
        )
    audit.record(
        EventType.REQUEST_EXECUTED,
        target=request,
        department_id=request.scope_root_id,
        details=outcome_of(locked),
    )
    notify.executed(request, locked)


def end(execution: Execution, status: str) -> None:
    execution.status, execution.finished_at = status, timezone.now()
    execution.lease_owner, execution.lease_expires_at = "", None
    execution.save()


def failed(execution: Execution, error: str) -> None:
    """The run failed (the lease wrote its row: ``claims.LEASE.fail``): the request fails
    with it, audited, and the requester and every admin are told why."""
    execution.last_error = error  # as written to the row
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
    notify.failed(request, execution.last_error)
