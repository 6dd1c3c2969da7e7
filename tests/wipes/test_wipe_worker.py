"""A real wipes worker killed in the middle of a run, and a second one that finishes it.

Each test fills a few thousand messages into several conversations, files and approves a
request, starts its run and hands it to a real ``manage.py rqworker wipes`` process on
real Redis and PostgreSQL. Small batches with a pause make the run last a few seconds;
once part of the scope is done, the worker is killed with SIGKILL (no cleanup, no failure
recorded). Its lease stays on the run until it expires; then the watchdog hands the run
to a second worker, which carries on from the checkpoint. At the end exactly the frozen
scope is gone — nothing twice, nothing missed, nothing outside it — and the counts, the
timeline and the audit chain say so.

RQ runs each job in a forked "work horse" child of the worker process, in a session of
its own: killing the worker's pid alone would leave the horse working. So the worker and
its horse are both killed, like a machine or container going away.
"""

from __future__ import annotations

import socket
import subprocess
import time
from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone

from audit.chain import verify_chain
from audit.events import EventType
from audit.models import AuditEvent
from retention.governance.decisions import do_approve_step
from retention.models import (
    DataKey,
    DeletionRequest,
    Execution,
    ExecutionStatus,
    Message,
    RequestConversation,
    RequestMethod,
    RequestStatus,
)
from retention.records.store import NewMessage, add_messages, create_conversation
from retention.wipes import claims, runner, schedule, shred, watchdog
from tests.conftest import children_of, file_request, kill_worker, services_or_skip

pytestmark = [pytest.mark.queue, pytest.mark.django_db(transaction=True)]

BATCH = 50
LEASE_SECONDS = 3
POLL = 0.02


@pytest.fixture
def workers(killable_workers):
    """Starts ``manage.py rqworker wipes`` processes with small batches and a short lease."""
    services_or_skip()
    env = {
        "QINGLI_WIPE_BATCH_MESSAGES": str(BATCH),
        "QINGLI_WIPE_BATCH_PAUSE_MS": "20",
        "QINGLI_WIPE_LEASE_SECONDS": str(LEASE_SECONDS),
    }

    def start(*args: str) -> subprocess.Popen:
        return killable_workers("wipes", *args, **env)

    start.logs = killable_workers.logs
    return start


def fill(department, participants, count: int, *, start) -> object:
    """A group conversation of ``count`` messages, one minute apart from ``start``."""
    conversation = create_conversation(
        kind="group",
        title=f"{department.name} {count}",
        department=department,
        participants=participants,
    )
    sender = participants[0]
    for first in range(0, count, 500):
        add_messages(
            conversation,
            [
                NewMessage(
                    sender=sender,
                    sender_name=sender.username,
                    sent_at=start + timedelta(minutes=i),
                    body=f"第{i}条 例行消息",
                )
                for i in range(first, min(count, first + 500))
            ],
        )
    return conversation


def late_message(conversation, sender) -> int:
    (row,) = add_messages(
        conversation,
        [NewMessage(sender=sender, sender_name=sender.username, sent_at=timezone.now(), body="新")],
    )
    return row.pk


def approved(requester, approvers, method, departments) -> DeletionRequest:
    request = file_request(
        requester, method, reason="清理旧记录", departments=[d.pk for d in departments]
    )
    for approver in approvers:
        request = do_approve_step(request, acting_user=approver, verified_second_factor=True)
    assert request.status == RequestStatus.APPROVED
    return request


def frozen_scope(request) -> set[int]:
    """The ids the request froze: its target conversations, up to its high-water mark."""
    conversations = RequestConversation.objects.filter(request=request).values("conversation_id")
    return set(
        Message.objects.filter(
            conversation_id__in=conversations, id__lte=request.max_message_id
        ).values_list("pk", flat=True)
    )


def row(execution_id: int) -> dict:
    return Execution.objects.values(
        "status",
        "phase",
        "done_messages",
        "total_messages",
        "lease_owner",
        "lease_expires_at",
        "batches",
    ).get(pk=execution_id)


def wait_for(predicate, *, timeout: float, what: str, logs) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = predicate()
        if state:
            return state
        time.sleep(POLL)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


