"""When an approved request runs: its timed start, the start itself (inside the
execution window, once the evidence it needs is ready), and the job that starts a
request and works its run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import django_rq
from django.db import transaction
from django.db.models import Count, Sum
from django.utils import timezone

import audit.log as audit
from audit.events import EventType
from audit.models import AuditEvent
from retention.dates import bounds_problem
from retention.models import (
    DeletionRequest,
    Execution,
    ExecutionKind,
    RequestMethod,
    RequestStatus,
)
from retention.notifications import notify
from retention.policies import first_run_time, get_policy
from retention.wipes.evidence import (
    ask_for_evidence,
    evidence_export_pending,
    has_evidence_export,
    needs_evidence,
)
from retention.wipes.runner import QUEUE, run_execution
from retention.wipes.shred import SHRED


def schedule_request(request: DeletionRequest) -> None:
    """Queue an approved request for its run time (call inside the approving transaction:
    the job is queued only if it commits)."""
    request_id, at = request.pk, request.scheduled_for
    transaction.on_commit(
        lambda: django_rq.get_queue(QUEUE).enqueue_at(at, start_request_job, request_id)
    )


def enqueue_start(request_id: int) -> None:
    """Start a request now (a retention run: approved by its rule)."""
    django_rq.get_queue(QUEUE).enqueue(start_request_job, request_id)


def enqueue_start_if_waiting(request_id: int) -> None:
    """Start an approved request whose time has come (it may have waited for evidence)."""
    due = DeletionRequest.objects.filter(
        pk=request_id, status=RequestStatus.APPROVED, scheduled_for__lte=timezone.now()
    ).exists()
    if due:
        enqueue_start(request_id)


def start_request(request_id: int, *, now: datetime | None = None) -> Execution | None:
    """Begin an approved request's run, if its time has come. A cancelled request, or one
    already started, is left alone (so a doubled or late job is harmless)."""
    now = now or timezone.now()
    with transaction.atomic():
        request = DeletionRequest.objects.select_for_update().get(pk=request_id)
        if request.status != RequestStatus.APPROVED:
            return None
        if request.method == RequestMethod.PERSONAL:
            return None
        problem = bounds_problem(request.sent_after, request.sent_before)
        if problem is not None:
            _refuse_to_run(request, problem)
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
        if needs_evidence(request) and not has_evidence_export(request):
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


def start_request_job(request_id: int) -> str:
    """An approved request's run time has come: start it and work it to the end."""
    run = start_request(request_id)
    if run is None:
        return "not started (not approved, or not yet due)"
    return run_execution(run.pk).status


def _refuse_to_run(request: DeletionRequest, reason: str) -> None:
    """A stored date range outside what Qingli accepts means nothing sure: moving it into
    the range could widen the run. The request fails, audited, and nothing is deleted."""
    request.status = RequestStatus.FAILED
    request.save(update_fields=["status"])
    audit.record(
        EventType.REQUEST_FAILED,
        target=request,
        department_id=request.scope_root_id,
        details={"reason": reason, "attempts": 0, "deleted_messages": 0},
    )
    notify.failed(request, reason)


def _wait_for_evidence(request: DeletionRequest) -> None:
    """Say once on the timeline why the run waits; an archiving rule asks for the export
    itself. The watchdog starts the request once the export is ready."""
    if request.method == RequestMethod.RETENTION and not evidence_export_pending(request):
        ask_for_evidence(request)
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
