"""The watchdog, every minute: it starts approved requests whose time has come (a lost
timed job), and hands runs whose worker went silent to a new worker.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import django_rq
from django.utils import timezone

from retention.models import (
    DeletionRequest,
    Execution,
    ExecutionStatus,
    RequestMethod,
    RequestStatus,
)
from retention.wipes.claims import LEASE
from retention.wipes.runner import QUEUE, run_execution_job
from retention.wipes.schedule import start_request_job


def watch(*, now: datetime | None = None) -> dict[str, int]:
    """Every minute: start approved requests whose time has come (a lost scheduled job),
    and hand runs whose worker went silent (lease expired) to a new worker."""
    now = now or timezone.now()
    started = 0
    for request_id in (
        DeletionRequest.objects.filter(status=RequestStatus.APPROVED, scheduled_for__lte=now)
        .exclude(method=RequestMethod.PERSONAL)
        .values_list("pk", flat=True)
    ):
        django_rq.get_queue(QUEUE).enqueue(start_request_job, request_id)
        started += 1
    resumed = 0
    for execution_id in silent_runs(now):
        django_rq.get_queue(QUEUE).enqueue(run_execution_job, execution_id)
        resumed += 1
    return {"started": started, "resumed": resumed}


def silent_runs(now: datetime) -> list[int]:
    """Runs whose lease expired (their worker went silent, or a retry's back-off ended),
    and runs queued a minute ago that no worker took."""
    expired = LEASE.stale(now=now).values_list("pk", flat=True)
    untaken = Execution.objects.filter(
        status=ExecutionStatus.QUEUED, created_at__lt=now - timedelta(minutes=1)
    ).values_list("pk", flat=True)
    return [*expired, *untaken]


def watch_executions() -> dict[str, int]:
    """The watchdog's job, every minute (``retention.cron``)."""
    return watch()