def timeline(request, event_type):
    return AuditEvent.objects.filter(
        event_type=event_type, target_type="retention.deletionrequest", target_id=str(request.pk)
    )


def kill_mid_run(execution_id: int, worker: subprocess.Popen, logs, *, phase: str) -> dict:
    """Wait until the run has done some of its work (in ``phase``), then SIGKILL the
    worker and its horse. Returns the run's row as the dead worker left it."""

    def mid_run():
        if worker.poll() is not None:
            raise AssertionError(f"the worker exited by itself ({worker.returncode})\n{logs()}")
        state = row(execution_id)
        if state["status"] == ExecutionStatus.COMPLETED:
            raise AssertionError(f"the run finished before the kill landed: {state}")
        if state["phase"] == phase and state["done_messages"] > 0:
            return state
        return None

    state = wait_for(mid_run, timeout=45, what=f"the run to get going ({phase})", logs=logs)
    # The lease belongs to the horse the worker forked for the job.
    host, pid, _tag = state["lease_owner"].split(":")
    assert host == socket.gethostname()
    assert int(pid) in children_of(worker.pid), (state, children_of(worker.pid))
    kill_worker(worker)
    worker.wait(timeout=10)
    killed_at = timezone.now()

    dead = row(execution_id)
    assert dead["status"] == ExecutionStatus.RUNNING
    assert 0 < dead["done_messages"] < dead["total_messages"]
    # The dead worker's lease is still on the run, and still runs for a while.
    assert dead["lease_owner"] == state["lease_owner"]
    assert dead["lease_expires_at"] > killed_at - timedelta(seconds=1)
    assert dead["lease_expires_at"] <= killed_at + timedelta(seconds=LEASE_SECONDS)
    # While it runs, the watchdog leaves the run alone and nobody else may take it.
    assert watchdog.watch() == {"started": 0, "resumed": 0}
    assert claims.acquire(execution_id, "intruder") is None
    return dead


def resume_after_the_lease(execution_id: int, dead: dict, workers) -> None:
    """Wait out the dead worker's lease, let the watchdog hand the run over, and let a
    second worker finish it."""
    wait = (dead["lease_expires_at"] - timezone.now()).total_seconds() + 0.1
    if wait > 0:
        time.sleep(wait)
    # Nothing moved after the kill: the dead worker's horse is gone too.
    assert row(execution_id)["done_messages"] == dead["done_messages"]
    assert watchdog.watch() == {"started": 0, "resumed": 1}
    assert django_rq.get_queue(runner.QUEUE).count == 1
    second = workers("--burst")
    second.wait(timeout=60)
    assert second.returncode == 0, workers.logs()


def test_a_killed_worker_hands_a_batch_deletion_to_another_with_the_same_result(
    workers, people, org
):
    start = timezone.now() - timedelta(days=30)
    in_scope = [
        fill(org.hangzhou, [people.staff], n, start=start) for n in (1100, 700, 900, 450)
    ] + [fill(org.warehouse, [people.warehouse_staff], 400, start=start)]
    elsewhere = fill(org.shenzhen, [people.staff2], 300, start=start)
    request = approved(people.staff, [people.manager], RequestMethod.BATCH, [org.hangzhou])
    # After approval: beyond the high-water mark, so not in the frozen scope.
    late = {late_message(in_scope[0], people.staff), late_message(in_scope[3], people.staff)}

    frozen = frozen_scope(request)
    stored_before = set(Message.all_rows.values_list("pk", flat=True))
    assert len(frozen) == 3550 == request.preview["messages"]
    assert frozen.isdisjoint(late) and stored_before - frozen >= late

    execution = schedule.start_request(request.pk, now=request.scheduled_for)
    assert execution is not None
    django_rq.get_queue(runner.QUEUE).enqueue(runner.run_execution_job, execution.pk)
    first = workers()
    dead = kill_mid_run(execution.pk, first, workers.logs, phase="")
    # What the dead worker committed is exactly what is hidden: no half batch.
    assert len(frozen - set(Message.objects.values_list("pk", flat=True))) == dead["done_messages"]

    resume_after_the_lease(execution.pk, dead, workers)

    done = Execution.objects.get(pk=execution.pk)
    assert done.status == ExecutionStatus.COMPLETED, (done.last_error, workers.logs())
    assert done.resumes >= 1
    assert done.done_messages == len(frozen) == done.total_messages
    assert done.held_messages == done.vanished_messages == 0
    stored = set(Message.all_rows.values_list("pk", flat=True))
    visible = set(Message.objects.values_list("pk", flat=True))
    # Binned, not deleted: every row is still stored; exactly the frozen scope is hidden.
    assert stored == stored_before
    assert stored - visible == frozen
    assert late <= visible
    assert set(Message.all_rows.filter(conversation=elsewhere).values_list("pk", flat=True)) <= (
        visible
    )
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED
    resumed = timeline(request, EventType.REQUEST_RESUMED).get()
    assert resumed.details["done"] == dead["done_messages"]
    assert timeline(request, EventType.REQUEST_EXECUTED).get().details["deleted_messages"] == len(
        frozen
    )
    report = verify_chain()
    assert report.intact, report


