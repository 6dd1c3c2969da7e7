"""Runs of approved requests over random data: exactly the frozen scope, whatever happens.

Each example builds a small random organisation (extra departments hung anywhere in the
tree), conversations with random numbers of messages spread over ten days, and files a
batch deletion or a server-side wipe over random departments (with or without their
sub-departments, with or without a date range), which a fixed cast approves. Then, before
the run: holds on random conversations or departments (some released again) and new
messages in random conversations. The run works in random batch sizes and may be
interrupted like a killed worker — between batches, or inside a batch before it commits —
after which the lease is expired and another worker carries on, with perhaps a new hold
placed in between.

The oracle computes the frozen scope from the data alone (the messages with
``id <= max_message_id`` in the scope's conversations and date range, all of which are
visible when the run starts) and checks:

- the run completes; executed ∪ skipped = frozen scope, executed ∩ held-at-run = ∅, and
  whatever was skipped lies in conversations the run recorded as held;
- nothing outside the frozen scope is hidden or deleted;
- ``done_messages == |executed|`` and ``held_messages == |skipped|``;
- batch deletions only hide rows; server-side wipes delete exactly the executed rows, and
  destroy the keys of exactly the conversations wiped whole (in scope, not held when the
  keys went, no stored record outside the scope);
- running the finished run again changes nothing, and the audit chain verifies.

The people and their sign-in streaks are fixed (eligibility rules are not the subject
here); the data, the scope, the holds and the interruptions are random. Each example runs
in a savepoint that is rolled back afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from audit.chain import verify_chain
from audit.events import EventType
from audit.models import AuditEvent
from retention.governance.decisions import do_approve_step
from retention.governance.filing import do_file_request
from retention.governance.protection import do_place_hold, do_release_hold
from retention.governance.scope import resolve_scope, start_of_day
from retention.models import (
    DataKey,
    Department,
    Execution,
    ExecutionStatus,
    HoldKind,
    Message,
    RequestConversation,
    RequestMethod,
    RequestStatus,
)
from retention.records.store import NewMessage, add_messages, create_conversation
from retention.wipes import claims, runner, schedule
from retention.wipes.outcome import outcome_of

pytestmark = pytest.mark.django_db

BATCH, SERVER = RequestMethod.BATCH.value, RequestMethod.SERVER.value
DAYS = 10
MINUTES = DAYS * 24 * 60


class Killed(BaseException):
    """The worker dies here: like SIGKILL, nothing catches it and nothing is recorded."""


@dataclass(frozen=True)
class Scenario:
    # Parent pick for each extra department (among the regions, stores and earlier extras).
    extras: tuple[int, ...]
    # (in the east region's subtree, department pick, minutes after the start of each message)
    chats: tuple[tuple[bool, int, tuple[int, ...]], ...]
    method: str
    # Department picks in the east region's subtree (the requester manages it): (among
    # the departments with a chat of their own, pick).
    scope: tuple[tuple[bool, int], ...]
    include_subdepartments: bool
    # Batch only: group chats of the east subtree named on their own.
    named: tuple[int, ...]
    # Days before today: sent on or after / before the start of that day.
    sent_after_days: int | None
    sent_before_days: int | None
    # After approval: ("chat" | "department", pick, released again before the run)
    holds: tuple[tuple[str, int, bool], ...]
    # After approval: (chat pick, minutes) — beyond the high-water mark.
    late: tuple[tuple[int, int], ...]
    batch: int
    # ("between" batches | "inside" a batch before it commits, after how many)
    interruption: tuple[str, int] | None
    # Placed while the run is interrupted.
    mid_hold: tuple[str, int] | None


sent = st.integers(0, MINUTES - 1) | st.integers(0, DAYS - 1).map(lambda d: d * 1440)
hold_target = st.sampled_from(["chat", "department"])
# Mostly interrupted, mostly early enough to land inside a run of a few batches.
interruption = st.tuples(
    st.sampled_from(["between", "inside", "between", "inside", None]),
    st.integers(0, 3) | st.integers(0, 12),
).map(lambda t: None if t[0] is None else t)


def chat(min_messages: int):
    return st.tuples(
        st.sampled_from([True, True, True, False]),
        st.integers(0, 60),
        st.lists(sent, min_size=min_messages, max_size=12).map(tuple),
    )


scenarios = st.builds(
    Scenario,
    extras=st.lists(st.integers(0, 60), max_size=3).map(tuple),
    # At least one message somewhere; 0–12 in each other chat.
    chats=st.tuples(chat(1), st.lists(chat(0), max_size=5)).map(lambda t: (t[0], *t[1])),
    method=st.sampled_from([BATCH, SERVER]),
    scope=st.lists(st.tuples(st.booleans(), st.integers(0, 60)), min_size=1, max_size=2).map(tuple),
    include_subdepartments=st.booleans(),
    named=st.lists(st.integers(0, 60), max_size=1).map(tuple),
    sent_after_days=st.none() | st.integers(1, DAYS),
    sent_before_days=st.none() | st.integers(0, DAYS - 1),
    holds=st.lists(st.tuples(hold_target, st.integers(0, 60), st.booleans()), max_size=2).map(
        tuple
    ),
    late=st.lists(st.tuples(st.integers(0, 60), sent), max_size=3).map(tuple),
    batch=st.integers(1, 7),
    interruption=interruption,
    mid_hold=st.none() | st.tuples(hold_target, st.integers(0, 60)),
)

# Hand-picked cases that always run (hypothesis tries them first). The first: a hold
# placed while a server-side wipe purges keeps the rest of a conversation's rows; they
# are held records, to be counted as held (not as "gone before the run").
SERVER_WIPE_HELD_WHILE_PURGING = Scenario(
    extras=(),
    chats=((True, 1, tuple(range(0, 1200, 100))), (True, 1, (30, 90))),
    method=SERVER,
    scope=((False, 1),),
    include_subdepartments=True,
    named=(),
    sent_after_days=None,
    sent_before_days=None,
    holds=(),
    late=(),
    batch=1,
    # One message a batch: the sixth step is well inside the purge of the first chat
    # (after two or four steps that destroy keys and hide the scope), which a hold then
    # covers.
    interruption=("between", 6),
    mid_hold=("chat", 0),
)
BATCH_HELD_MID_CONVERSATION = Scenario(
    extras=(0,),
    chats=((True, 3, tuple(range(0, 600, 60))), (True, 1, (10,)), (False, 4, (5, 6))),
    method=BATCH,
    scope=((False, 0),),
    include_subdepartments=True,
    named=(),
    sent_after_days=DAYS,
    sent_before_days=None,
    holds=(("department", 4, False),),
    late=((0, 30), (2, 3)),
    batch=3,
    interruption=("inside", 2),
    mid_hold=("chat", 0),
)


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(scenario=SERVER_WIPE_HELD_WHILE_PURGING)
@example(scenario=BATCH_HELD_MID_CONVERSATION)
@given(scenario=scenarios)
def test_a_run_takes_exactly_its_frozen_scope(people, org, scenario):
    atomic = transaction.atomic()
    atomic.__enter__()
    try:
        ScenarioRun(people, org, scenario).check()
    finally:
        transaction.set_rollback(True)
        atomic.__exit__(None, None, None)


class ScenarioRun:
    """One example: builds the scenario's data, files and runs the request as it says,
    and checks the run against the frozen scope computed from the data alone."""

    def __init__(self, people, org, scenario: Scenario) -> None:
        self.people, self.org, self.s = people, org, scenario
        self.today = timezone.localdate()
        self.start = start_of_day(self.today - timedelta(days=DAYS))
        # message id -> (conversation id, sent_at)
        self.messages: dict[int, tuple[int, object]] = {}
        # (conversation ids, department paths, placed while the run was interrupted)
        self.holds: list[tuple[set[int], list[str], bool]] = []

    # --- the data -------------------------------------------------------------------------

    def build(self) -> None:
        org = self.org
        self.all_departments = [
            org.company,
            org.east,
            org.hangzhou,
            org.warehouse,
            org.south,
            org.shenzhen,
        ]
        self.east = [org.east, org.hangzhou, org.warehouse]
        parents = [org.east, org.hangzhou, org.warehouse, org.south, org.shenzhen]
        for i, pick in enumerate(self.s.extras):
            department = Department.objects.create(
                name=f"extra {i}", parent=parents[pick % len(parents)]
            )
            parents.append(department)
            self.all_departments.append(department)
            if department.path.startswith(org.east.path):
                self.east.append(department)
        self.chats = []
        for i, (in_east, pick, minutes) in enumerate(self.s.chats):
            pool = self.east if in_east else self.all_departments
            chat = create_conversation(
                kind="group", title=f"chat {i}", department=pool[pick % len(pool)]
            )
            self.chats.append(chat)
            self.add(chat, minutes)
        self.department_of = {c.pk: c.department for c in self.chats}

    def add(self, chat, minutes) -> None:
        if not minutes:
            return
        sender = self.people.staff
        rows = add_messages(
            chat,
            [
                NewMessage(
                    sender=sender,
                    sender_name=sender.username,
                    sent_at=self.start + timedelta(minutes=m),
                    body="例行记录",
                )
                for m in minutes
            ],
        )
        for row in rows:
            self.messages[row.pk] = (chat.pk, row.sent_at)

    def place_hold(self, target: str, pick: int, *, during_run: bool):
        if target == "chat":
            chats, departments = [self.chats[pick % len(self.chats)]], []
        else:
            chats, departments = [], [self.all_departments[pick % len(self.all_departments)]]
        hold = do_place_hold(
            acting_user=self.people.security,
            kind=HoldKind.LEGAL,
            reason="诉讼保全",
            conversations=chats,
            departments=departments,
            verified_second_factor=True,
        )
        self.holds.append(({c.pk for c in chats}, [d.path for d in departments], during_run))
        return hold

    def held(self, *, including_during_run: bool) -> set[int]:
        """Conversations covered by an active hold (of those placed before the run only,
        or of all)."""
        held = set()
        for chats, paths, during_run in self.holds:
            if during_run and not including_during_run:
                continue
            for chat in self.chats:
                if chat.pk in chats or any(
                    self.department_of[chat.pk].path.startswith(p) for p in paths
                ):
                    held.add(chat.pk)
        return held

    # --- the scope, as the oracle sees it ---------------------------------------------------

    def scope_data(self) -> dict:
        s = self.s
        with_chats = [d for d in self.east if any(c.department == d for c in self.chats)]
        departments = set()
        for among_chats, pick in s.scope:
            pool = with_chats if among_chats and with_chats else self.east
            departments.add(pool[pick % len(pool)].pk)
        data = {
            "departments": sorted(departments),
            "include_subdepartments": s.include_subdepartments or s.method == SERVER,
        }
        east_chats = [c for c in self.chats if c.department in self.east]
        if s.method == BATCH and s.named and east_chats:
            data["conversations"] = sorted({east_chats[p % len(east_chats)].pk for p in s.named})
        after = before = None
        if s.sent_after_days is not None:
            after = self.today - timedelta(days=s.sent_after_days)
        if s.sent_before_days is not None:
            before = self.today - timedelta(days=s.sent_before_days)
        if after and before and after >= before:
            before = None
        if after:
            data["sent_after"] = after
        if before:
            data["sent_before"] = before
        self.after, self.before = start_of_day(after), start_of_day(before)
        return data

    def in_range(self, sent_at) -> bool:
        return (self.after is None or sent_at >= self.after) and (
            self.before is None or sent_at < self.before
        )

    def named_chats(self, data: dict) -> set[int]:
        chosen = [d for d in self.all_departments if d.pk in data["departments"]]
        named = set(data.get("conversations", []))
        for chat in self.chats:
            department = self.department_of[chat.pk]
            if data["include_subdepartments"]:
                if any(department.path.startswith(d.path) for d in chosen):
                    named.add(chat.pk)
            elif department in chosen:
                named.add(chat.pk)
        return named

    # --- the example ------------------------------------------------------------------------

    def check(self) -> None:
        s = self.s
        self.build()
        data = self.scope_data()
        named = self.named_chats(data)
        expected_targets: dict[int, int] = {}
        for chat_id, sent_at in self.messages.values():
            if chat_id in named and self.in_range(sent_at):
                expected_targets[chat_id] = expected_targets.get(chat_id, 0) + 1

        requester = self.people.manager
        if s.method == BATCH:
            approvers = [self.people.director]
        else:
            approvers = [self.people.director, self.people.security, self.people.admin]
        try:
            request, _created = do_file_request(
                requester=requester,
                scope=resolve_scope(s.method, data, requester),
                reason="清理旧记录",
            )
        except ValidationError as refused:
            assert not expected_targets, (refused, expected_targets)
            event("nothing in scope: refused")
            return
        targets = dict(
            RequestConversation.objects.filter(request=request).values_list(
                "conversation_id", "messages"
            )
        )
        assert targets == expected_targets
        for approver in approvers:
            request = do_approve_step(request, acting_user=approver, verified_second_factor=True)
        assert request.status == RequestStatus.APPROVED
        high = request.max_message_id
        frozen = {
            m
            for m, (chat_id, sent_at) in self.messages.items()
            if chat_id in targets and m <= high and self.in_range(sent_at)
        }
        assert len(frozen) == sum(targets.values()) == request.preview["messages"]

        # After approval: holds (some released again) and new messages.
        for target, pick, released in s.holds:
            hold = self.place_hold(target, pick, during_run=False)
            if released:
                do_release_hold(
                    hold,
                    acting_user=self.people.security,
                    reason="结案",
                    verified_second_factor=True,
                )
                self.holds.pop()
        for pick, minutes in s.late:
            self.add(self.chats[pick % len(self.chats)], (minutes,))
        held_before_run = self.held(including_during_run=False) & set(targets)

        before = set(Message.all_rows.values_list("pk", flat=True))
        assert before == set(self.messages)
        assert frozen <= set(Message.objects.values_list("pk", flat=True))
        outside_scope = {
            chat_id
            for m, (chat_id, sent_at) in self.messages.items()
            if m > high or not self.in_range(sent_at)
        }

        with override_settings(
            QINGLI_WIPE_BATCH_MESSAGES=s.batch,
            QINGLI_WIPE_LEASE_SECONDS=60,
            QINGLI_WIPE_BATCH_PAUSE_MS=0,
        ):
            started = schedule.start_request(request.pk, now=request.scheduled_for)
            assert started is not None
            keys_went_before_mid_hold = self.run(started.pk)
        event(f"{s.method}: {'interrupted' if self.interrupted else 'straight through'}")

        done = Execution.objects.get(pk=started.pk)
        assert done.status == ExecutionStatus.COMPLETED, done.last_error
        request.refresh_from_db()
        assert request.status == RequestStatus.COMPLETED
        stored = set(Message.all_rows.values_list("pk", flat=True))
        visible = set(Message.objects.values_list("pk", flat=True))
        if s.method == BATCH:
            assert stored == before, "a batch deletion only hides rows"
            executed = before - visible
        else:
            executed = before - stored
            # Rows still stored but hidden: binned before a hold came, kept for it.
            assert stored - visible <= frozen
        assert executed <= frozen, ("outside the frozen scope", sorted(executed - frozen))
        assert before - frozen <= visible, "records outside the frozen scope must stay visible"
        skipped = frozen - executed
        executed_in = {self.messages[m][0] for m in executed}
        skipped_in = {self.messages[m][0] for m in skipped}
        recorded_held = set(done.held_conversation_ids)
        held_now = self.held(including_during_run=True) & set(targets)

        assert not executed_in & held_before_run, "a hold placed before the run was ignored"
        assert held_before_run <= recorded_held <= held_now
        assert skipped_in <= recorded_held
        if not self.mid_hold_placed:
            assert skipped == {m for m in frozen if self.messages[m][0] in held_before_run}
        if skipped:
            event("some records held")
        assert done.done_messages == len(executed), (done.done_messages, len(executed))
        assert done.held_messages == len(skipped), (
            "held_messages",
            done.held_messages,
            len(skipped),
            outcome(done),
        )
        assert done.vanished_messages == 0, outcome(done)
        assert done.total_messages == len(frozen)

        if s.method == SERVER:
            held_when_keys_went = held_before_run | (
                set() if keys_went_before_mid_hold else held_now
            )
            wiped_whole = set(targets) - held_when_keys_went - outside_scope
            destroyed = set(
                DataKey.objects.filter(
                    conversation__in=self.chats, wrapped_key__isnull=True
                ).values_list("conversation_id", flat=True)
            )
            assert destroyed == wiped_whole
            assert done.keys_destroyed == len(wiped_whole)
            if wiped_whole:
                event("server: keys destroyed")

        # A finished run, run again, changes nothing.
        again = runner.run_execution(done.pk, worker="third")
        assert again.batches == done.batches
        assert set(Message.all_rows.values_list("pk", flat=True)) == stored
        assert set(Message.objects.values_list("pk", flat=True)) == visible
        assert timeline(request, EventType.REQUEST_EXECUTED).count() == 1
        assert timeline(request, EventType.REQUEST_RESUMED).count() == (
            1 if self.interrupted else 0
        )
        report = verify_chain()
        assert report.intact, report

    def run(self, execution_id: int) -> bool:
        """Work the run to its end, perhaps killing its first worker on the way. Returns
        whether a server wipe's keys went before the hold placed during the interruption."""
        self.interrupted = self.mid_hold_placed = False
        if self.s.interruption is None:
            runner.run_execution(execution_id, worker="first")
            return True
        where, after = self.s.interruption
        owner, name = (runner, "_step") if where == "between" else (claims, "checkpoint")
        real, calls = getattr(owner, name), []

        def dies(*args):
            if len(calls) == after:
                raise Killed
            calls.append(1)
            return real(*args)

        with mock.patch.object(owner, name, dies):
            try:
                runner.run_execution(execution_id, worker="first")
            except Killed:
                self.interrupted = True
        if not self.interrupted:
            return True  # the run was over before the kill
        event(f"killed {where} batches")
        dead = Execution.objects.get(pk=execution_id)
        assert dead.status == ExecutionStatus.RUNNING and dead.lease_owner == "first"
        # While the dead worker's lease runs, nobody else may take the run.
        assert runner.run_execution(execution_id, worker="second").batches == dead.batches
        if self.s.mid_hold is not None:
            self.place_hold(*self.s.mid_hold, during_run=True)
            self.mid_hold_placed = True
        Execution.objects.filter(pk=execution_id).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )
        finished = runner.run_execution(execution_id, worker="second")
        assert finished.resumes == 1
        assert finished.lease_owner == ""
        # Destroying keys takes one batch here (a handful of conversations): the first.
        return dead.batches > 0


def outcome(execution: Execution) -> dict:
    return outcome_of(execution)


def timeline(request, event_type):
    return AuditEvent.objects.filter(
        event_type=event_type, target_type="retention.deletionrequest", target_id=str(request.pk)
    )
