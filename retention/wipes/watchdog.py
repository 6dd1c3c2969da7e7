"""The watchdog, every minute: it starts approved requests whose time has come (a lost
timed job), and hands runs whose worker went silent to a new worker.
"""

from __future__ import annotations

from datetime import datetime

import django_rq
from django.utils import timezone

from retention.models import DeletionRequest, RequestMethod, RequestStatus
from retention.wipes.lease import expired_runs
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
    for execution_id in expired_runs(now):
        django_rq.get_queue(QUEUE).enqueue(run_execution_job, execution_id)
        resumed += 1
    return {"started": started, "resumed": resumed}


def watch_executions() -> dict[str, int]:
    """The watchdog's job, every minute (``retention.cron``)."""
    return watch()
