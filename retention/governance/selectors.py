"""Reads about deletion requests and notifications: a request's timeline and progress, a
member's notifications. Which requests and holds a viewer sees is
``retention.access.predicates``."""

from __future__ import annotations

import math

from django.db.models import QuerySet
from django.utils import timezone

from audit.models import AuditEvent
from retention.models import DeletionRequest, Member, Notification


def request_timeline(request: DeletionRequest) -> QuerySet[AuditEvent]:
    """Every audited event about the request, oldest first: filing, each decision,
    holds placed on its records, cancellation, execution."""
    return AuditEvent.objects.filter(
        target_type="retention.deletionrequest", target_id=str(request.pk)
    ).order_by("id")


def notifications_for(viewer: Member) -> QuerySet[Notification]:
    return Notification.objects.filter(recipient=viewer).select_related("request")


def request_progress(request: DeletionRequest) -> dict | None:
    """The latest run of a request as the progress bar and the API show it: counts, rate
    and time left (None before the request has started)."""
    run = request.executions.order_by("-id").first()
    if run is None:
        return None
    rate = eta = None
    if run.started_at and run.done_messages:
        end = run.finished_at or timezone.now()
        elapsed = max((end - run.started_at).total_seconds(), 0.001)
        per_second = run.done_messages / elapsed  # > 0: done_messages is
        left = max(run.total_messages - run.done_messages - run.skipped_messages, 0)
        eta = 0 if run.finished_at else math.ceil(left / per_second)
        rate = round(per_second, 1)  # for display only: a slow run rounds to 0.0
    return {
        "kind": run.kind,
        "phase": run.phase,
        "status": run.status,
        "total_messages": run.total_messages,
        "done_messages": run.done_messages,
        "held_messages": run.held_messages,
        "held_conversations": run.held_conversations,
        "protected_messages": run.protected_messages,
        "protected_conversations": run.protected_conversations,
        "gone_before_run": run.vanished_messages,
        "percent": run.percent,
        "rate_per_second": rate,
        "eta_seconds": eta,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "unreadable_at": run.unreadable_at,
        "resumes": run.resumes,
        "last_error": run.last_error,
    }