def test_a_server_wipe_killed_while_purging_removes_exactly_its_scope(workers, people, org):
    start = timezone.now() - timedelta(days=30)
    whole = [fill(org.hangzhou, [people.staff], n, start=start) for n in (1000, 800, 600)]
    whole.append(fill(org.warehouse, [people.warehouse_staff], 500, start=start))
    keeps_records = fill(org.hangzhou, [people.staff], 650, start=start)
    elsewhere = fill(org.shenzhen, [people.staff2], 300, start=start)
    request = approved(
        people.manager,
        [people.director, people.security, people.admin],
        RequestMethod.SERVER,
        [org.hangzhou],
    )
    # After approval: outside the scope, so this conversation keeps its key and the row.
    late = late_message(keeps_records, people.staff)

    frozen = frozen_scope(request)
    stored_before = set(Message.all_rows.values_list("pk", flat=True))
    assert len(frozen) == 3550 == request.preview["messages"]
    keys_before = dict(DataKey.objects.values_list("conversation_id", "wrapped_key"))
    assert all(keys_before.values())

    execution = schedule.start_request(request.pk, now=request.scheduled_for)
    assert execution is not None
    django_rq.get_queue(runner.QUEUE).enqueue(runner.run_execution_job, execution.pk)
    first = workers()
    dead = kill_mid_run(execution.pk, first, workers.logs, phase=shred.PURGE)
    # The keys went first; the rows the dead worker committed are gone, the rest hidden.
    gone = stored_before - set(Message.all_rows.values_list("pk", flat=True))
    assert gone <= frozen and len(gone) == dead["done_messages"]
    assert frozen.isdisjoint(Message.objects.values_list("pk", flat=True))
    assert set(
        DataKey.objects.filter(wrapped_key__isnull=True).values_list("conversation_id", flat=True)
    ) == {c.pk for c in whole}

    resume_after_the_lease(execution.pk, dead, workers)

    done = Execution.objects.get(pk=execution.pk)
    assert done.status == ExecutionStatus.COMPLETED, (done.last_error, workers.logs())
    assert done.resumes >= 1
    assert done.done_messages == len(frozen) == done.total_messages
    assert done.held_messages == done.vanished_messages == 0
    assert done.keys_destroyed == len(whole)
    # Exactly the frozen rows are gone; everything else is stored and visible.
    stored = set(Message.all_rows.values_list("pk", flat=True))
    assert stored == stored_before - frozen
    assert set(Message.objects.values_list("pk", flat=True)) == stored
    assert late in stored
    assert Message.all_rows.filter(conversation=elsewhere).count() == 300
    keys = dict(DataKey.objects.values_list("conversation_id", "wrapped_key"))
    assert {c for c, k in keys.items() if k is None} == {c.pk for c in whole}
    for conversation in [keeps_records, elsewhere]:
        assert bytes(keys[conversation.pk]) == bytes(keys_before[conversation.pk])
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED
    resumed = timeline(request, EventType.REQUEST_RESUMED).get()
    assert resumed.details["phase"] == shred.PURGE
    assert resumed.details["done"] == dead["done_messages"]
    assert timeline(request, EventType.KEYS_DESTROYED_BY_WIPE).count() == 1
    assert timeline(request, EventType.REQUEST_EXECUTED).get().details["deleted_messages"] == len(
        frozen
    )
    report = verify_chain()
    assert report.intact, report
