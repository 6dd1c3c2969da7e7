"""The job lease (``retention.jobs.lease``) of every job row, against real workers.

For each kind of job row (an export, a chain verification run, a large audit-log export)
a real ``manage.py rqworker default`` claims the row and is killed with SIGKILL in the
middle of the job (worker and horse: no cleanup, nothing recorded). To stop the job at a
known point, the table it reads right after claiming the row is locked against every
read from a connection of the test's own until the worker is dead. Then the kind's sweep
finds the row's heartbeat stale and queues it again, and a second worker finishes it; or,
once the row had its last attempt, the sweep fails it exactly once, with the kind's
failure event (a verification's failure is recorded on its row only, as always).

A wipe run holds its row under a deadline instead of a heartbeat: a real ``manage.py
rqworker wipes`` is killed in the pause after a batch, the lease runs out, and the
watchdog hands the run to a second worker, which finishes it from the dead worker's
checkpoint; or, when the dead worker had the run's last attempt, the next worker fails it
exactly once. (``tests/test_wipe_worker.py`` does the same with thousands of messages.)
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import django_rq
import psycopg
import pytest
from django.db import connection, models
from django.utils import timezone

from audit import log as audit
from audit.events import EventType
from audit.models import (
    AuditEvent,
    AuditExport,
    AuditExportStatus,
    ChainDigest,
    ChainVerification,
    VerificationStatus,
)
from audit.selectors import EventFilter
from retention.exports import build
from retention.exports.service import do_request_export
from retention.jobs.lease import Lease, LeaseLost
from retention.models import (
    DeletionRequest,
    Execution,
    ExecutionStatus,
    Export,
    ExportStatus,
    Message,
    RequestMethod,
    RequestStatus,
    SignInDay,
)
from retention.reports import audit_log_exports, verification_runs
from retention.wipes import runner, schedule, watchdog
from tests.conftest import (
    database_url_for_subprocess,
    kill_worker,
    make_chat,
    run_worker_burst,
)
from tests.wipes.test_wipe_worker import approved

pytestmark = [pytest.mark.queue, pytest.mark.django_db(transaction=True)]


@dataclass(frozen=True)
class Kind:
    """One kind of job row: how a test asks for one, and what its lease and events are."""

    name: str
    lease: Lease
    # The table the job reads right after claiming its row: locked, the job waits there.
    reads: type[models.Model]
    done: str
    failed_event: EventType | None


def ask_for_export(cast, chats) -> Export:
    return do_request_export(chats["hangzhou"], fmt="jsonl", acting_user=cast.staff)


def ask_for_verification(cast, chats) -> ChainVerification:
    return verification_runs.do_request_verification(acting_user=cast.auditor)


def ask_for_audit_export(cast, chats) -> AuditExport:
    for i in range(5):
        audit.record(EventType.HOLD_PLACED, actor=cast.security, target_id=i)
    return audit_log_exports.do_export_events(EventFilter(), acting_user=cast.auditor)


KINDS = {
    "export": (
        Kind(
            "export",
            build.LEASE,
            Message,
            ExportStatus.READY,
            EventType.EXPORT_FAILED,
        ),
        ask_for_export,
    ),
    "verification": (
        Kind(
            "verification",
            verification_runs.LEASE,
            ChainDigest,
            VerificationStatus.INTACT,
            None,
        ),
        ask_for_verification,
    ),
    "audit export": (
        Kind(
            "audit export",
            audit_log_exports.LEASE,
            AuditEvent,
            AuditExportStatus.READY,
            EventType.AUDIT_EXPORT_FAILED,
        ),
        ask_for_audit_export,
    ),
}


def later() -> datetime:
    """A moment at which a heartbeat from now is stale for every kind."""
    return timezone.now() + timedelta(minutes=11)


@pytest.fixture
def small_audit_exports(settings):
    settings.QINGLI_AUDIT_EXPORT_DIRECT_MAX = 2


@pytest.fixture
def worker(killable_workers, settings):
    """Starts ``manage.py rqworker default`` (or another queue, with settings of its own in
    ``extra``; killed at the end if still alive)."""

    def start(queue: str = "default", **extra: str) -> subprocess.Popen:
        return killable_workers(queue, MEDIA_ROOT=str(settings.MEDIA_ROOT), **extra)

    start.logs = killable_workers.logs
    return start


@contextmanager
def locked(model: type[models.Model]) -> Iterator[None]:
    """The model's table locked against every read, from a connection of its own."""
    with psycopg.connect(database_url_for_subprocess()) as other:
        other.execute(f'LOCK TABLE "{model._meta.db_table}" IN ACCESS EXCLUSIVE MODE')
        try:
            yield
        finally:
            other.rollback()


