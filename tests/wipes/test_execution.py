"""Running approved requests: exactly the frozen scope, holds re-checked, resumable runs,
the recycle bin, purges that leave nothing behind, and keys-first server-side wipes."""

from __future__ import annotations

from datetime import timedelta

import django_rq
import pytest
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.utils import timezone

from audit.events import EventType
from audit.models import AuditEvent, ComplianceReview, ReviewKind
from retention.errors import Conflict
from retention.exports.build import build_export_job
from retention.exports.service import do_request_export
from retention.governance.decisions import do_approve_step, do_cancel_request
from retention.governance.protection import do_place_hold, do_release_hold
from retention.jobs.lease import LeaseLost
from retention.models import (
    Attachment,
    DataKey,
    DeletionRequest,
    Execution,
    ExecutionKind,
    ExecutionStatus,
    HoldKind,
    Message,
    Notification,
    RequestMethod,
    RequestStatus,
    Tombstone,
    TombstoneState,
)
from retention.models.roles import Role
from retention.records.crypto import ConversationCipher, DecryptionError, KeyDestroyedError
from retention.records.holds import holds_covering
from retention.records.store import NewAttachment, NewMessage, add_messages, read_body
from retention.wipes import claims, move, recycle, runner, schedule, shred, watchdog
from retention.wipes.recycle import bin_requests_for, do_restore_from_bin
from tests.conftest import file_request, make_chat, make_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_batches(settings):
    # Tiny batches so that even a handful of messages takes several batches and chunks.
    settings.QINGLI_WIPE_BATCH_MESSAGES = 1  # moves take 4, purges 1
    settings.QINGLI_WIPE_LEASE_SECONDS = 60


@pytest.fixture
def store(people, org):
    """Hangzhou: a customer chat of 7 messages (one with an attachment) and a group chat
    of 4; the warehouse below it: 2; Shenzhen (elsewhere): 3."""
    customer = make_chat(
        org.hangzhou, [people.staff], [f"客户消息{i}" for i in range(7)], kind="customer"
    )
    group = make_chat(org.hangzhou, [people.staff], [f"店内群{i}" for i in range(4)])
    warehouse = make_chat(org.warehouse, [people.warehouse_staff], ["盘点1", "盘点2"])
    elsewhere = make_chat(org.shenzhen, [people.staff2], ["深圳1", "深圳2", "深圳3"])
    add_messages(
        customer,
        [
            NewMessage(
                sender=people.staff,
                sender_name="staff",
                sent_at=timezone.now() - timedelta(hours=1),
                body="发票见附件",
                attachments=(NewAttachment("发票.pdf", b"%PDF-1.4 invoice", "application/pdf"),),
            )
        ],
    )
    return {"customer": customer, "group": group, "warehouse": warehouse, "elsewhere": elsewhere}


def visible_ids(*conversations) -> set[int]:
    return set(Message.objects.filter(conversation__in=conversations).values_list("pk", flat=True))


def stored_ids(*conversations) -> set[int]:
    return set(Message.all_rows.filter(conversation__in=conversations).values_list("pk", flat=True))


def approved(requester, approvers, method, **scope):
    request = file_request(requester, method, reason="清理旧记录", **scope)
    for approver in approvers:
        request = do_approve_step(request, acting_user=approver, verified_second_factor=True)
    assert request.status == RequestStatus.APPROVED
    return request


def run(request) -> Execution:
    """Start the request at its scheduled time and work the run to its end."""
    started = schedule.start_request(request.pk, now=request.scheduled_for)
    assert started is not None
    return runner.run_execution(started.pk)


def timeline(request, event_type):
    return AuditEvent.objects.filter(
        event_type=event_type, target_type="retention.deletionrequest", target_id=str(request.pk)
    )


