"""manage.py bench_wipe --messages N [--keep] [--database-url URL] [--redis-url URL]

Times every way Qingli removes chat records, end to end through the real services and a
real RQ worker, against the floor: one plain SQL ``DELETE`` of the same rows.

1. Seeds N demo messages (``seed_demo``) into a scratch PostgreSQL database
   ``qingli_benchwipe_<N>``, makes the policies permissive (no execution window, no
   delays, a two-step server chain the demo cast can staff), and copies it three times
   with ``CREATE DATABASE … TEMPLATE``: ``_run`` (move, restore, purge), ``_wipe`` (the
   server-side wipe) and ``_floor`` (the plain DELETE).
2. Picks the regions whose messages add up closest to half of all, and files and approves
   requests for them through ``do_file_request`` / ``do_approve_step`` as the demo
   director, with whichever demo members each step lets decide.
3. Runs each path through the job path: ``retention.jobs.tasks.start_request`` enqueued on the
   ``wipes`` queue in a spare Redis database (flushed first), worked by a
   ``manage.py rqworker wipes --burst`` subprocess, timed from the enqueue (or the
   service call) to the run's end. Alongside: the longest batch the engine recorded
   (``Execution.longest_batch_ms``), the oldest open transaction seen in
   ``pg_stat_activity`` (sampled every 25 ms), and the worker's peak resident memory
   (``VmHWM`` of the worker and the work horse it forks, sampled every 50 ms) next to an
   idle worker's.

The scratch databases (and the attachment files, in a temporary directory) are dropped
at the end unless ``--keep``. See docs/performance.md, "Wipes", for figures.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import django_rq
import redis
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test.utils import override_settings
from django.utils import timezone
from rq import Worker
from rq.registry import ScheduledJobRegistry

from retention.access.predicates import eligible_approvers
from retention.bench.probes import (
    MemorySampler,
    PgServer,
    TransactionSampler,
    environment_for,
    rss_mb,
    using_database,
    wait_for,
)
from retention.demo import seed_demo
from retention.demo.org import COMPANY_NAME
from retention.exports.service import do_request_export
from retention.governance import approvals
from retention.governance.decisions import do_approve_step
from retention.governance.filing import do_file_request
from retention.governance.policy_changes import do_update_policies
from retention.governance.scope import resolve_scope
from retention.models import (
    Conversation,
    DeletionRequest,
    Department,
    Execution,
    ExecutionKind,
    ExecutionStatus,
    ExportStatus,
    Member,
    Message,
    RequestConversation,
    RequestMethod,
    RequestStatus,
    RetentionRule,
    RuleAction,
)
from retention.models.roles import Role
from retention.records import crypto
from retention.rules import service as rules
from retention.wipes.execution import QUEUE, start_due_purges
from retention.wipes.recycle import do_restore_from_bin

SCRATCH_PREFIX = "qingli_benchwipe"
SPARE_REDIS_DB = 9
# Set in the Redis database bench_wipe flushes, so a later run knows the keys were its own.
REDIS_MARK = "qingli:bench_wipe"
POLL_SECONDS = 0.1
RUN_TIMEOUT_SECONDS = 3600
PERMISSIVE_POLICIES = {
    "execution_window": None,
    "batch_delay_hours": 0,
    "server_delay_hours": 0,
    "batch_min_consecutive_signin_days": 0,
    # The demo has one admin: the default server chain (manager, security, admin) cannot
    # be staffed for the director's request once its manager step falls to the admin.
    "approval_chains": {"batch": ["manager"], "server": ["manager", "security"]},
}
# The goals the engine is held to (issue "Wipes run").
GOAL_FLOOR_RATIO = 0.5
GOAL_UNREADABLE_S = 1.0
GOAL_TRANSACTION_MS = 250
GOAL_WORKER_MB = 64


@dataclass
class Result:
    key: str
    label: str
    rows: int
    # From the enqueue (or the service call that enqueues) to the end of the run.
    wall_s: float
    # Execution.started_at → finished_at: the run alone, without queueing or worker start.
    run_s: float | None = None
    longest_batch_ms: int | None = None
    # The longest transaction seen that wrote, and the longest read-only one.
    longest_xact_ms: float | None = None
    longest_xact_statements: list[str] = field(default_factory=list)
    longest_read_ms: float | None = None
    longest_read_statements: list[str] = field(default_factory=list)
    worker_peak_mb: float | None = None
    # Spawning the burst worker until it forked its work horse.
    worker_start_s: float | None = None
    batches: int | None = None

    def rate(self, seconds: float | None) -> float | None:
        return self.rows / seconds if seconds else None


@dataclass
class Timed:
    started_at: datetime
    seen_done_s: float
    memory: MemorySampler | None
    transactions: TransactionSampler
    worker_start_s: float | None


class Command(BaseCommand):
    help = (
        "Time moving to the recycle bin, restoring, purging and server-side wipes of half "
        "of N seeded messages through a real RQ worker, against one plain SQL DELETE."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--messages", type=int, required=True, help="messages to seed")
        parser.add_argument(
            "--keep", action="store_true", help="keep the scratch databases and files"
        )
        parser.add_argument(
            "--database-url",
            default=None,
            help="PostgreSQL server to create the scratch databases on (default: DATABASE_URL)",
        )
        parser.add_argument(
            "--redis-url",
            default=None,
            help=f"Redis database for the queue, flushed first (default: db {SPARE_REDIS_DB} "
            "of REDIS_URL's server, or of 127.0.0.1:6379)",
        )
        parser.add_argument("--seed", type=int, default=1, help="seed_demo's random seed")

    # --- setting up -------------------------------------------------------------------

    def handle(self, *args, **options) -> None:
        if options["messages"] < 1000:
            raise CommandError("--messages must be at least 1000")
        url = options["database_url"]
        if url and url != os.environ.get("DATABASE_URL"):
            # Settings are read once per process: run again with the URL in place.
            self._rerun_with_database(url, options)
            return
        if connection.vendor != "postgresql":
            raise CommandError(
                f"bench_wipe needs PostgreSQL, and this process uses {connection.vendor}. It "
                "compares against PostgreSQL's own DELETE and creates scratch databases "
                "beside yours: set DATABASE_URL=postgres://… or pass --database-url."
            )
        self.messages = options["messages"]
        self.keep = options["keep"]
        self.redis_url = options["redis_url"] or _spare_redis_url()
        self.redis = redis.Redis.from_url(self.redis_url)
        self.claim_redis()
        self.server = PgServer.of_default_connection()
        base = f"{SCRATCH_PREFIX}_{self.messages}"
        self.db = {"seed": base, "run": f"{base}_run", "wipe": f"{base}_wipe"}
        self.db["floor"] = f"{base}_floor"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench_wipe_{self.messages}_"))
        self.master_key = (
            settings.QINGLI_MASTER_KEY or base64.b64encode(secrets.token_bytes(32)).decode()
        )
        queues = {
            name: {"URL": self.redis_url, "DEFAULT_TIMEOUT": 3600} for name in settings.RQ_QUEUES
        }
        try:
            with override_settings(
                RQ_QUEUES=queues,
                MEDIA_ROOT=self.media("seed"),
                QINGLI_MASTER_KEY=self.master_key,
            ):
                crypto.forget_keys()
                self.run_all(options["seed"])
        finally:
            crypto.forget_keys()
            self.clean_up()

    def claim_redis(self) -> None:
        """Flush the queue's Redis database, but only one nobody else is using."""
        try:
            self.redis.ping()
            db = self.redis.connection_pool.connection_kwargs.get("db", 0)
            me = self.redis.client_id()
            others = [
                c for c in self.redis.client_list() if int(c["db"]) == db and int(c["id"]) != me
            ]
            used = self.redis.dbsize() and not self.redis.exists(REDIS_MARK)
        except redis.RedisError as exc:
            raise CommandError(f"Redis at {self.redis_url} does not answer: {exc}") from exc
        if others or used:
            raise CommandError(
                f"Redis database {db} at {self.redis_url} is in use ({len(others)} other "
                f"clients, {self.redis.dbsize()} keys); bench_wipe flushes its database, so "
                "pass --redis-url with a database nobody uses."
            )
        self.redis.flushdb()
        self.redis.set(REDIS_MARK, os.getpid())

    def _rerun_with_database(self, url: str, options: dict) -> None:
        argv = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "bench_wipe"]
        argv += ["--messages", str(options["messages"]), "--seed", str(options["seed"])]
        if options["keep"]:
            argv.append("--keep")
        if options["redis_url"]:
            argv += ["--redis-url", options["redis_url"]]
        done = subprocess.run(argv, env={**os.environ, "DATABASE_URL": url}, check=False)
        if done.returncode:
            raise CommandError(f"bench_wipe against {url} failed (exit {done.returncode})")

    def media(self, db: str) -> Path:
        return self.tmp / f"media_{db}"

    def say(self, text: str = "") -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def clean_up(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.redis.flushdb()
        if self.keep:
            self.say(f"\nKept: databases {', '.join(self.db.values())}; files in {self.tmp}")
            return
        for name in self.db.values():
            self.server.drop(name)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- the benchmark ------------------------------------------------------------------

    def run_all(self, seed: int) -> None:
        version = self.server.setting("server_version")
        self.say(
            f"bench_wipe: {self.messages:,} messages; PostgreSQL {version} "
            f"at {self.server.host}:{self.server.port} (shared_buffers "
            f"{self.server.setting('shared_buffers')}), {os.cpu_count()} CPUs; queue "
            f"{self.redis_url}; batches of {settings.QINGLI_WIPE_BATCH_MESSAGES:,} messages"
        )
        self.load_at_start = _load()
        self.seed(seed)
        for copy in ("run", "wipe", "floor"):
            started = time.perf_counter()
            self.server.create(self.db[copy], template=self.db["seed"])
            shutil.copytree(self.media("seed"), self.media(copy))
            self.say(f"Copied to {self.db[copy]} in {time.perf_counter() - started:.1f} s")
        self.idle_mb, idle_start_s = self.idle_worker()
        self.say(f"Idle worker: {self.idle_mb:.0f} MB resident ({idle_start_s:.1f} s to start)\n")

        results: list[Result] = []
        with using_database(self.db["run"]), override_settings(MEDIA_ROOT=self.media("run")):
            self.cast = _cast()
            self.departments = self.half()
            first = self.file(RequestMethod.BATCH)
            targets = list(
                RequestConversation.objects.filter(request=first).values_list(
                    "conversation_id", flat=True
                )
            )
            high = first.max_message_id
        floor = self.floor(targets, high)
        self.say(
            f"floor: {floor.rows:,} rows in {floor.wall_s:.2f} s, "
            f"{floor.rate(floor.wall_s):,.0f} rows/s\n"
        )
        with using_database(self.db["run"]), override_settings(MEDIA_ROOT=self.media("run")):
            _warm(self.db["run"], self.server)
            results.append(self.evidence(first))
            self.approve(first)
            results.append(self.move("move", "move to recycle bin", first))
            results.append(self.restore(first))
            second = self.file(RequestMethod.BATCH)
            self.evidence(second)
            self.approve(second)
            results.append(self.move("move-again", "move again (for the purge)", second))
            results.append(self.purge(second))
            results.append(self.retention_run())
        with using_database(self.db["wipe"]), override_settings(MEDIA_ROOT=self.media("wipe")):
            _warm(self.db["wipe"], self.server)
            self.cast = _cast()
            wipe_request = self.file(RequestMethod.SERVER)
            self.evidence(wipe_request)
            self.approve(wipe_request)
            unreadable, gone = self.wipe(wipe_request)
            results += [unreadable, gone]
        self.report(floor, results)

    def seed(self, seed: int) -> None:
        for name in self.db.values():
            self.server.drop(name)
        self.server.create(self.db["seed"])
        started = time.perf_counter()
        with using_database(self.db["seed"]):
            call_command("migrate", verbosity=0)
            report = seed_demo(
                messages=self.messages,
                password=secrets.token_urlsafe(12),
                seed=seed,
                progress=lambda _line: None,
            )
            admin = Member.objects.get(username="admin")
            # seed_demo switched require_second_factor off: the benchmark's members act
            # without a second factor, as in the demo.
            do_update_policies(
                actor=admin, changes=PERMISSIVE_POLICIES, verified_second_factor=False
            )
            connection.close()
        with self.server.connect(self.db["seed"]) as conn:
            conn.execute("VACUUM ANALYZE")
        conversations = sum(v for k, v in report.conversations.items() if k != "supplier groups")
        self.say(
            f"Seeded {report.messages:,} messages in {conversations:,} conversations into "
            f"{self.db['seed']} in {time.perf_counter() - started:.1f} s (migrate, seed_demo, "
            "permissive policies, VACUUM ANALYZE)"
        )

    def half(self) -> list[Department]:
        """The regions whose messages add up closest to half of all messages."""
        company = Department.objects.get(name=COMPANY_NAME, parent__isnull=True)
        regions = list(Department.objects.filter(parent=company).order_by("pk"))
        sizes = {
            r.pk: Message.all_rows.filter(conversation__department__path__startswith=r.path).count()
            for r in regions
        }
        total = Message.all_rows.count()
        best = min(
            (c for n in range(1, len(regions) + 1) for c in itertools.combinations(regions, n)),
            key=lambda chosen: abs(sum(sizes[r.pk] for r in chosen) - total / 2),
        )
        share = sum(sizes[r.pk] for r in best) / total
        self.say(
            f"Scope: regions {', '.join(r.name for r in best)} with their sub-departments: "
            f"{share:.1%} of {total:,} messages"
        )
        return list(best)

    def file(self, method: str) -> DeletionRequest:
        """File a request for the chosen half, as the demo director."""
        started = time.perf_counter()
        director = self.cast["director"]
        protected = list(
            Conversation.objects.filter(is_protected=True).values_list("pk", flat=True)
        )
        data = {
            "departments": [d.pk for d in self.departments],
            "include_subdepartments": True,
            "confirm_protected": protected,
        }
        scope = resolve_scope(method, data, director)
        request, _ = do_file_request(
            requester=director, scope=scope, reason=f"bench_wipe: {method} of half the demo"
        )
        self.say(
            f"Filed {method} request {request.pk} ({request.preview['messages']:,} messages, "
            f"{request.preview['conversations']:,} conversations) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        return request

    def approve(self, request: DeletionRequest) -> None:
        """Approve every step; its evidence export (if it needs one) is made before."""
        started = time.perf_counter()
        approvers = []
        while request.status == RequestStatus.PENDING:
            step = approvals.current_step(request)
            eligible = sorted(eligible_approvers(step), key=lambda m: m.pk)
            if not eligible:
                raise CommandError(f"nobody may decide step {step.order} ({step.role})")
            do_approve_step(
                request,
                acting_user=eligible[0],
                verified_second_factor=False,  # the demo's policy: see seed()
                comment="bench_wipe",
            )
            approvers.append(eligible[0].username)
            request.refresh_from_db()
        if request.status != RequestStatus.APPROVED:
            raise CommandError(f"request {request.pk} is {request.status}, not approved")
        # Approval scheduled a start at its run time (now); only a scheduler would move it
        # to the queue, and the benchmark enqueues the start itself.
        _drop_scheduled(QUEUE)
        self.say(
            f"Approved request {request.pk} by {', '.join(approvers)} in "
            f"{time.perf_counter() - started:.1f} s"
        )

    # --- the worker ---------------------------------------------------------------------

    def worker_env(self) -> dict[str, str]:
        name = connection.settings_dict["NAME"]
        return environment_for(
            self.server,
            name,
            REDIS_URL=self.redis_url,
            MEDIA_ROOT=str(settings.MEDIA_ROOT),
            QINGLI_MASTER_KEY=self.master_key,
            QINGLI_START_IN_PROCESS_WORKER="false",
        )

    def worker_argv(self, *, burst: bool) -> list[str]:
        # The wipes queue, and the default one that builds evidence exports.
        argv = [
            sys.executable,
            str(Path(settings.BASE_DIR) / "manage.py"),
            "rqworker",
            QUEUE,
            "default",
        ]
        return argv + ["--burst"] if burst else argv

    def idle_worker(self) -> tuple[float, float]:
        """Resident memory of a worker that has started and is waiting for a job."""
        with using_database(self.db["run"]):
            env = self.worker_env()
        log = open(self.tmp / "worker-idle.log", "w")  # noqa: SIM115 (closed below)
        started = time.perf_counter()
        worker = subprocess.Popen(
            self.worker_argv(burst=False),
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            listening = wait_for(
                lambda: any(w.pid == worker.pid for w in Worker.all(connection=self.redis)),
                timeout=120,
            )
            if not listening:
                raise CommandError(f"the idle worker did not start; see {log.name}")
            start_s = time.perf_counter() - started
            time.sleep(1)
            idle = rss_mb(worker.pid) or 0.0
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            log.close()
        return idle, start_s

    def timed(self, label: str, start, done) -> Timed:
        """Call ``start`` (which enqueues), run a burst worker until ``done()``."""
        dbname = connection.settings_dict["NAME"]
        env = self.worker_env()
        transactions = TransactionSampler(self.server, dbname)
        transactions.start()
        clock = time.perf_counter()
        started_at = timezone.now()
        needs_worker = start()
        memory = None
        worker_start_s = None
        if needs_worker is False:
            seen = time.perf_counter() - clock
        else:
            log_path = self.tmp / f"worker-{label.split()[0]}-{int(time.time())}.log"
            with open(log_path, "w") as log:
                spawned = time.perf_counter()
                worker = subprocess.Popen(
                    self.worker_argv(burst=True),
                    cwd=settings.BASE_DIR,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                memory = MemorySampler(worker.pid)
                memory.start()
                deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
                while not done():
                    if worker.poll() is not None and not done():
                        memory.stop()
                        transactions.stop()
                        raise CommandError(
                            f"{label}: the worker ended before the run did; its log: "
                            f"{log_path}\n{log_path.read_text()[-3000:]}"
                        )
                    if time.monotonic() > deadline:
                        worker.kill()
                        raise CommandError(f"{label}: not done after {RUN_TIMEOUT_SECONDS} s")
                    time.sleep(POLL_SECONDS)
                seen = time.perf_counter() - clock
                worker.wait(timeout=600)
                memory.stop()
                if memory.first_child_at is not None:
                    worker_start_s = memory.first_child_at - spawned
        transactions.stop()
        return Timed(started_at, seen, memory, transactions, worker_start_s)

    def run_result(
        self, key: str, label: str, request: DeletionRequest, kind: str, timed: Timed
    ) -> Result:
        run = Execution.objects.filter(request=request, kind=kind).latest("pk")
        if run.status != ExecutionStatus.COMPLETED:
            raise CommandError(f"{label}: run {run.pk} ended {run.status}: {run.last_error}")
        result = Result(
            key=key,
            label=label,
            rows=run.done_messages,
            wall_s=(run.finished_at - timed.started_at).total_seconds(),
            run_s=(run.finished_at - run.started_at).total_seconds(),
            longest_batch_ms=run.longest_batch_ms,
            batches=run.batches,
        )
        return self._with_samples(result, timed)

    def _with_samples(self, result: Result, timed: Timed) -> Result:
        samples = timed.transactions
        result.longest_xact_ms, result.longest_xact_statements = samples.longest(wrote=True)
        result.longest_read_ms, result.longest_read_statements = samples.longest(wrote=False)
        if timed.memory is not None:
            result.worker_peak_mb = timed.memory.peak_mb
        result.worker_start_s = timed.worker_start_s
        self.say(_line(result))
        return result

    # --- the paths ------------------------------------------------------------------------

    def move(self, key: str, label: str, request: DeletionRequest) -> Result:
        timed = self.timed(
            label,
            lambda: _enqueue_start(request),
            lambda: _run_finished(request, ExecutionKind.MOVE),
        )
        return self.run_result(key, label, request, ExecutionKind.MOVE, timed)

    def restore(self, request: DeletionRequest) -> Result:
        """``do_restore_from_bin`` of the whole request: inline up to ``RESTORE_BATCH``
        ranges, else a run of batches on the wipes queue."""
        outcome: dict = {}

        def start():
            outcome.update(
                do_restore_from_bin(
                    request, acting_user=self.cast["admin"], verified_second_factor=False
                )
            )

        def done() -> bool:
            return not outcome["as_job"] or _run_finished(request, ExecutionKind.RESTORE)

        timed = self.timed("restore", start, done)
        if outcome["as_job"]:
            return self.run_result(
                "restore", "restore (run)", request, ExecutionKind.RESTORE, timed
            )
        result = Result(
            key="restore",
            label="restore (inline)",
            rows=outcome["messages"],
            wall_s=timed.seen_done_s,
        )
        return self._with_samples(result, timed)

    def evidence(self, request: DeletionRequest) -> Result:
        """The evidence export a request with high-sensitivity records needs before it
        runs: a JSON Lines export of its frozen scope, built by the worker."""
        export = do_request_export(request, fmt="jsonl", acting_user=self.cast["director"])

        def done() -> bool:
            export.refresh_from_db()
            if export.status == ExportStatus.FAILED:
                raise CommandError(f"evidence export {export.pk} failed: {export.error}")
            return export.status == ExportStatus.READY

        timed = self.timed("evidence export", lambda: None, done)
        result = Result(
            key="evidence",
            label="evidence export (JSON Lines)",
            rows=export.messages,
            wall_s=(export.finished_at - timed.started_at).total_seconds(),
            run_s=(export.finished_at - export.started_at).total_seconds(),
        )
        return self._with_samples(result, timed)

    def retention_run(self) -> Result:
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
        rule = rules.do_create_rule(
            acting_user=first_admin,
            name="bench_wipe: half of what is left",
            keep_days=keep_days,
            action=RuleAction.BIN,
        )
        rules.do_preview_rule(rule, acting_user=first_admin)
        rules.do_propose(rule, acting_user=first_admin)
        rules.do_approve_rule(rule, acting_user=second_admin, verified_second_factor=False)
        RetentionRule.objects.filter(pk=rule.pk).update(effective_from=timezone.now())
        started: list[int] = []

        def start() -> None:
            # The nightly job; with high-sensitivity records in scope it asks for its own
            # evidence export, and the run starts once that is ready.
            started.extend(rules.run_due_rules())

        def done() -> bool:
            if not started:
                return False
            return _run_finished(DeletionRequest.objects.get(pk=started[0]), ExecutionKind.MOVE)

        timed = self.timed("retention run", start, done)
        request = DeletionRequest.objects.get(pk=started[0])
        self.say(
            f"  rule: keep {keep_days} days; its run took {request.preview['messages']:,} "
            f"messages (evidence export included in wall time)"
        )
        return self.run_result(
            "retention", "retention run (to the bin)", request, ExecutionKind.MOVE, timed
        )

    def purge(self, request: DeletionRequest) -> Result:
        far = timezone.now() + timedelta(days=3650)
        timed = self.timed(
            "purge",
            lambda: start_due_purges(now=far),
            lambda: _run_finished(request, ExecutionKind.PURGE),
        )
        return self.run_result("purge", "purge (recycle bin)", request, ExecutionKind.PURGE, timed)

    def wipe(self, request: DeletionRequest) -> tuple[Result, Result]:
        timed = self.timed(
            "wipe",
            lambda: _enqueue_start(request),
            lambda: _run_finished(request, ExecutionKind.WIPE),
        )
        gone = self.run_result(
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
        self.say(
            f"  keys destroyed {run.keys_destroyed:,}; unreadable {unreadable.run_s:.2f} s "
            f"after the run started ({unreadable.wall_s:.2f} s after the enqueue)"
        )
        return unreadable, gone

    def floor(self, conversation_ids: list[int], high: int) -> Result:
        """One transaction of plain DELETEs of the same rows, on an identical copy."""
        dbname = self.db["floor"]
        _warm(dbname, self.server)
        with self.server.connect(dbname) as conn:
            referencing = conn.execute(
                """
                SELECT c.conrelid::regclass::text, a.attname
                FROM pg_constraint c
                JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                WHERE c.contype = 'f' AND c.confrelid = 'retention_message'::regclass
                """
            ).fetchall()
        with self.server.connect(dbname, autocommit=False) as conn:
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
        self.say("floor: " + ", ".join(parts))
        # COMMIT runs the deferred foreign-key checks: what the DELETEs cost without them.
        self.floor_statements_s = steps[-2][1] - started
        return Result(
            key="floor", label="floor: one plain DELETE", rows=rows, wall_s=seconds, run_s=seconds
        )

    # --- the report ---------------------------------------------------------------------

    def report(self, floor: Result, results: list[Result]) -> None:
        floor_rate = floor.rate(floor.wall_s)
        header = (
            f"{'path':30} {'rows':>9} {'wall s':>7} {'run s':>7} {'rows/s (wall)':>13} "
            f"{'× floor':>7} {'rows/s (run)':>12} {'× floor':>7} {'batch ms':>8} "
            f"{'write ms':>8} {'read ms':>7} {'peak MB':>7} {'vs idle':>7}"
        )
        self.say(
            f"\nN = {self.messages:,}; idle worker {self.idle_mb:.0f} MB; load average "
            f"at the start {self.load_at_start}, now {_load()}"
        )
        self.say(header)
        self.say("-" * len(header))
        for r in [floor, *results]:
            wall_rate, run_rate = r.rate(r.wall_s), r.rate(r.run_s)
            self.say(
                f"{r.label:30} {r.rows:>9,} {r.wall_s:>7.2f} {_f(r.run_s, '.2f'):>7} "
                f"{_f(wall_rate, ',.0f'):>13} {_ratio(wall_rate, floor_rate):>7} "
                f"{_f(run_rate, ',.0f'):>12} {_ratio(run_rate, floor_rate):>7} "
                f"{_f(r.longest_batch_ms, 'd'):>8} {_f(r.longest_xact_ms, '.0f'):>8} "
                f"{_f(r.longest_read_ms, '.0f'):>7} "
                f"{_f(r.worker_peak_mb, '.0f'):>7} "
                f"{_f(r.worker_peak_mb and r.worker_peak_mb - self.idle_mb, '+.0f'):>7}"
            )
        self.say(
            "\nwall: from the enqueue (restore: the do_restore_from_bin call; purge: the "
            "start_due_purges call) to the run's end, including the burst worker's start; "
            "run: Execution.started_at → finished_at. batch ms: Execution.longest_batch_ms "
            "(the longest batch transaction, COMMIT included; a purge's file deletion too); "
            "write ms / read ms: the longest transaction that wrote "
            "/ only read, seen in pg_stat_activity (sampled every 25 ms)."
        )
        self.say(
            f"floor without the foreign-key checks its COMMIT runs: "
            f"{floor.rows / self.floor_statements_s:,.0f} rows/s "
            f"({self.floor_statements_s:.2f} s of DELETE statements)"
        )
        self.goals(floor_rate, results)
        for r in results:
            for kind, ms, statements in [
                ("write transaction", r.longest_xact_ms, r.longest_xact_statements),
                ("read-only transaction", r.longest_read_ms, r.longest_read_statements),
            ]:
                if (ms or 0) > GOAL_TRANSACTION_MS:
                    listed = "\n    ".join(s[:250] for s in statements[-6:])
                    self.say(
                        f"\nLongest {kind} seen in {r.label} ({ms:.0f} ms), statements "
                        f"sampled in it (last 6):\n    {listed}"
                    )

    def goals(self, floor_rate: float, results: list[Result]) -> None:
        by = {r.key: r for r in results}
        lines: list[tuple[str, bool, str]] = []
        for key, name in [
            ("move", "move"),
            ("restore", "restore"),
            ("purge", "purge"),
            ("wipe-rows", "server-side row removal"),
        ]:
            result = by[key]
            run = (result.rate(result.run_s or result.wall_s) or 0) / floor_rate
            wall = (result.rate(result.wall_s) or 0) / floor_rate
            lines.append(
                (
                    f"{name} ≥ {GOAL_FLOOR_RATIO}× floor",
                    run >= GOAL_FLOOR_RATIO,
                    f"{run:.2f}× (run), {wall:.2f}× (wall)",
                )
            )
        unreadable = by["wipe-unreadable"]
        lines.append(
            (
                f"unreadable < {GOAL_UNREADABLE_S:g} s",
                unreadable.run_s < GOAL_UNREADABLE_S,
                f"{unreadable.run_s:.2f} s (run), {unreadable.wall_s:.2f} s (wall)",
            )
        )
        longest = max(results, key=lambda r: max(r.longest_batch_ms or 0, r.longest_xact_ms or 0))
        ms = max(longest.longest_batch_ms or 0, longest.longest_xact_ms or 0)
        lines.append(
            (
                f"no write transaction > {GOAL_TRANSACTION_MS} ms",
                ms <= GOAL_TRANSACTION_MS,
                f"longest {ms:.0f} ms ({longest.label})",
            )
        )
        reader = max(results, key=lambda r: r.longest_read_ms or 0)
        ms = reader.longest_read_ms or 0
        lines.append(
            (
                f"no read-only statement > {GOAL_TRANSACTION_MS} ms",
                ms <= GOAL_TRANSACTION_MS,
                f"longest {ms:.0f} ms ({reader.label})",
            )
        )
        peak = max(r.worker_peak_mb or 0 for r in results)
        lines.append(
            (
                f"worker peak within {GOAL_WORKER_MB} MB of idle",
                peak - self.idle_mb <= GOAL_WORKER_MB,
                f"peak {peak:.0f} MB, idle {self.idle_mb:.0f} MB (+{peak - self.idle_mb:.0f})",
            )
        )
        self.say("\nGoals (ratios judged on run time; an inline restore has no run row: wall):")
        for name, ok, figure in lines:
            self.say(f"  {'PASS' if ok else 'FAIL'}  {name:40} {figure}")


# --- helpers ----------------------------------------------------------------------------


def _spare_redis_url() -> str:
    configured = settings.REDIS_URL or "redis://127.0.0.1:6379/0"
    parts = urlsplit(configured)
    return urlunsplit((parts.scheme, parts.netloc, f"/{SPARE_REDIS_DB}", "", ""))


def _cast() -> dict[str, Member]:
    wanted = ["admin", "director", "security"]
    cast = {m.username: m for m in Member.objects.filter(username__in=wanted)}
    if len(cast) != len(wanted):
        raise CommandError("the seeded database lacks the demo sign-ins")
    return cast


def _warm(dbname: str, server: PgServer) -> None:
    """Read the message table once, so no path pays for a cold cache the others do not."""
    with server.connect(dbname) as conn:
        conn.execute("SELECT count(*), sum(body_bytes) FROM retention_message")
        conn.execute("SELECT count(*) FROM retention_conversation")


def _enqueue_start(request: DeletionRequest) -> None:
    django_rq.get_queue(QUEUE).enqueue("retention.jobs.tasks.start_request", request.pk)


def _run_finished(request: DeletionRequest, kind: str) -> bool:
    status = (
        Execution.objects.filter(request=request, kind=kind)
        .order_by("-pk")
        .values_list("status", flat=True)
        .first()
    )
    return status in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)


def _drop_scheduled(queue_name: str) -> None:
    queue = django_rq.get_queue(queue_name)
    registry = ScheduledJobRegistry(queue=queue)
    for job_id in registry.get_job_ids():
        registry.remove(job_id, delete_job=True)


def _queue_busy(queue_name: str) -> bool:
    queue = django_rq.get_queue(queue_name)
    return bool(queue.count or queue.started_job_registry.count)


def _load() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews the figures."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _f(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _ratio(rate: float | None, floor_rate: float) -> str:
    return "—" if rate is None or not floor_rate else f"{rate / floor_rate:.2f}"


def _line(r: Result) -> str:
    parts = [f"{r.label}: {r.rows:,} rows, {r.wall_s:.2f} s from the enqueue"]
    if r.run_s is not None:
        parts.append(f"run {r.run_s:.2f} s in {r.batches or 0} batches")
    if r.longest_batch_ms is not None:
        parts.append(f"longest batch {r.longest_batch_ms} ms")
    if r.longest_xact_ms is not None:
        parts.append(
            f"longest transaction seen {r.longest_xact_ms:.0f} ms (read-only "
            f"{r.longest_read_ms or 0:.0f} ms)"
        )
    if r.worker_peak_mb is not None:
        parts.append(f"worker peak {r.worker_peak_mb:.0f} MB")
    if r.worker_start_s is not None:
        parts.append(f"worker start {r.worker_start_s:.1f} s")
    return "; ".join(parts)