def waiting_on(model: type[models.Model]) -> bool:
    """Whether a connection waits for a lock on the model's table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted",
            [model._meta.db_table],
        )
        return cursor.fetchone()[0] > 0


def killed_mid_job(kind: Kind, row: models.Model, start: Callable[[], subprocess.Popen]) -> None:
    """A worker claims the row, reaches the locked table and is killed there."""
    with locked(kind.reads):
        process = start()
        deadline = time.monotonic() + 60
        while not waiting_on(kind.reads):  # claimed, and stopped at the lock
            assert process.poll() is None and time.monotonic() < deadline, start.logs()
            time.sleep(0.1)
        kill_worker(process)
        process.wait(timeout=10)
    row.refresh_from_db()
    assert row.status == kind.lease.running  # claimed; nothing recorded by the dead worker


def events(event_type: EventType | None) -> int:
    return AuditEvent.objects.filter(event_type=event_type).count() if event_type else 0


@pytest.mark.parametrize("name", list(KINDS))
def test_a_job_whose_worker_is_killed_is_requeued_and_finished_by_another(
    name, cast, chats, worker, settings, small_audit_exports
):
    kind, ask = KINDS[name]
    row = ask(cast, chats)
    killed_mid_job(kind, row, worker)

    assert kind.lease.sweep(now=later()) == [row.pk]
    row.refresh_from_db()
    assert row.status == kind.lease.queued and row.attempts == 1
    assert kind.lease.sweep(now=later()) == []  # queued once, and its job waits its turn

    run_worker_burst("default", MEDIA_ROOT=str(settings.MEDIA_ROOT))

    row.refresh_from_db()
    assert row.status == kind.done, row.error
    assert row.attempts == 2
    assert events(kind.failed_event) == 0
    if name == "export":
        restarted = AuditEvent.objects.get(event_type=EventType.EXPORT_RESTARTED)
        assert restarted.details["export"] == row.pk and restarted.details["attempts"] == 1
        assert AuditEvent.objects.filter(event_type=EventType.EXPORT_COMPLETED).count() == 1
    if name == "verification":
        assert AuditEvent.objects.filter(event_type=EventType.CHAIN_VERIFIED).count() == 1
    if name == "audit export":
        assert row.rows == AuditEvent.objects.filter(id__lte=row.max_event_id).count() >= 5
        assert AuditEvent.objects.filter(event_type=EventType.AUDIT_EXPORT_COMPLETED).count() == 1


@pytest.mark.parametrize("name", list(KINDS))
def test_a_job_killed_on_its_last_attempt_fails_exactly_once(
    name, cast, chats, worker, small_audit_exports
):
    kind, ask = KINDS[name]
    row = ask(cast, chats)
    max_attempts = kind.lease.max_attempts
    type(row).objects.filter(pk=row.pk).update(attempts=max_attempts - 1)
    killed_mid_job(kind, row, worker)
    assert row.attempts == max_attempts

    assert kind.lease.sweep(now=later()) == []
    assert kind.lease.sweep(now=later()) == []  # and nothing more, later

    row.refresh_from_db()
    assert row.status == kind.lease.failed
    assert row.error == str(kind.lease.gave_up) % {"n": max_attempts}
    assert row.finished_at is not None
    if kind.failed_event is not None:
        assert events(kind.failed_event) == 1
    else:  # a verification's failure is on its row only
        assert not AuditEvent.objects.filter(event_type=EventType.CHAIN_VERIFIED).exists()
    if name == "export":
        assert not row.file and row.wrapped_key is None
        assert not AuditEvent.objects.filter(event_type=EventType.EXPORT_RESTARTED).exists()


# --- the wipe run -------------------------------------------------------------------------

# The killed worker's settings: batches of four messages (a move takes four times the
# batch size), a pause after each long enough to kill the worker in, and a short lease.
WIPE_WORKER = {
    "QINGLI_WIPE_BATCH_MESSAGES": "1",
    "QINGLI_WIPE_BATCH_PAUSE_MS": "5000",
    "QINGLI_WIPE_LEASE_SECONDS": "3",
}


def started_wipe_run(cast, org, chats) -> tuple[DeletionRequest, Execution]:
    """A batch deletion of the Hangzhou store (15 messages), approved and started: its run
    is queued on the wipes queue."""
    make_chat(org.hangzhou, [cast.staff], [f"第{i}条" for i in range(12)])
    today = timezone.localdate()
    SignInDay.objects.bulk_create(
        [
            SignInDay(member=m, day=today - timedelta(days=i))
            for m in vars(cast).values()
            for i in range(5)
        ]
    )
    request = approved(cast.staff, [cast.manager], RequestMethod.BATCH, [org.hangzhou])
    execution = schedule.start_request(request.pk, now=request.scheduled_for)
    assert execution is not None and execution.total_messages == 15
    django_rq.get_queue(runner.QUEUE).enqueue(runner.run_execution_job, execution.pk)
    return request, execution


def killed_after_a_batch(execution: Execution, start: Callable[..., subprocess.Popen]) -> None:
    """A wipes worker claims the run, commits a batch and is killed in the pause after it;
    then its lease runs out."""
    process = start(runner.QUEUE, **WIPE_WORKER)
    deadline = time.monotonic() + 60
    while not Execution.objects.filter(pk=execution.pk, batches__gt=0).exists():
        assert process.poll() is None and time.monotonic() < deadline, start.logs()
        time.sleep(0.05)
    kill_worker(process)
    process.wait(timeout=10)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.RUNNING and execution.lease_owner
    assert 0 < execution.done_messages < execution.total_messages
    # While the lease runs, the watchdog leaves the run alone.
    assert watchdog.watch() == {"started": 0, "resumed": 0}
    time.sleep(max(0.0, (execution.lease_expires_at - timezone.now()).total_seconds()) + 0.1)


def test_a_wipe_run_whose_worker_is_killed_is_handed_over_and_finished_from_its_checkpoint(
    cast, org, chats, worker
):
    request, execution = started_wipe_run(cast, org, chats)
    killed_after_a_batch(execution, worker)
    dead = Execution.objects.get(pk=execution.pk)
    assert dead.attempts == 1

    assert watchdog.watch() == {"started": 0, "resumed": 1}
    assert django_rq.get_queue(runner.QUEUE).count == 1
    run_worker_burst(runner.QUEUE)

    done = Execution.objects.get(pk=execution.pk)
    assert done.status == ExecutionStatus.COMPLETED, done.last_error
    assert done.attempts == 2 and done.resumes == 1 and done.lease_owner == ""
    assert done.done_messages == done.total_messages == 15
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED
    resumed = AuditEvent.objects.get(event_type=EventType.REQUEST_RESUMED)
    assert resumed.details["done"] == dead.done_messages
    assert resumed.details["checkpoint"] == [dead.cursor_conversation, dead.cursor_id]
    assert events(EventType.REQUEST_EXECUTED) == 1
    assert events(EventType.REQUEST_FAILED) == 0
    assert watchdog.watch() == {"started": 0, "resumed": 0}


def test_a_wipe_run_killed_on_its_last_attempt_fails_exactly_once(
    cast, org, chats, worker, settings
):
    max_attempts = settings.QINGLI_WIPE_MAX_ATTEMPTS
    request, execution = started_wipe_run(cast, org, chats)
    Execution.objects.filter(pk=execution.pk).update(attempts=max_attempts - 1)
    killed_after_a_batch(execution, worker)
    assert execution.attempts == max_attempts

    assert watchdog.watch() == {"started": 0, "resumed": 1}
    run_worker_burst(runner.QUEUE)
    # A late or doubled job changes nothing.
    django_rq.get_queue(runner.QUEUE).enqueue(runner.run_execution_job, execution.pk)
    run_worker_burst(runner.QUEUE)
    assert watchdog.watch() == {"started": 0, "resumed": 0}

    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED
    assert execution.last_error == f"gave up after {max_attempts} attempts"
    assert execution.finished_at is not None and execution.lease_owner == ""
    assert execution.lease_expires_at is None
    request.refresh_from_db()
    assert request.status == RequestStatus.FAILED
    failed = AuditEvent.objects.get(event_type=EventType.REQUEST_FAILED)
    assert failed.details["attempts"] == max_attempts + 1
    assert not AuditEvent.objects.filter(event_type=EventType.REQUEST_RESUMED).exists()


# --- the lease itself ---------------------------------------------------------------------


def test_a_claim_is_a_compare_and_swap_only_one_of_many_wins(cast, chats, redis_queue_connection):
    """Eight workers claim the same queued row at once: one gets it, the others lose."""
    export = ask_for_export(cast, chats)
    barrier = threading.Barrier(8)
    won: list[bool] = []

    def claim() -> None:
        try:
            barrier.wait()
            won.append(build.LEASE.claim(export.pk) is not None)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(won) == [False] * 7 + [True]
    export.refresh_from_db()
    assert export.status == ExportStatus.RUNNING and export.attempts == 1
    assert build.LEASE.claim(export.pk) is None  # and a later claim loses too


def test_a_run_taken_for_dead_learns_it_at_its_next_beat(cast, chats, redis_queue_connection):
    export = ask_for_export(cast, chats)
    first = build.LEASE.claim(export.pk)
    build.LEASE.beat(first)

    assert build.LEASE.sweep(now=later()) == [export.pk]
    with pytest.raises(LeaseLost):
        build.LEASE.beat(first)
    second = build.LEASE.claim(export.pk)
    assert second.attempts == 2
    assert not build.LEASE.finish(first, ExportStatus.READY)  # the old run writes nothing
    assert build.LEASE.finish(second, ExportStatus.READY)
