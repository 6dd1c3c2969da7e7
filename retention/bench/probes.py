"""Helpers for benchmark commands that need more than one database and a real worker.

- :class:`PgServer`: create, copy (``CREATE DATABASE … TEMPLATE``) and drop scratch
  PostgreSQL databases beside the configured one, and point Django's default connection
  at one of them for a while (as Django's test runner does with its test database).
- :class:`TransactionSampler`: polls ``pg_stat_activity`` and keeps the age of the
  oldest open transaction it saw in one database, with its statement.
- :class:`MemorySampler`: polls ``/proc`` for the resident memory of a process and its
  children (an RQ worker forks a work horse per job), keeping each one's peak.

Linux only for the memory figures (``/proc``); nothing here is used by the application.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import psycopg
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import connection


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    user: str
    password: str

    @classmethod
    def of_default_connection(cls) -> PgServer:
        s = connection.settings_dict
        return cls(
            host=s["HOST"] or "localhost",
            port=int(s["PORT"] or 5432),
            user=s["USER"] or "postgres",
            password=s["PASSWORD"] or "",
        )

    def url(self, dbname: str) -> str:
        secret = f":{quote(self.password, safe='')}" if self.password else ""
        return f"postgres://{quote(self.user, safe='')}{secret}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", *, autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=dbname,
            autocommit=autocommit,
        )

    def exists(self, dbname: str) -> bool:
        with self.connect() as conn:
            return bool(
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
            )

    def create(self, dbname: str, *, template: str | None = None) -> None:
        with self.connect() as conn:
            sql = f'CREATE DATABASE "{dbname}"'
            if template:
                sql += f' TEMPLATE "{template}"'
            conn.execute(sql)

    def drop(self, dbname: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    def setting(self, name: str) -> str:
        with self.connect() as conn:
            return conn.execute("SELECT current_setting(%s)", [name]).fetchone()[0]


@contextlib.contextmanager
def using_database(dbname: str) -> Iterator[None]:
    """Point Django's default connection at another database on the same server."""
    previous = connection.settings_dict["NAME"]
    _switch(dbname)
    try:
        yield
    finally:
        _switch(previous)


def _switch(dbname: str) -> None:
    connection.close()
    settings.DATABASES["default"]["NAME"] = dbname
    connection.settings_dict["NAME"] = dbname
    # Content type ids are per database.
    ContentType.objects.clear_cache()


class _Sampler(threading.Thread):
    interval = 0.05

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def sample(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class TransactionSampler(_Sampler):
    """The longest-lived transactions seen in ``dbname`` while running (every 25 ms, so
    lower bounds, short by up to one interval), with the statements seen running in them.
    Kept apart: transactions that wrote (they had a transaction id, so they may hold row
    locks) and read-only ones (a single long SELECT holds no lock that blocks writers)."""

    interval = 0.025

    def __init__(self, server: PgServer, dbname: str) -> None:
        super().__init__()
        self.dbname = dbname
        self._conn = server.connect()
        self._own_pid = self._conn.info.backend_pid
        # (backend pid, transaction start) -> [age in ms, wrote, statements seen in order]
        self._seen: dict[tuple[int, object], list] = {}

    def sample(self) -> None:
        rows = self._conn.execute(
            """
            SELECT pid, xact_start,
                   extract(epoch FROM clock_timestamp() - xact_start) * 1000,
                   backend_xid IS NOT NULL, state, left(query, 400)
            FROM pg_stat_activity
            WHERE datname = %s AND backend_type = 'client backend' AND pid <> %s
              AND xact_start IS NOT NULL
            """,
            [self.dbname, self._own_pid],
        ).fetchall()
        for pid, xact_start, age_ms, wrote, state, query in rows:
            entry = self._seen.setdefault((pid, xact_start), [0.0, False, []])
            entry[0] = max(entry[0], float(age_ms or 0))
            entry[1] = entry[1] or wrote
            label = f"[{state}] {query}"
            if not entry[2] or entry[2][-1] != label:
                entry[2].append(label)

    def longest(self, *, wrote: bool) -> tuple[float, list[str]]:
        """(age in ms, statements) of the longest transaction that wrote, or did not."""
        entries = [e for e in self._seen.values() if e[1] == wrote]
        if not entries:
            return 0.0, []
        age, _, statements = max(entries, key=lambda e: e[0])
        return age, statements

    def stop(self) -> None:
        super().stop()
        self._conn.close()


def _status_kb(pid: int, field_name: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def rss_mb(pid: int) -> float | None:
    kb = _status_kb(pid, "VmRSS")
    return None if kb is None else kb / 1024


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


class MemorySampler(_Sampler):
    """Peak resident memory (``VmHWM``) of a process and of each child it forks."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid
        self.peak_parent_mb = 0.0
        self.peak_child_mb = 0.0
        self.children_seen: set[int] = set()
        # time.perf_counter() when the first child was seen (an RQ worker's work horse).
        self.first_child_at: float | None = None

    def sample(self) -> None:
        hwm = _status_kb(self.pid, "VmHWM")
        if hwm is not None:
            self.peak_parent_mb = max(self.peak_parent_mb, hwm / 1024)
        for child in children_of(self.pid):
            if self.first_child_at is None:
                self.first_child_at = time.perf_counter()
            self.children_seen.add(child)
            child_hwm = _status_kb(child, "VmHWM")
            if child_hwm is not None:
                self.peak_child_mb = max(self.peak_child_mb, child_hwm / 1024)

    @property
    def peak_mb(self) -> float:
        return max(self.peak_parent_mb, self.peak_child_mb)


def wait_for(predicate, *, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def environment_for(server: PgServer, dbname: str, **extra: str) -> dict[str, str]:
    """The environment of a subprocess of this project working on ``dbname``."""
    env = dict(os.environ)
    env["DATABASE_URL"] = server.url(dbname)
    env.update(extra)
    return env
