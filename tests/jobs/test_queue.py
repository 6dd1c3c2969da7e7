"""The queue: real RQ workers on real Redis, and the zero-setup in-process worker."""

from __future__ import annotations

import time

import django_rq
import pytest
import redis
from rq import Queue

from audit.events import EventType
from audit.models import AuditEvent
from retention.jobs.queue import _POOL, start_in_process_worker
from retention.reports.verification_runs import verify_audit_chain
from tests.conftest import on_postgres, run_worker_burst


@pytest.mark.queue
@pytest.mark.django_db(transaction=True)
def test_a_separate_rqworker_process_runs_a_job(redis_queue_connection):
    job = django_rq.get_queue("maintenance").enqueue(verify_audit_chain)
    assert job is not None  # outside a transaction: enqueued at once

    run_worker_burst("maintenance")

    job.refresh()
    assert job.get_status() == "finished", job.latest_result()
    assert job.return_value()["intact"] is True
    assert AuditEvent.objects.filter(event_type=EventType.CHAIN_VERIFIED).count() == 1


@pytest.mark.queue
@pytest.mark.django_db(transaction=True)
def test_jobs_enqueued_inside_a_transaction_wait_for_the_commit(redis_queue_connection):
    from django.db import transaction

    queue = django_rq.get_queue("maintenance")
    with transaction.atomic():
        assert queue.enqueue(verify_audit_chain) is None  # deferred, not lost
        assert queue.count == 0
    assert queue.count == 1


@pytest.mark.django_db(transaction=True)
def test_the_in_process_worker_runs_jobs_without_a_redis_server(settings):
    from retention.jobs.queue import in_process_queue_config

    # The worker thread commits on its own connection, so this test commits too, and
    # resetting committed tables needs PostgreSQL (SQLite's flush meets the audit trigger).
    if not on_postgres():
        pytest.skip("needs DATABASE_URL=postgres://… for a committing test")

    settings.RQ_QUEUES = {name: in_process_queue_config() for name in settings.QUEUE_NAMES}
    fake = redis.Redis(connection_pool=_POOL)
    fake.flushdb()
    queue = Queue("maintenance", connection=fake)
    queue.enqueue(verify_audit_chain)

    worker = start_in_process_worker(("maintenance",), with_cron=False)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if AuditEvent.objects.filter(event_type=EventType.CHAIN_VERIFIED).exists():
                break
            time.sleep(0.2)
    finally:
        worker.stop()
    assert AuditEvent.objects.filter(event_type=EventType.CHAIN_VERIFIED).count() == 1


def test_the_cron_config_registers_the_periodic_jobs():
    from rq.cron import CronScheduler

    scheduler = CronScheduler(connection=redis.Redis(connection_pool=_POOL))
    scheduler.load_config_from_file("retention.cron")
    names = {job.func.__name__ for job in scheduler.get_jobs()}
    assert names == {
        "do_expire_stale_requests",
        "verify_audit_chain",
        "record_chain_digests",
        "watch_executions",
        "purge_recycle_bin",
        "run_due_rules",
        "check_rule_health",
        "requeue_stalled_exports",
        "expire_exports",
        "requeue_stalled_verifications",
        "requeue_stalled_audit_exports",
        "expire_audit_exports",
    }