def test_a_batch_run_bins_exactly_the_frozen_scope(people, org, store, small_batches):
    in_scope = visible_ids(store["customer"], store["group"], store["warehouse"])
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    # Arrives after approval: not in the frozen scope, so it must survive the run.
    (late,) = add_messages(
        store["group"],
        [
            NewMessage(
                sender=people.staff, sender_name="staff", sent_at=timezone.now(), body="新消息"
            )
        ],
    )
    everything_before = stored_ids(*store.values())

    done = run(request)

    assert done.status == ExecutionStatus.COMPLETED
    assert done.batches > 3  # chunked: the customer chat alone is 8 messages
    assert visible_ids(store["customer"], store["group"], store["warehouse"]) == {late.pk}
    assert visible_ids(store["elsewhere"]) == stored_ids(store["elsewhere"])
    # Binned, not removed: every row is still stored until the purge.
    assert stored_ids(*store.values()) == everything_before
    assert done.done_messages == len(in_scope) == request.preview["messages"]
    assert done.vanished_messages == done.held_messages == 0
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED
    assert timeline(request, EventType.REQUEST_STARTED).count() == 1
    executed = timeline(request, EventType.REQUEST_EXECUTED).get()
    assert executed.details["deleted_messages"] == len(in_scope)
    # The conversation list no longer dates the customer chat by its binned messages.
    store["customer"].refresh_from_db()
    assert store["customer"].last_message_at is None


def test_running_a_finished_run_again_changes_nothing(people, org, store, small_batches):
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    done = run(request)
    tombstones = list(Tombstone.objects.values_list("pk", "state"))
    again = runner.run_execution(done.pk)
    assert again.batches == done.batches
    assert list(Tombstone.objects.values_list("pk", "state")) == tombstones
    assert schedule.start_request(request.pk, now=request.scheduled_for) is None


def test_a_hold_placed_after_approval_is_honoured_at_run_time(people, org, store, small_batches):
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    do_place_hold(
        acting_user=people.security,
        kind=HoldKind.LEGAL,
        reason="仲裁案件",
        conversations=[store["customer"]],
        departments=[],
        verified_second_factor=True,
    )
    held_before = visible_ids(store["customer"])

    done = run(request)

    assert visible_ids(store["customer"]) == held_before
    assert visible_ids(store["group"], store["warehouse"]) == set()
    assert done.held_messages == len(held_before)
    assert done.held_conversations == 1
    assert done.done_messages + done.held_messages == done.total_messages
    skipped = timeline(request, EventType.HELD_RECORDS_SKIPPED).get()
    assert skipped.details["conversation_ids"] == [store["customer"].pk]
    assert skipped.details["holds"][0]["reason"] == "仲裁案件"


def test_a_cancelled_request_never_runs(people, org, store):
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    do_cancel_request(request, acting_user=people.staff)
    assert schedule.start_request(request.pk, now=request.scheduled_for) is None
    assert not Execution.objects.exists()
    assert not Tombstone.objects.exists()


def test_a_run_started_early_waits_for_its_time(people, org, store):
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    assert (
        schedule.start_request(request.pk, now=request.scheduled_for - timedelta(hours=1)) is None
    )
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    assert not Tombstone.objects.exists()


