"""Concurrent decisions on one deletion request, on PostgreSQL with real row locks.

Each contender runs in its own thread with its own database connection. Every race runs
in several rounds, in two flavours:

- *gated*: the main thread holds the lock the contenders will queue on (the request's
  row, or the audit chain's advisory lock for filings) until every contender is seen
  waiting on a lock in ``pg_stat_activity``; so they truly overlap, and when the
  contenders are let in one after another, the order in which they reach the lock is
  fixed too;
- *free*: a ``threading.Barrier`` releases them together and the scheduler decides.

SQLite has no row locks and serialises writers, so these tests only mean something on
PostgreSQL; elsewhere they skip, and under CI=true they fail instead.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection, connections, transaction

from audit.chain import verify_chain
from audit.events import EventType
from audit.log import _CHAIN_LOCK_KEY
from audit.models import AuditEvent
from retention.errors import Conflict
from retention.governance.decisions import do_approve_step, do_cancel_request, do_reject_request
from retention.governance.filing import do_file_request
from retention.governance.scope import resolve_scope
from retention.models import (
    DeletionRequest,
    Member,
    Notification,
    RequestMethod,
    RequestStatus,
    StepStatus,
)
from retention.models.roles import Role
from retention.notifications.notify import APPROVED, REJECTED
from tests.conftest import make_chat, make_member, sign_in_streak

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 5
# How long a contender may take to reach the lock before the round is declared broken.
WAIT_SECONDS = 15

# (outcome, value): ("ok", return value) or ("error", the exception raised)
Outcome = tuple[str, object]


@pytest.fixture(autouse=True)
def _postgresql_only():
    if connection.vendor != "postgresql":
        message = (
            "races need PostgreSQL row locks: set DATABASE_URL=postgres://… "
            f"(this run uses {connection.vendor})"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def _empty_notification_queue():
    """Committed approvals enqueue e-mail jobs; leave the queue as we found it."""
    import django_rq

    yield
    django_rq.get_queue("default").empty()


# --- the race harness -------------------------------------------------------------------


@dataclass
class Contender:
    """``prepare`` runs in the contender's thread before the start signal (open the
    connection, load objects) and returns the action to race."""

    name: str
    prepare: Callable[[], Callable[[], object]]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _waiting_on_a_lock(pids: set[int]) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid = ANY(%s)",
            [list(pids)],
        )
        return {row[0] for row in cursor.fetchall()}


def _wait_until_waiting(pids: set[int], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while _waiting_on_a_lock(pids) != pids:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never queued on the lock: the race did not happen")
        time.sleep(0.005)


def race(
    contenders: list[Contender],
    *,
    gate: Callable[[], None] | None = None,
    in_order: bool = False,
) -> dict[str, Outcome]:
    """Run the contenders at the same moment; returns each one's outcome by name.

    With ``gate``, the main thread runs ``gate()`` inside a transaction (taking a lock),
    lets the contenders go, waits until all of them wait on a lock, then commits. With
    ``in_order`` too, each contender is let go only once the previous one waits, so they
    reach the lock in list order.
    """
    ready = threading.Barrier(len(contenders) + 1)
    go = {c.name: threading.Event() for c in contenders}
    pids: dict[str, int] = {}
    outcomes: dict[str, Outcome] = {}

    def run(contender: Contender) -> None:
        try:
            action = contender.prepare()
            pids[contender.name] = _backend_pid()
            ready.wait(timeout=WAIT_SECONDS)
            go[contender.name].wait(timeout=WAIT_SECONDS)
            outcomes[contender.name] = ("ok", action())
        except Exception as exc:  # noqa: BLE001 - every outcome is judged by the test
            outcomes[contender.name] = ("error", exc)
        finally:
            connections.close_all()  # this thread's connections only

    threads = [threading.Thread(target=run, args=(c,), name=c.name) for c in contenders]
    for thread in threads:
        thread.start()
    ready.wait(timeout=WAIT_SECONDS)

    @contextmanager
    def held():
        if gate is None:
            yield
            return
        with transaction.atomic():
            gate()
            yield

    with held():
        released = set()
        for contender in contenders:
            go[contender.name].set()
            released.add(pids[contender.name])
            if gate is not None and in_order:
                _wait_until_waiting({pids[contender.name]}, contender.name)
        if gate is not None:
            _wait_until_waiting(released, "every contender")
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), f"{thread.name} hangs (a deadlock?)"
    return outcomes


def lock_request_row(pk: int) -> Callable[[], None]:
    return lambda: DeletionRequest.objects.select_for_update().get(pk=pk)


def lock_audit_chain() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CHAIN_LOCK_KEY])


def approve(request_pk: int, member_pk: int) -> Callable[[], Callable[[], object]]:
    def prepare():
        request = DeletionRequest.objects.get(pk=request_pk)
        member = Member.objects.get(pk=member_pk)
        _ = member.roles  # loaded before the start, like a signed-in user's
        return lambda: do_approve_step(
            request, acting_user=member, comment="同意", verified_second_factor=True
        )

    return prepare


def reject(request_pk: int, member_pk: int) -> Callable[[], Callable[[], object]]:
    def prepare():
        request = DeletionRequest.objects.get(pk=request_pk)
        member = Member.objects.get(pk=member_pk)
        _ = member.roles
        return lambda: do_reject_request(
            request, acting_user=member, reason="还在处理售后", verified_second_factor=True
        )

    return prepare


def cancel(request_pk: int, member_pk: int) -> Callable[[], Callable[[], object]]:
    def prepare():
        request = DeletionRequest.objects.get(pk=request_pk)
        member = Member.objects.get(pk=member_pk)
        _ = member.roles
        return lambda: do_cancel_request(request, acting_user=member)

    return prepare


def succeeded(outcome: Outcome) -> bool:
    return outcome[0] == "ok"


def assert_refused(outcome: Outcome, *allowed: type[Exception]) -> None:
    kind, value = outcome
    assert kind == "error", f"expected a refusal, got success: {value!r}"
    assert isinstance(value, allowed), f"unexpected {type(value).__name__}: {value}"


# --- the company ------------------------------------------------------------------------


@pytest.fixture
def people(cast, org):
    """The cast plus a second manager of the East region and a second admin (an admin's
    own wipe needs another admin to approve it), everyone on a sign-in streak."""
    cast.manager_b = make_member("manager_b", org.east, Role.MANAGER)
    cast.admin_b = make_member("admin_b", org.company, Role.ADMIN)
    sign_in_streak(vars(cast).values())
    make_chat(org.hangzhou, [cast.staff], ["亲，在的", "订单已发货"])
    make_chat(org.warehouse, [cast.warehouse_staff], ["今天盘点"])
    return cast


def file_store_batch(people, org) -> DeletionRequest:
    scope = resolve_scope(
        RequestMethod.BATCH, {"departments": [org.hangzhou.pk]}, requester=people.staff
    )
    request, created = do_file_request(requester=people.staff, scope=scope, reason="清理旧记录")
    assert created
    (step,) = request.steps.all()
    # Both East managers (and the director above them) may decide this one step.
    assert step.role == Role.MANAGER and step.department == org.east
    return request


def events(request: DeletionRequest, event_type: EventType):
    return AuditEvent.objects.filter(
        event_type=event_type,
        target_type="retention.deletionrequest",
        target_id=str(request.pk),
    ).order_by("id")


def assert_chain_intact() -> None:
    report = verify_chain()
    assert report.intact, report


# --- approve vs approve -----------------------------------------------------------------


def test_two_managers_approve_the_same_step_at_once_and_exactly_one_counts(people, org):
    for round_no in range(ROUNDS):
        request = file_store_batch(people, org)
        gate = lock_request_row(request.pk) if round_no % 2 == 0 else None
        outcomes = race(
            [
                Contender("manager", approve(request.pk, people.manager.pk)),
                Contender("manager_b", approve(request.pk, people.manager_b.pk)),
            ],
            gate=gate,
        )
        winners = [name for name, outcome in outcomes.items() if succeeded(outcome)]
        assert len(winners) == 1, (round_no, outcomes)
        (loser,) = set(outcomes) - set(winners)
        # The loser waited for the winner's lock and then found nothing pending.
        assert_refused(outcomes[loser], Conflict, PermissionDenied)

        request.refresh_from_db()
        winner = getattr(people, winners[0])
        assert request.status == RequestStatus.APPROVED
        assert request.scheduled_for is not None
        (step,) = request.steps.all()
        assert (step.status, step.approver_id) == (StepStatus.APPROVED, winner.pk)
        (approved_step,) = events(request, EventType.REQUEST_STEP_APPROVED)
        assert approved_step.actor_id == winner.pk and approved_step.details["step"] == 1
        (approved,) = events(request, EventType.REQUEST_APPROVED)
        assert approved.details["approvers"] == [winner.username]
        assert request.notifications.filter(verb=APPROVED).count() == 1
    assert_chain_intact()


def test_two_managers_race_for_the_first_step_of_a_server_wipe(people, org):
    """The loser queues behind the winner, then meets the security step: not theirs."""
    for round_no in range(ROUNDS):
        scope = resolve_scope(
            RequestMethod.SERVER, {"departments": [org.hangzhou.pk]}, requester=people.admin
        )
        # Staff cannot file a wipe; an admin can, and its first step goes to the managers
        # of the nearest level above the store that has any: East, where both sit.
        request, _created = do_file_request(
            requester=people.admin, scope=scope, reason="门店关闭，清除全部记录"
        )
        steps = list(request.steps.values_list("role", "department", "status"))
        assert steps == [
            (Role.MANAGER, org.east.pk, StepStatus.PENDING),
            (Role.SECURITY, None, StepStatus.WAITING),
            (Role.ADMIN, None, StepStatus.WAITING),
        ]
        outcomes = race(
            [
                Contender("manager", approve(request.pk, people.manager.pk)),
                Contender("manager_b", approve(request.pk, people.manager_b.pk)),
            ],
            gate=lock_request_row(request.pk) if round_no % 2 == 0 else None,
        )
        winners = [name for name, outcome in outcomes.items() if succeeded(outcome)]
        assert len(winners) == 1, (round_no, outcomes)
        (loser,) = set(outcomes) - set(winners)
        assert_refused(outcomes[loser], PermissionDenied)

        request.refresh_from_db()
        assert request.status == RequestStatus.PENDING
        first, second, third = request.steps.order_by("order")
        assert (first.status, first.approver_id) == (
            StepStatus.APPROVED,
            getattr(people, winners[0]).pk,
        )
        assert (second.status, second.approver_id) == (StepStatus.PENDING, None)
        assert (third.status, third.approver_id) == (StepStatus.WAITING, None)
        assert events(request, EventType.REQUEST_STEP_APPROVED).count() == 1
        assert not events(request, EventType.REQUEST_APPROVED).exists()
    assert_chain_intact()


def test_one_approver_double_clicking_a_two_role_chain_decides_one_step_only(people, org):
    """Someone holding security and admin approves step 2 twice at once (two tabs): the
    second click must not also take step 3 — nobody approves two steps of a request."""
    both = make_member("sec_admin", org.company, Role.SECURITY, Role.ADMIN)
    for round_no in range(ROUNDS):
        scope = resolve_scope(
            RequestMethod.SERVER, {"departments": [org.hangzhou.pk]}, requester=people.admin
        )
        request, _ = do_file_request(requester=people.admin, scope=scope, reason="门店关闭")
        do_approve_step(request, acting_user=people.manager, verified_second_factor=True)
        outcomes = race(
            [
                Contender("tab1", approve(request.pk, both.pk)),
                Contender("tab2", approve(request.pk, both.pk)),
            ],
            gate=lock_request_row(request.pk) if round_no % 2 == 0 else None,
        )
        assert sum(succeeded(o) for o in outcomes.values()) == 1, (round_no, outcomes)
        for outcome in outcomes.values():
            if not succeeded(outcome):
                assert_refused(outcome, PermissionDenied)
        steps = list(request.steps.order_by("order").values_list("status", "approver"))
        assert steps == [
            (StepStatus.APPROVED, people.manager.pk),
            (StepStatus.APPROVED, both.pk),
            (StepStatus.PENDING, None),
        ]
        assert events(request, EventType.REQUEST_STEP_APPROVED).count() == 2
    assert_chain_intact()


# --- approve vs reject / cancel ---------------------------------------------------------


def test_approve_and_reject_at_once_exactly_one_decides(people, org):
    for round_no in range(ROUNDS):
        request = file_store_batch(people, org)
        order = ["approve", "reject"] if round_no % 2 == 0 else ["reject", "approve"]
        contenders = {
            "approve": Contender("approve", approve(request.pk, people.manager.pk)),
            "reject": Contender("reject", reject(request.pk, people.manager_b.pk)),
        }
        gated = round_no < ROUNDS - 1  # the last round is free
        outcomes = race(
            [contenders[name] for name in order],
            gate=lock_request_row(request.pk) if gated else None,
            in_order=gated,
        )
        winners = [name for name, outcome in outcomes.items() if succeeded(outcome)]
        assert len(winners) == 1, (round_no, outcomes)
        if gated:
            assert winners == [order[0]]  # the first in the lock's queue decides
        (loser,) = set(outcomes) - set(winners)
        assert_refused(outcomes[loser], Conflict)

        request.refresh_from_db()
        (step,) = request.steps.all()
        approved = events(request, EventType.REQUEST_APPROVED).count()
        rejected = events(request, EventType.REQUEST_REJECTED).count()
        if winners == ["approve"]:
            assert request.status == RequestStatus.APPROVED
            assert (step.status, step.approver_id) == (StepStatus.APPROVED, people.manager.pk)
            assert (approved, rejected) == (1, 0)
            assert not request.notifications.filter(verb=REJECTED).exists()
        else:
            assert request.status == RequestStatus.REJECTED
            assert (step.status, step.approver_id) == (StepStatus.REJECTED, people.manager_b.pk)
            assert (approved, rejected) == (0, 1)
            assert request.scheduled_for is None
            assert not request.notifications.filter(verb=APPROVED).exists()
    assert_chain_intact()


def test_approve_and_cancel_at_once_end_in_a_consistent_state(people, org):
    """A request can be cancelled until it runs, approved or not. So if the approval
    reaches the lock first, both succeed (approved, then cancelled); if the cancel does,
    the approval meets a cancelled request and changes nothing."""
    seen = set()
    for round_no in range(ROUNDS + 1):
        request = file_store_batch(people, org)
        order = ["approve", "cancel"] if round_no % 2 == 0 else ["cancel", "approve"]
        contenders = {
            "approve": Contender("approve", approve(request.pk, people.manager.pk)),
            "cancel": Contender("cancel", cancel(request.pk, people.staff.pk)),
        }
        gated = round_no < ROUNDS - 1
        outcomes = race(
            [contenders[name] for name in order],
            gate=lock_request_row(request.pk) if gated else None,
            in_order=gated,
        )
        request.refresh_from_db()
        (step,) = request.steps.all()
        (cancelled,) = events(request, EventType.REQUEST_CANCELLED)
        step_events = list(events(request, EventType.REQUEST_STEP_APPROVED))
        assert succeeded(outcomes["cancel"]), outcomes
        assert request.status == RequestStatus.CANCELLED
        if succeeded(outcomes["approve"]):
            first = "approve"
            (approved,) = events(request, EventType.REQUEST_APPROVED)
            assert len(step_events) == 1 and step_events[0].id < approved.id < cancelled.id
            assert cancelled.details == {"was": RequestStatus.APPROVED}
            assert (step.status, step.approver_id) == (StepStatus.APPROVED, people.manager.pk)
        else:
            first = "cancel"
            assert_refused(outcomes["approve"], Conflict)
            assert step_events == []
            assert not events(request, EventType.REQUEST_APPROVED).exists()
            assert cancelled.details == {"was": RequestStatus.PENDING}
            assert (step.status, step.approver_id) == (StepStatus.CANCELLED, None)
            assert request.scheduled_for is None
            assert not Notification.objects.filter(request=request, verb=APPROVED).exists()
        if gated:
            assert first == order[0], (round_no, outcomes)
        seen.add(first)
    assert seen == {"approve", "cancel"}
    assert_chain_intact()


def test_reject_and_cancel_at_once_exactly_one_ends_the_request(people, org):
    for round_no in range(ROUNDS):
        request = file_store_batch(people, org)
        order = ["reject", "cancel"] if round_no % 2 == 0 else ["cancel", "reject"]
        contenders = {
            "reject": Contender("reject", reject(request.pk, people.manager.pk)),
            "cancel": Contender("cancel", cancel(request.pk, people.staff.pk)),
        }
        gated = round_no < ROUNDS - 1
        outcomes = race(
            [contenders[name] for name in order],
            gate=lock_request_row(request.pk) if gated else None,
            in_order=gated,
        )
        winners = [name for name, outcome in outcomes.items() if succeeded(outcome)]
        assert len(winners) == 1, (round_no, outcomes)
        if gated:
            assert winners == [order[0]]
        (loser,) = set(outcomes) - set(winners)
        assert_refused(outcomes[loser], Conflict)
        request.refresh_from_db()
        (step,) = request.steps.all()
        expected = {
            "reject": (RequestStatus.REJECTED, StepStatus.REJECTED, 1, 0),
            "cancel": (RequestStatus.CANCELLED, StepStatus.CANCELLED, 0, 1),
        }[winners[0]]
        assert (
            request.status,
            step.status,
            events(request, EventType.REQUEST_REJECTED).count(),
            events(request, EventType.REQUEST_CANCELLED).count(),
        ) == expected
    assert_chain_intact()


# --- filing twice with one Idempotency-Key ----------------------------------------------


def test_two_filings_with_one_idempotency_key_make_one_request(people, org):
    def filing(key: str) -> Callable[[], Callable[[], object]]:
        def prepare():
            requester = Member.objects.get(pk=people.staff.pk)
            scope = resolve_scope(
                RequestMethod.BATCH, {"departments": [org.hangzhou.pk]}, requester=requester
            )
            return lambda: do_file_request(
                requester=requester, scope=scope, reason="清理旧记录", idempotency_key=key
            )

        return prepare

    for round_no in range(ROUNDS):
        key = f"race-{round_no}"
        # Gated: both filings get past the "seen this key?" check and insert; the one
        # that inserted second waits for the first to commit and then hits the unique
        # constraint, which is the path that must hand back the first request.
        outcomes = race(
            [Contender("first", filing(key)), Contender("second", filing(key))],
            gate=lock_audit_chain if round_no % 2 == 0 else None,
        )
        assert all(succeeded(o) for o in outcomes.values()), outcomes
        results = [o[1] for o in outcomes.values()]
        assert sorted(created for _request, created in results) == [False, True]
        assert len({request.pk for request, _created in results}) == 1
        (request,) = DeletionRequest.objects.filter(idempotency_key=key)
        assert request.steps.count() == 1
        assert request.targets.count() == 2
        assert events(request, EventType.REQUEST_FILED).count() == 1
    assert DeletionRequest.objects.count() == ROUNDS
    assert AuditEvent.objects.filter(event_type=EventType.REQUEST_FILED).count() == ROUNDS
    assert_chain_intact()
