"""The ``bench_wipe`` benchmark (``manage.py bench_wipe --messages N [--keep]
[--database-url URL] [--redis-url URL]``).

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
3. Runs each path through the job path: ``retention.wipes.schedule.start_request_job``
   enqueued on the ``wipes`` queue in a spare Redis database (flushed first), worked by a
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
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import redis
from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import override_settings

from retention.bench import wipe_paths as paths
from retention.bench.probes import PgServer, using_database
from retention.bench.wipe_printing import load, print_report
from retention.bench.wipe_seeding import approve, cast, file_request, half, seed_scratch, warm
from retention.bench.wipe_worker import BurstWorker, Result
from retention.models import (
    DeletionRequest,
    Department,
    Member,
    RequestConversation,
    RequestMethod,
)
from retention.records import crypto

SCRATCH_PREFIX = "qingli_benchwipe"
SPARE_REDIS_DB = 9
# Set in the Redis database bench_wipe flushes, so a later run knows the keys were its own.
REDIS_MARK = "qingli:bench_wipe"


def bench_wipe(
    stdout: TextIO,
    *,
    messages: int,
    keep: bool,
    database_url: str | None,
    redis_url: str | None,
    seed: int,
) -> None:
    """Run the benchmark, printing to ``stdout`` (see the module docstring)."""
    if messages < 1000:
        raise CommandError("--messages must be at least 1000")
    if database_url and database_url != os.environ.get("DATABASE_URL"):
        # Settings are read once per process: run again with the URL in place.
        _rerun_with_database(
            database_url, messages=messages, keep=keep, redis_url=redis_url, seed=seed
        )
        return
    if connection.vendor != "postgresql":
        raise CommandError(
            f"bench_wipe needs PostgreSQL, and this process uses {connection.vendor}. It "
            "compares against PostgreSQL's own DELETE and creates scratch databases "
            "beside yours: set DATABASE_URL=postgres://… or pass --database-url."
        )
    WipeBench(stdout, messages=messages, keep=keep, redis_url=redis_url).run(seed)


class WipeBench:
    """One run of the benchmark: its scratch databases, files and Redis database."""

    def __init__(self, stdout: TextIO, *, messages: int, keep: bool, redis_url: str | None) -> None:
        self.stdout = stdout
        self.messages = messages
        self.keep = keep
        self.redis_url = redis_url or _spare_redis_url()
        self.redis = redis.Redis.from_url(self.redis_url)

    def run(self, seed: int) -> None:
        self.claim_redis()
        self.server = PgServer.of_default_connection()
        base = f"{SCRATCH_PREFIX}_{self.messages}"
        self.db = {"seed": base, "run": f"{base}_run", "wipe": f"{base}_wipe"}
        self.db["floor"] = f"{base}_floor"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench_wipe_{self.messages}_"))
        self.master_key = (
            settings.QINGLI_MASTER_KEY or base64.b64encode(secrets.token_bytes(32)).decode()
        )
        self.worker = BurstWorker(
            server=self.server,
            redis_conn=self.redis,
            redis_url=self.redis_url,
            master_key=self.master_key,
            tmp=self.tmp,
            say=self.say,
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
                self.run_all(seed)
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

    def file(self, method: str, director: Member, departments: list[Department]) -> DeletionRequest:
        """A request of ``method`` for the chosen half, filed by the director."""
        return file_request(method, director=director, departments=departments, say=self.say)

    def run_all(self, seed: int) -> None:
        version = self.server.setting("server_version")
        self.say(
            f"bench_wipe: {self.messages:,} messages; PostgreSQL {version} "
            f"at {self.server.host}:{self.server.port} (shared_buffers "
            f"{self.server.setting('shared_buffers')}), {os.cpu_count()} CPUs; queue "
            f"{self.redis_url}; batches of {settings.QINGLI_WIPE_BATCH_MESSAGES:,} messages"
        )
        load_at_start = load()
        for name in self.db.values():
            self.server.drop(name)
        seed_scratch(self.server, self.db["seed"], messages=self.messages, seed=seed, say=self.say)
        for copy in ("run", "wipe", "floor"):
            started = time.perf_counter()
            self.server.create(self.db[copy], template=self.db["seed"])
            shutil.copytree(self.media("seed"), self.media(copy))
            self.say(f"Copied to {self.db[copy]} in {time.perf_counter() - started:.1f} s")
        idle_mb, idle_start_s = self.worker.idle(self.db["run"])
        self.say(f"Idle worker: {idle_mb:.0f} MB resident ({idle_start_s:.1f} s to start)\n")

        worker = self.worker
        results: list[Result] = []
        with using_database(self.db["run"]), override_settings(MEDIA_ROOT=self.media("run")):
            people = cast()
            departments = half(self.say)
            first = self.file(RequestMethod.BATCH, people["director"], departments)
            targets = list(
                RequestConversation.objects.filter(request=first).values_list(
                    "conversation_id", flat=True
                )
            )
            high = first.max_message_id
        floor, floor_statements_s = paths.floor(
            self.server, self.db["floor"], targets, high, self.say
        )
        self.say(
            f"floor: {floor.rows:,} rows in {floor.wall_s:.2f} s, "
            f"{floor.rate(floor.wall_s):,.0f} rows/s\n"
        )
        with using_database(self.db["run"]), override_settings(MEDIA_ROOT=self.media("run")):
            warm(self.db["run"], self.server)
            results.append(paths.evidence(worker, first, director=people["director"]))
            approve(first, self.say)
            results.append(paths.move(worker, "move", "move to recycle bin", first))
            results.append(paths.restore(worker, first, admin=people["admin"]))
            second = self.file(RequestMethod.BATCH, people["director"], departments)
            paths.evidence(worker, second, director=people["director"])
            approve(second, self.say)
            results.append(paths.move(worker, "move-again", "move again (for the purge)", second))
            results.append(paths.purge(worker, second))
            results.append(paths.retention_run(worker))
        with using_database(self.db["wipe"]), override_settings(MEDIA_ROOT=self.media("wipe")):
            warm(self.db["wipe"], self.server)
            people = cast()
            wipe_request = self.file(RequestMethod.SERVER, people["director"], departments)
            paths.evidence(worker, wipe_request, director=people["director"])
            approve(wipe_request, self.say)
            unreadable, gone = paths.wipe(worker, wipe_request)
            results += [unreadable, gone]
        print_report(
            self.say,
            messages=self.messages,
            idle_mb=idle_mb,
            load_at_start=load_at_start,
            floor=floor,
            floor_statements_s=floor_statements_s,
            results=results,
        )


def _rerun_with_database(
    url: str, *, messages: int, keep: bool, redis_url: str | None, seed: int
) -> None:
    argv = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "bench_wipe"]
    argv += ["--messages", str(messages), "--seed", str(seed)]
    if keep:
        argv.append("--keep")
    if redis_url:
        argv += ["--redis-url", redis_url]
    done = subprocess.run(argv, env={**os.environ, "DATABASE_URL": url}, check=False)
    if done.returncode:
        raise CommandError(f"bench_wipe against {url} failed (exit {done.returncode})")


def _spare_redis_url() -> str:
    configured = settings.REDIS_URL or "redis://127.0.0.1:6379/0"
    parts = urlsplit(configured)
    return urlunsplit((parts.scheme, parts.netloc, f"/{SPARE_REDIS_DB}", "", ""))