def test_a_killed_run_resumes_from_its_checkpoint_with_the_same_result(
    people, org, store, small_batches, monkeypatch
):
    in_scope = visible_ids(store["customer"], store["group"], store["warehouse"])
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    started = schedule.start_request(request.pk, now=request.scheduled_for)

    real_step, calls = runner._step, []

    def dies_after_two_batches(execution, worker):
        if len(calls) == 2:
            raise KeyboardInterrupt  # like SIGKILL: no cleanup, no failure recorded
        calls.append(worker)
        return real_step(execution, worker)

    monkeypatch.setattr(runner, "_step", dies_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        runner.run_execution(started.pk, worker="first")
    monkeypatch.setattr(runner, "_step", real_step)

    interrupted = Execution.objects.get(pk=started.pk)
    assert interrupted.batches == 2 and interrupted.lease_owner == "first"
    # While the lease runs, nobody else may take the run.
    assert runner.run_execution(started.pk, worker="second").batches == 2
    Execution.objects.filter(pk=started.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    finished = runner.run_execution(started.pk, worker="second")

    assert finished.status == ExecutionStatus.COMPLETED
    assert finished.resumes == 1
    assert finished.done_messages == len(in_scope)
    assert visible_ids(store["customer"], store["group"], store["warehouse"]) == set()
    resumed = timeline(request, EventType.REQUEST_RESUMED).get()
    assert resumed.details["done"] == interrupted.done_messages


def test_a_worker_that_lost_its_lease_commits_nothing(people, org, store, small_batches):
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    started = schedule.start_request(request.pk, now=request.scheduled_for)
    first = claims.acquire(started.pk, "first")
    Execution.objects.filter(pk=started.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert claims.acquire(started.pk, "second") is not None
    with pytest.raises(LeaseLost):
        runner._step(first, "first")
    assert not Tombstone.objects.exists()


def test_a_failed_run_backs_off_and_nobody_takes_it_before_the_deadline(
    people, org, store, monkeypatch
):
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    real_batch = move.move_batch

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(move, "move_batch", broken)
    started = schedule.start_request(request.pk, now=request.scheduled_for)
    failed = runner.run_execution(started.pk, worker="first")
    assert failed.status == ExecutionStatus.RUNNING and failed.lease_owner == ""
    assert failed.attempts == 1 and failed.resumes == 0 and "disk full" in failed.last_error
    backoff = failed.lease_expires_at - timezone.now()
    assert timedelta(seconds=8) < backoff <= timedelta(seconds=10)
    # Backing off: no worker takes it before the deadline, not even the one that failed.
    assert claims.acquire(started.pk, "second") is None
    assert claims.acquire(started.pk, "first") is None
    assert Execution.objects.get(pk=started.pk).attempts == 1

    monkeypatch.setattr(move, "move_batch", real_batch)
    Execution.objects.filter(pk=started.pk).update(lease_expires_at=timezone.now())
    taken = claims.acquire(started.pk, "second")
    assert taken.attempts == 2 and taken.resumes == 1 and taken.started_at == failed.started_at
    # A worker takes its own lease again (a doubled job): another resume.
    again = claims.acquire(started.pk, "second")
    assert again.attempts == 3 and again.resumes == 2
    assert claims.acquire(started.pk, "first") is None
    assert timeline(request, EventType.REQUEST_RESUMED).count() == 2
    done = runner.run_execution(started.pk, worker="second")
    assert done.status == ExecutionStatus.COMPLETED and done.attempts == 4


def test_a_run_that_keeps_failing_ends_failed_and_says_why(
    people, org, store, settings, monkeypatch
):
    settings.QINGLI_WIPE_MAX_ATTEMPTS = 2
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(move, "move_batch", broken)
    first = run(request)
    assert first.status == ExecutionStatus.RUNNING and "disk full" in first.last_error
    Execution.objects.filter(pk=first.pk).update(lease_expires_at=timezone.now())
    second = runner.run_execution(first.pk)

    assert second.status == ExecutionStatus.FAILED
    request.refresh_from_db()
    assert request.status == RequestStatus.FAILED
    assert timeline(request, EventType.REQUEST_FAILED).get().details["reason"].endswith("disk full")
    told = set(
        Notification.objects.filter(request=request, verb="failed").values_list(
            "recipient__username", flat=True
        )
    )
    assert {"staff", "admin", "admin_b"} <= told
    assert visible_ids(store["customer"])  # nothing was taken


@pytest.fixture
def wipes_queue():
    """The real ``wipes`` queue (in-memory Redis without REDIS_URL, Redis with it),
    emptied around the test."""
    queue = django_rq.get_queue(runner.QUEUE)
    queue.empty()
    yield queue
    queue.empty()


def queued(queue) -> list[tuple[object, tuple]]:
    return [(job.func, job.args) for job in queue.jobs]


def test_the_watchdog_starts_due_requests_and_hands_over_silent_runs(
    people, org, store, wipes_queue, django_capture_on_commit_callbacks
):
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    wipes_queue.empty()  # the approval's own timed start

    def watch(now):
        # Jobs go to the queue when the transaction commits.
        with django_capture_on_commit_callbacks(execute=True):
            return watchdog.watch(now=now)

    assert watch(request.scheduled_for - timedelta(minutes=1)) == {"started": 0, "resumed": 0}
    assert queued(wipes_queue) == []
    assert watch(request.scheduled_for) == {"started": 1, "resumed": 0}
    assert queued(wipes_queue) == [(schedule.start_request_job, (request.pk,))]
    wipes_queue.empty()
    started = schedule.start_request(request.pk, now=request.scheduled_for)
    claims.acquire(started.pk, "gone")
    assert watch(timezone.now() + timedelta(seconds=30)) == {"started": 0, "resumed": 0}
    assert watch(timezone.now() + timedelta(seconds=61)) == {"started": 0, "resumed": 1}
    assert queued(wipes_queue) == [(runner.run_execution_job, (started.pk,))]


# --- recycle bin, restore and purge --------------------------------------------------------


def test_a_manager_restores_a_whole_request_and_the_records_come_back(people, org, store):
    before = visible_ids(store["customer"], store["group"], store["warehouse"])
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    run(request)
    (listed,) = bin_requests_for(people.manager)
    assert listed.bin_messages == len(before)
    assert list(bin_requests_for(people.manager2)) == []  # another region's manager
    assert list(bin_requests_for(people.staff)) == []

    with pytest.raises(PermissionDenied):
        do_restore_from_bin(request, acting_user=people.auditor, verified_second_factor=True)
    with pytest.raises(PermissionDenied):
        do_restore_from_bin(request, acting_user=people.manager2, verified_second_factor=True)
    outcome = do_restore_from_bin(request, acting_user=people.manager, verified_second_factor=True)

    assert outcome["messages"] == len(before)
    assert visible_ids(store["customer"], store["group"], store["warehouse"]) == before
    assert set(Tombstone.objects.values_list("state", flat=True)) == {TombstoneState.RESTORED}
    assert timeline(request, EventType.RECYCLE_RESTORED).get().actor == people.manager
    with pytest.raises(Conflict):
        do_restore_from_bin(request, acting_user=people.manager, verified_second_factor=True)


def test_chosen_conversations_are_restored_alone(people, org, store):
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    run(request)
    do_restore_from_bin(
        request,
        acting_user=people.manager,
        conversation_ids=[store["group"].pk],
        verified_second_factor=True,
    )
    assert visible_ids(store["group"]) == stored_ids(store["group"])
    assert visible_ids(store["customer"], store["warehouse"]) == set()


def test_purge_after_the_window_leaves_no_row_no_file_and_no_key(people, org, store, small_batches):
    files = list(
        Attachment.objects.filter(conversation=store["customer"]).values_list("file", flat=True)
    )
    assert files and all(default_storage.exists(f) for f in files)
    outside = stored_ids(store["elsewhere"])
    keys_before = dict(DataKey.objects.values_list("conversation_id", "wrapped_key"))
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    run(request)

    assert runner.start_due_purges(now=timezone.now() + timedelta(days=6)) == []
    (purge_id,) = runner.start_due_purges(now=timezone.now() + timedelta(days=8))
    purge = runner.run_execution(purge_id)

    assert purge.status == ExecutionStatus.COMPLETED
    assert stored_ids(store["customer"], store["group"], store["warehouse"]) == set()
    assert not Attachment.objects.filter(conversation=store["customer"]).exists()
    assert not any(default_storage.exists(f) for f in files)
    assert stored_ids(store["elsewhere"]) == outside
    # Emptied conversations lose their key (a backup of their rows reads nothing) and get
    # a fresh one for what comes next; the one outside the scope keeps its own.
    keys_after = dict(DataKey.objects.values_list("conversation_id", "wrapped_key"))
    changed = {c for c, key in keys_after.items() if bytes(key) != bytes(keys_before[c])}
    assert changed == {store["customer"].pk, store["group"].pk, store["warehouse"].pk}
    assert purge.keys_destroyed == 3
    later = add_messages(
        store["customer"],
        [NewMessage(sender=None, sender_name="客户", sent_at=timezone.now(), body="又来了")],
    )
    cipher = ConversationCipher.for_conversation(store["customer"])
    assert read_body(cipher, Message.objects.get(pk=later[0].pk)) == "又来了"
    assert ComplianceReview.objects.get(request=request).kind == ReviewKind.RECYCLE_PURGE
    assert set(Tombstone.objects.values_list("state", flat=True)) == {TombstoneState.PURGED}
    assert timeline(request, EventType.RECYCLE_PURGED).count() == 1


def test_purge_skips_what_a_hold_covers_now(people, org, store):
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    run(request)
    do_place_hold(
        acting_user=people.security,
        kind=HoldKind.LEGAL,
        reason="调查",
        conversations=[store["group"]],
        departments=[],
        verified_second_factor=True,
    )
    (purge_id,) = runner.start_due_purges(now=timezone.now() + timedelta(days=8))
    runner.run_execution(purge_id)
    # Held: its rows are still stored, still in the bin, and its key still works.
    assert stored_ids(store["group"])
    assert set(
        Tombstone.objects.filter(conversation=store["group"]).values_list("state", flat=True)
    ) == {TombstoneState.BINNED}
    assert DataKey.objects.get(conversation=store["group"]).wrapped_key is not None
    assert stored_ids(store["customer"]) == set()


def test_a_hold_placed_after_a_purge_started_keeps_the_attachment_files_too(people, org, store):
    files = list(
        Attachment.objects.filter(conversation=store["customer"]).values_list("file", flat=True)
    )
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    run(request)
    (purge_id,) = runner.start_due_purges(now=timezone.now() + timedelta(days=8))
    # The purge is marked and queued; the hold lands before its first batch.
    hold = do_place_hold(
        acting_user=people.security,
        kind=HoldKind.LEGAL,
        reason="发票纠纷",
        conversations=[store["customer"]],
        departments=[],
        verified_second_factor=True,
    )
    purge = runner.run_execution(purge_id)
    assert purge.held_conversations == 1
    assert all(default_storage.exists(f) for f in files)
    assert Attachment.objects.filter(conversation=store["customer"]).count() == len(files)
    assert stored_ids(store["group"]) == set()
    assert [h.pk for h in holds_covering([store["customer"].pk])] == [hold.pk]


# --- server-side wipes ----------------------------------------------------------------------


def test_a_server_wipe_destroys_keys_first_then_the_rows(people, org, store, small_batches):
    request = approved(
        people.manager,
        [people.director, people.security, people.admin],
        RequestMethod.SERVER,
        departments=[org.hangzhou.pk],
    )
    # A message after filing: the group chat keeps records outside the scope, so its key
    # must survive (those records stay readable) and only its scoped rows go.
    (late,) = add_messages(
        store["group"],
        [NewMessage(sender=people.staff, sender_name="staff", sent_at=timezone.now(), body="之后")],
    )
    started = schedule.start_request(request.pk, now=request.scheduled_for)
    worker = "w"
    claims.acquire(started.pk, worker)
    while Execution.objects.get(pk=started.pk).phase == shred.SHRED:
        runner._step(Execution.objects.get(pk=started.pk), worker)

    shredded = Execution.objects.get(pk=started.pk)
    assert shredded.unreadable_at is not None
    # Unreadable before a single row was deleted.
    assert stored_ids(store["customer"]) and shredded.done_messages == 0
    customer_row = Message.all_rows.filter(conversation=store["customer"]).first()
    with pytest.raises(KeyDestroyedError):
        read_body(ConversationCipher.for_conversation(store["customer"]), customer_row)
    # Then the scope is hidden from every read, before any row is removed.
    while Execution.objects.get(pk=started.pk).phase == shred.HIDE:
        runner._step(Execution.objects.get(pk=started.pk), worker)
    assert visible_ids(store["customer"], store["group"], store["warehouse"]) == {late.pk}
    assert stored_ids(store["customer"]) and Execution.objects.get(pk=started.pk).done_messages == 0

    done = runner.run_execution(started.pk, worker=worker)
    assert done.status == ExecutionStatus.COMPLETED
    assert stored_ids(store["customer"], store["warehouse"]) == set()
    assert stored_ids(store["group"]) == {late.pk}
    cipher = ConversationCipher.for_conversation(store["group"])
    assert read_body(cipher, Message.objects.get(pk=late.pk)) == "之后"
    assert done.keys_destroyed == 2
    assert ComplianceReview.objects.get(request=request).kind == ReviewKind.SERVER_WIPE
    assert timeline(request, EventType.KEYS_DESTROYED_BY_WIPE).exists()


def test_a_wipe_hides_conversations_that_keep_records_a_few_per_batch(
    people, org, store, monkeypatch
):
    """Conversations with records outside the scope need their last message recomputed:
    a hiding batch takes only so many, and each ends with the right last message."""
    monkeypatch.setattr(shred, "PARTIAL_CONVERSATIONS_PER_HIDE", 1)
    request = approved(
        people.manager,
        [people.director, people.security, people.admin],
        RequestMethod.SERVER,
        departments=[org.hangzhou.pk],
    )
    sent = timezone.now().replace(microsecond=0)
    late = {
        name: add_messages(
            store[name],
            [NewMessage(sender=people.staff, sender_name="staff", sent_at=sent, body="之后")],
        )[0]
        for name in ("customer", "group")
    }
    started = schedule.start_request(request.pk, now=request.scheduled_for)
    claims.acquire(started.pk, "w")
    hide_batches = 0
    while Execution.objects.get(pk=started.pk).phase != shred.PURGE:
        execution = Execution.objects.get(pk=started.pk)
        hide_batches += execution.phase == shred.HIDE
        runner._step(execution, "w")

    # Two partial conversations, one per batch, and a last look that finds none left.
    assert hide_batches == 3
    assert visible_ids(store["customer"], store["group"], store["warehouse"]) == {
        m.pk for m in late.values()
    }
    for name in ("customer", "group"):
        store[name].refresh_from_db()
        assert store[name].last_message_at == sent
    store["warehouse"].refresh_from_db()
    assert store["warehouse"].last_message_at is None
    assert Execution.objects.get(pk=started.pk).done_conversations == 3


def test_a_wiped_conversation_takes_no_new_messages(people, org, store):
    request = approved(
        people.manager,
        [people.director, people.security, people.admin],
        RequestMethod.SERVER,
        departments=[org.hangzhou.pk],
    )
    run(request)
    with pytest.raises(KeyDestroyedError):
        add_messages(
            store["customer"],
            [NewMessage(sender=None, sender_name="客户", sent_at=timezone.now(), body="还在吗")],
        )


def test_a_destroyed_key_leaves_no_decryptable_body(people, org, store):
    rows = list(Message.all_rows.filter(conversation=store["warehouse"]))
    old_key = bytes(DataKey.objects.get(conversation=store["warehouse"]).wrapped_key)
    request = approved(
        people.manager,
        [people.director, people.security, people.admin],
        RequestMethod.SERVER,
        departments=[org.warehouse.pk],
    )
    run(request)
    assert DataKey.objects.get(conversation=store["warehouse"]).wrapped_key is None
    assert not Message.all_rows.filter(pk__in=[r.pk for r in rows]).exists()
    # Even a copy of the rows (a backup) reads nothing without the key: the old wrapped
    # key is gone from the database, and no other key opens the bodies.
    other = ConversationCipher.for_conversation(store["elsewhere"])
    for row in rows:
        with pytest.raises(DecryptionError):
            other.decrypt(row.body)
    assert old_key not in {
        bytes(k or b"") for k in DataKey.objects.values_list("wrapped_key", flat=True)
    }


def test_rows_a_hold_kept_during_a_wipes_purge_go_once_it_is_released(
    people, org, store, small_batches
):
    request = approved(
        people.manager,
        [people.director, people.security, people.admin],
        RequestMethod.SERVER,
        departments=[org.hangzhou.pk],
    )
    in_scope = stored_ids(store["group"])
    add_messages(
        store["group"],
        [NewMessage(sender=people.staff, sender_name="staff", sent_at=timezone.now(), body="后")],
    )
    started = schedule.start_request(request.pk, now=request.scheduled_for)
    claims.acquire(started.pk, "w")
    while Execution.objects.get(pk=started.pk).phase in (shred.SHRED, shred.HIDE):
        runner._step(Execution.objects.get(pk=started.pk), "w")
    hold = do_place_hold(
        acting_user=people.security,
        kind=HoldKind.LEGAL,
        reason="诉讼",
        conversations=[store["group"]],
        departments=[],
        verified_second_factor=True,
    )
    done = runner.run_execution(started.pk, worker="w")
    assert done.status == ExecutionStatus.COMPLETED
    assert in_scope <= stored_ids(store["group"])  # kept while held (hidden, key alive)
    assert runner.start_due_purges() == []  # still held: nothing to start

    do_release_hold(hold, acting_user=people.security, reason="结案", verified_second_factor=True)
    (purge_id,) = runner.start_due_purges()
    assert runner.run_execution(purge_id).status == ExecutionStatus.COMPLETED
    assert not (in_scope & stored_ids(store["group"]))
    assert len(stored_ids(store["group"])) == 1


def test_high_sensitivity_records_wait_for_an_evidence_export(
    people, org, store, wipes_queue, django_capture_on_commit_callbacks
):
    add_messages(
        store["group"],
        [
            NewMessage(
                sender=people.staff,
                sender_name="staff",
                sent_at=timezone.now() - timedelta(hours=2),
                body="客户手机 13812345678",
            )
        ],
    )
    request = approved(
        people.staff,
        [people.manager, people.security],
        RequestMethod.BATCH,
        departments=[org.hangzhou.pk],
    )
    assert request.preview["high_sensitivity"] == 1
    for _attempt in range(2):
        assert schedule.start_request(request.pk, now=request.scheduled_for) is None
    assert timeline(request, EventType.REQUEST_AWAITS_EVIDENCE).count() == 1
    assert Notification.objects.filter(request=request, verb="awaits_evidence").count() == 1
    assert not Tombstone.objects.exists()

    export = do_request_export(request, fmt="jsonl", acting_user=people.staff)
    # The export job starts the waiting request at once (past its time, as here).
    DeletionRequest.objects.filter(pk=request.pk).update(scheduled_for=timezone.now())
    wipes_queue.empty()
    with django_capture_on_commit_callbacks(execute=True):
        assert build_export_job(export.pk) == "ready"
    assert queued(wipes_queue) == [(schedule.start_request_job, (request.pk,))]
    assert run(request).status == ExecutionStatus.COMPLETED


def test_the_run_card_says_a_request_waits_for_its_evidence(client, people, org, store):
    add_messages(
        store["group"],
        [
            NewMessage(
                sender=people.staff,
                sender_name="staff",
                sent_at=timezone.now() - timedelta(hours=2),
                body="身份证 110101199003074514",
            )
        ],
    )
    request = approved(
        people.staff,
        [people.manager, people.security],
        RequestMethod.BATCH,
        departments=[org.hangzhou.pk],
    )
    client.force_login(people.staff)
    page = client.get(f"/requests/{request.pk}/").content.decode()
    assert 'data-testid="awaiting-evidence"' in page


def test_a_manager_who_is_also_security_restores_only_in_the_subtree_they_manage(
    people, org, store
):
    south_security = make_member("south_sec", org.south, Role.MANAGER, Role.SECURITY)
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    run(request)
    with pytest.raises(PermissionDenied):
        do_restore_from_bin(request, acting_user=south_security, verified_second_factor=True)
    assert visible_ids(store["customer"], store["group"], store["warehouse"]) == set()
    assert not timeline(request, EventType.RECYCLE_RESTORED).exists()


def test_a_deletion_still_running_cannot_be_restored_yet(people, org, store):
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    started = schedule.start_request(request.pk, now=request.scheduled_for)
    claims.acquire(started.pk, "w")
    runner._step(Execution.objects.get(pk=started.pk), "w")  # one batch binned
    with pytest.raises(Conflict):
        do_restore_from_bin(request, acting_user=people.manager, verified_second_factor=True)
    assert set(Tombstone.objects.values_list("state", flat=True)) == {TombstoneState.BINNED}


@pytest.fixture
def binned(people, org, store):
    """The Hangzhou store's batch deletion, run: its records are in the recycle bin."""
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    run(request)
    return request


@pytest.fixture
def restore_in_batches_of_one(monkeypatch):
    monkeypatch.setattr(move, "RESTORE_BATCH", 1)
    monkeypatch.setattr(recycle, "RESTORE_BATCH", 1)


def test_a_large_restore_runs_in_short_batches_and_no_purge_starts_meanwhile(
    people, org, store, restore_in_batches_of_one, binned
):
    request = binned
    hidden = stored_ids(store["customer"], store["group"], store["warehouse"])
    Tombstone.objects.filter(request=request).update(purge_after=timezone.now())  # due

    details = do_restore_from_bin(request, acting_user=people.manager, verified_second_factor=True)
    assert details["as_job"] and details["messages"] == len(hidden)
    restore = Execution.objects.get(request=request, kind=ExecutionKind.RESTORE)
    # Until the run ends: still hidden, no purge starts, no second restore.
    assert visible_ids(store["customer"], store["group"], store["warehouse"]) == set()
    assert runner.start_due_purges(now=timezone.now() + timedelta(days=365)) == []
    with pytest.raises(Conflict):
        do_restore_from_bin(request, acting_user=people.manager, verified_second_factor=True)

    done = runner.run_execution(restore.pk)

    assert done.status == ExecutionStatus.COMPLETED and done.batches == 3
    assert done.done_messages == len(hidden) and done.longest_batch_ms < 250
    assert visible_ids(store["customer"], store["group"], store["warehouse"]) == hidden
    restored = Tombstone.objects.filter(request=request)
    assert {(t.state, t.restored_by_id) for t in restored} == {
        (TombstoneState.RESTORED, people.manager.pk)
    }
    store["customer"].refresh_from_db()
    assert store["customer"].last_message_at is not None
    assert runner.start_due_purges(now=timezone.now() + timedelta(days=365)) == []
    assert timeline(request, EventType.RECYCLE_RESTORED).get().details["as_job"] is True


def test_a_large_restore_cut_short_resumes_where_it_stopped(
    people, org, store, restore_in_batches_of_one, binned
):
    request = binned
    hidden = stored_ids(store["customer"], store["group"], store["warehouse"])
    do_restore_from_bin(request, acting_user=people.manager, verified_second_factor=True)
    restore = Execution.objects.get(request=request, kind=ExecutionKind.RESTORE)
    claims.acquire(restore.pk, "killed")
    runner._step(Execution.objects.get(pk=restore.pk), "killed")  # one batch, then SIGKILL
    Execution.objects.filter(pk=restore.pk).update(lease_expires_at=timezone.now())

    done = runner.run_execution(restore.pk, worker="next")

    assert done.status == ExecutionStatus.COMPLETED and done.resumes == 1
    assert done.done_messages == len(hidden)  # nothing counted twice
    assert visible_ids(store["customer"], store["group"], store["warehouse"]) == hidden


def test_a_failed_restore_run_keeps_the_records_from_any_purge(
    people, org, store, restore_in_batches_of_one, binned
):
    """The audit log says they were restored: a restore run that gave up leaves them in
    the bin, and no purge takes them until a restore is asked again and ends."""
    request = binned
    stored = stored_ids(store["customer"], store["group"], store["warehouse"])
    Tombstone.objects.filter(request=request).update(purge_after=timezone.now())
    do_restore_from_bin(request, acting_user=people.manager, verified_second_factor=True)
    restore = Execution.objects.get(request=request, kind=ExecutionKind.RESTORE)
    claims.acquire(restore.pk, "w")
    runner._step(Execution.objects.get(pk=restore.pk), "w")
    claims.LEASE.fail(Execution.objects.get(pk=restore.pk), "the worker kept dying")

    assert runner.start_due_purges(now=timezone.now() + timedelta(days=365)) == []
    assert stored_ids(store["customer"], store["group"], store["warehouse"]) == stored
    # Asked again, the restore ends, and nothing is left for a purge.
    do_restore_from_bin(request, acting_user=people.manager, verified_second_factor=True)
    again = Execution.objects.filter(request=request, kind=ExecutionKind.RESTORE).latest("pk")
    assert runner.run_execution(again.pk).status == ExecutionStatus.COMPLETED
    assert visible_ids(store["customer"], store["group"], store["warehouse"]) == stored


def test_nothing_is_restored_while_a_purge_runs(people, org, store, binned):
    request = binned
    (purge,) = runner.start_due_purges(now=timezone.now() + timedelta(days=365))
    with pytest.raises(Conflict):
        do_restore_from_bin(request, acting_user=people.manager, verified_second_factor=True)
    assert not Execution.objects.filter(kind=ExecutionKind.RESTORE).exists()
    assert runner.run_execution(purge).status == ExecutionStatus.COMPLETED


def test_a_restore_run_counts_a_conversation_split_over_batches_once(
    people, org, store, small_batches, restore_in_batches_of_one, binned
):
    request = binned
    assert Tombstone.objects.filter(request=request).count() > 3  # chunked conversations
    total = sum(Tombstone.objects.filter(request=request).values_list("messages", flat=True))
    do_restore_from_bin(request, acting_user=people.manager, verified_second_factor=True)
    restore = Execution.objects.get(request=request, kind=ExecutionKind.RESTORE)
    done = runner.run_execution(restore.pk)
    assert (done.done_conversations, done.done_messages) == (3, total)
