"""The worker side of ``bench_wipe``: real ``manage.py rqworker`` subprocesses against the
scratch database, the timing of a path from its enqueue to the end of its run, and the
result of each path with the samples taken meanwhile (the longest transactions seen in
``pg_stat_activity``, the worker's peak resident memory)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import django_rq
import redis
from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone
from rq import Worker
from rq.registry import ScheduledJobRegistry

from retention.bench.probes import (
    MemorySampler,
    PgServer,
    TransactionSampler,
    environment_for,
    rss_mb,
    using_database,
    wait_for,
)
from retention.models import DeletionRequest, Execution, ExecutionStatus
from retention.wipes.runner import QUEUE
from retention.wipes.schedule import start_request_job

POLL_SECONDS = 0.1
RUN_TIMEOUT_SECONDS = 3600


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


class BurstWorker:
    """Starts workers on the wipes queue (and the default one, which builds evidence
    exports) against the database Django's connection points at now."""

    def __init__(
        self,
        *,
        server: PgServer,
        redis_conn: redis.Redis,
        redis_url: str,
        master_key: str,
        tmp: Path,
        say: Callable[[str], None],
    ) -> None:
        self.server = server
        self.redis = redis_conn
        self.redis_url = redis_url
        self.master_key = master_key
        self.tmp = tmp
        self.say = say

    def env(self) -> dict[str, str]:
        name = connection.settings_dict["NAME"]
        return environment_for(
            self.server,
            name,
            REDIS_URL=self.redis_url,
            MEDIA_ROOT=str(settings.MEDIA_ROOT),
            QINGLI_MASTER_KEY=self.master_key,
            QINGLI_START_IN_PROCESS_WORKER="false",
        )

    def argv(self, *, burst: bool) -> list[str]:
        # The wipes queue, and the default one that builds evidence exports.
        argv = [
            sys.executable,
            str(Path(settings.BASE_DIR) / "manage.py"),
            "rqworker",
            QUEUE,
            "default",
        ]
        return argv + ["--burst"] if burst else argv

    def idle(self, dbname: str) -> tuple[float, float]:
        """Resident memory of a worker that has started and is waiting for a job, and the
        seconds it took to start."""
        with using_database(dbname):
            env = self.env()
        log = open(self.tmp / "worker-idle.log", "w")  # noqa: SIM115 (closed below)
        started = time.perf_counter()
        worker = subprocess.Popen(
            self.argv(burst=False),
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

    def timed(self, label: str, start: Callable[[], object], done: Callable[[], bool]) -> Timed:
        """Call ``start`` (which enqueues), run a burst worker until ``done()``."""
        dbname = connection.settings_dict["NAME"]
        env = self.env()
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
                    self.argv(burst=True),
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
        """The result of a path that ended in a completed run of ``kind``."""
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
        return self.with_samples(result, timed)

    def with_samples(self, result: Result, timed: Timed) -> Result:
        """``result`` with the samples taken while it ran, said on one line."""
        samples = timed.transactions
        result.longest_xact_ms, result.longest_xact_statements = samples.longest(wrote=True)
        result.longest_read_ms, result.longest_read_statements = samples.longest(wrote=False)
        if timed.memory is not None:
            result.worker_peak_mb = timed.memory.peak_mb
        result.worker_start_s = timed.worker_start_s
        self.say(_line(result))
        return result


def enqueue_start(request: DeletionRequest) -> None:
    django_rq.get_queue(QUEUE).enqueue(start_request_job, request.pk)


def run_finished(request: DeletionRequest, kind: str) -> bool:
    status = (
        Execution.objects.filter(request=request, kind=kind)
        .order_by("-pk")
        .values_list("status", flat=True)
        .first()
    )
    return status in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)


def drop_scheduled(queue_name: str) -> None:
    queue = django_rq.get_queue(queue_name)
    registry = ScheduledJobRegistry(queue=queue)
    for job_id in registry.get_job_ids():
        registry.remove(job_id, delete_job=True)


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
