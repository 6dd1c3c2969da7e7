"""The paths ``bench_wipe`` times, each through the real services and a real worker: the
evidence export, move to the recycle bin, restore, purge, a retention rule's run and the
server-side wipe; and the floor they are compared with, one plain SQL ``DELETE`` of the
same rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from django.contrib.auth.models import Group
from django.core.management.base import CommandError
from django.utils import timezone

from retention.bench.probes import PgServer
from retention.bench.wipe_seeding import warm
from retention.bench.wipe_worker import BurstWorker, Result, enqueue_start, run_finished
from retention.exports.service import do_request_export
from retention.models import (
    DeletionRequest,
    Execution,
    ExecutionKind,
    ExportStatus,
    Member,
    Message,
    RetentionRule,
    RuleAction,
)
from retention.models.roles import Role
from retention.rules.actions import do_approve_rule, do_create_rule, do_preview_rule, do_propose
from retention.rules.runs import run_due_rules
from retention.wipes.recycle import do_restore_from_bin
from retention.wipes.runner import start_due_purges


def move(worker: BurstWorker, key: str, label: str, request: DeletionRequest) -> Result:
    timed = worker.timed(
        label,
        lambda: enqueue_start(request),
        lambda: run_finished(request, ExecutionKind.MOVE),
    )
    return worker.run_result(key, label, request, ExecutionKind.MOVE, timed)


def restore(worker: BurstWorker, request: DeletionRequest, *, admin: Member) -> Result:
    """``do_restore_from_bin`` of the whole request: inline up to ``RESTORE_BATCH``
    ranges, else a run of batches on the wipes queue."""
    outcome: dict = {}

    def start():
        outcome.update(
            do_restore_from_bin(request, acting_user=admin, verified_second_factor=False)
        )

    def done() -> bool:
        return not outcome["as_job"] or run_finished(request, ExecutionKind.RESTORE)

    timed = worker.timed("restore", start, done)
    if outcome["as_job"]:
        return worker.run_result("restore", "restore (run)", request, ExecutionKind.RESTORE, timed)
    result = Result(
        key="restore",
        label="restore (inline)",
        rows=outcome["messages"],
        wall_s=timed.seen_done_s,
    )
    return worker.with_samples(result, timed)


def evidence(worker: BurstWorker, request: DeletionRequest, *, director: Member) -> Result:
    """The evidence export a request with high-sensitivity records needs before it
    runs: a JSON Lines export of its frozen scope, built by the worker."""
    export = do_request_export(request, fmt="jsonl", acting_user=director)

    def done() -> bool:
        export.refresh_from_db()
        if export.status == ExportStatus.FAILED:
            raise CommandError(f"evidence export {export.pk} failed: {export.error}")
        return export.status == ExportStatus.READY

    timed = worker.timed("evidence export", lambda: None, done)
    result = Result(
        key="evidence",
        label="evidence export (JSON Lines)",
        rows=export.messages,
        wall_s=(export.finished_at - timed.started_at).total_seconds(),
        run_s=(export.finished_at - export.started_at).total_seconds(),
    )
    return worker.with_samples(result, timed)


def retention_run(worker: BurstWorker) -> Result:
    """A rule over the whole company whose keep takes about half of what is left,
    enabled by two admins (grace skipped), run by the nightly job's own code."""
    admins = list(Member.objects.filter(groups__name=Role.ADMIN, is_active=True)[:2])
    if len(admins) < 2:
        second = Member.objects.create_user(username="bench_admin_b")
        second.groups.add(Group.objects.get(name=Role.ADMIN))
        admins.append(second)
    first_admin, second_admin = admins[0], admins[1]
    sent = Message.objects.order_by("sent_at").values_list("sent_at", flat=True)
    median = sent[Message.objects.count() // 2]
    keep_days = max(1, (timezone.now() - median).days)
    rule = do_create_rule(
        acting_user=first_admin,
        name="bench_wipe: half of what is left",
        keep_days=keep_days,
        action=RuleAction.BIN,
    )
    do_preview_rule(rule, acting_user=first_admin)
    do_propose(rule, acting_user=first_admin)
    do_approve_rule(rule, acting_user=second_admin, verified_second_factor=False)
    RetentionRule.objects.filter(pk=rule.pk).update(effective_from=timezone.now())
    started: list[int] = []

    def start() -> None:
        # The nightly job; with high-sensitivity records in scope it asks for its own
        # evidence export, and the run starts once that is ready.
        started.extend(run_due_rules())

    def done() -> bool:
        if not started:
            return False
        return run_finished(DeletionRequest.objects.get(pk=started[0]), ExecutionKind.MOVE)

    timed = worker.timed("retention run", start, done)
    request = DeletionRequest.objects.get(pk=started[0])
    worker.say(
        f"  rule: keep {keep_days} days; its run took {request.preview['messages']:,} "
        f"messages (evidence export included in wall time)"
    )
    return worker.run_result(
        "retention", "retention run (to the bin)", request, ExecutionKind.MOVE, timed
    )


def purge(worker: BurstWorker, request: DeletionRequest) -> Result:
    far = timezone.now() + timedelta(days=3650)
    timed = worker.timed(
        "purge",
        lambda: start_due_purges(now=far),
        lambda: run_finished(request, ExecutionKind.PURGE),
    )
    return worker.run_result("purge", "purge (recycle bin)", request, ExecutionKind.PURGE, timed)


def wipe(worker: BurstWorker, request: DeletionRequest) -> tuple[Result, Result]:
    """The server-side wipe: when its records became unreadable, and when its rows were
    gone."""
    timed = worker.timed(
        "wipe",
        lambda: enqueue_start(request),
        lambda: run_finished(request, ExecutionKind.WIPE),
    )
    gone = worker.run_result(
        "wipe-rows", "server wipe: rows gone", request, ExecutionKind.WIPE, timed
    )
    run = Execution.objects.filter(request=request, kind=ExecutionKind.WIPE).latest("pk")
    unreadable = Result(
        key="wipe-unreadable",
        label="server wipe: unreadable",
        rows=run.done_messages,
        wall_s=(run.unreadable_at - timed.started_at).total_seconds(),
        run_s=(run.unreadable_at - run.started_at).total_seconds(),
    )
    worker.say(
        f"  keys destroyed {run.keys_destroyed:,}; unreadable {unreadable.run_s:.2f} s "
        f"after the run started ({unreadable.wall_s:.2f} s after the enqueue)"
    )
    return unreadable, gone


def floor(
    server: PgServer,
    dbname: str,
    conversation_ids: list[int],
    high: int,
    say: Callable[[str], None],
) -> tuple[Result, float]:
    """One transaction of plain DELETEs of the same rows, on an identical copy; and the
    seconds its DELETE statements took without the COMMIT."""
    warm(dbname, server)
    with server.connect(dbname) as conn:
        referencing = conn.execute(
            """
            SELECT c.conrelid::regclass::text, a.attname
            FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.contype = 'f' AND c.confrelid = 'retention_message'::regclass
            """
        ).fetchall()
    with server.connect(dbname, autocommit=False) as conn:
        # One transaction: the statements, then COMMIT, which runs the deferred checks
        # of the foreign keys that point at messages.
        in_scope = "conversation_id = ANY(%s::bigint[]) AND id <= %s"
        steps = []
        started = time.perf_counter()
        for table, column in referencing:
            conn.execute(
                f"DELETE FROM {table} WHERE {column} IN "  # noqa: S608 (catalog names)
                f"(SELECT id FROM retention_message WHERE {in_scope})",
                [conversation_ids, high],
            )
            steps.append((f"DELETE {table}", time.perf_counter()))
        rows = conn.execute(
            f"DELETE FROM retention_message WHERE {in_scope}",  # noqa: S608
            [conversation_ids, high],
        ).rowcount
        steps.append(("DELETE retention_message", time.perf_counter()))
        conn.commit()
        steps.append(("COMMIT", time.perf_counter()))
        seconds = time.perf_counter() - started
    previous = started
    parts = []
    for name, at in steps:
        parts.append(f"{name} {at - previous:.2f} s")
        previous = at
    say("floor: " + ", ".join(parts))
    # COMMIT runs the deferred foreign-key checks: what the DELETEs cost without them.
    statements_s = steps[-2][1] - started
    result = Result(
        key="floor", label="floor: one plain DELETE", rows=rows, wall_s=seconds, run_s=seconds
    )
    return result, statements_s
