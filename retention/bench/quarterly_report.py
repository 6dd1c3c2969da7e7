"""The ``bench_report`` benchmark (``manage.py bench_report --events N [--runs R] [--keep]
[--database-url URL]``).

Times the quarterly audit report (``retention.reports.quarterly.quarterly_report``) on an
audit log of N events, in a scratch PostgreSQL database ``qingli_benchreport_<N>``:

1. migrate; 24 stores under a company, 480 members, 2,400 conversations;
2. N/50 deletion requests spread over the year 2026 (batch, server-side, personal and
   retention runs), each with three tombstones, and their audit events (filed, each
   step approved, started and executed, or rejected), every one a real row of the log;
3. the rest of the N events: sign-ins, ingests, exports, holds, quota grants, refusals,
   restores, failed and resumed runs, rule runs, spread uniformly over the year;
4. VACUUM ANALYZE, then the report of 2026-Q2 (a quarter of the year: about N/4
   events) R times; prints each time and the median.

Rows are written with INSERT … SELECT (the log's triggers refuse UPDATE and DELETE, not
INSERT); their hashes are random, so the chain does not verify: this measures the report,
not the chain. The scratch database is dropped at the end unless ``--keep``. See
docs/performance.md, "Quarterly audit report".
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import datetime
from typing import TextIO
from zoneinfo import ZoneInfo

from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from retention.bench.probes import PgServer, using_database
from retention.models import Conversation, Department, Member
from retention.reports import formats
from retention.reports.periods import Quarter
from retention.reports.quarterly import quarterly_report

SCRATCH_PREFIX = "qingli_benchreport"
GOAL_SECONDS = 2.0
STORES = 24
MEMBERS_PER_STORE = 20
CONVERSATIONS_PER_STORE = 100
EVENTS_PER_REQUEST = 50  # one request for every 50 events of the log

# The log's mix besides the requests' own events, in parts per 1,000 of the rest.
NOISE = [
    (100, 700, "retention.member"),  # signed in
    (200, 150, "retention.conversation"),  # messages ingested
    (450, 40, "retention.export"),  # export requested
    (451, 40, "retention.export"),  # export completed
    (406, 20, "retention.member"),  # refused (quota or eligibility)
    (440, 10, "retention.deletionrequest"),  # restored from the recycle bin
    (601, 10, "retention.member"),  # quota granted
    (500, 10, "retention.hold"),  # hold placed
    (501, 8, "retention.hold"),  # hold released
    (704, 5, "retention.retentionrule"),  # retention rule ran
    (431, 4, "retention.deletionrequest"),  # run resumed
    (433, 3, "retention.deletionrequest"),  # run failed
]


def bench_report(
    stdout: TextIO, *, events: int, runs: int, keep: bool, database_url: str | None
) -> None:
    """Run the benchmark, printing to ``stdout`` (see the module docstring)."""
    if events < 10_000:
        raise CommandError("--events must be at least 10000")
    if database_url and database_url != os.environ.get("DATABASE_URL"):
        # Settings are read once per process: run again with the URL in place.
        argv = [a for a in sys.argv if not a.startswith("--database-url")]
        os.execve(
            sys.executable, [sys.executable, *argv], {**os.environ, "DATABASE_URL": database_url}
        )
    if connection.vendor != "postgresql":
        raise CommandError("bench_report needs PostgreSQL: set DATABASE_URL=postgres://…")
    ReportBench(stdout).run(events, max(1, runs), keep=keep)


class ReportBench:
    """One run: the scratch database and the report timed on it."""

    def __init__(self, stdout: TextIO) -> None:
        self.stdout = stdout

    def run(self, events: int, runs: int, *, keep: bool) -> None:
        server = PgServer.of_default_connection()
        name = f"{SCRATCH_PREFIX}_{events}"
        server.drop(name)
        server.create(name)
        try:
            with using_database(name):
                started = time.perf_counter()
                call_command("migrate", verbosity=0)
                seeded = self.seed(events)
                connection.close()
                with server.connect(name) as conn:
                    conn.execute("VACUUM ANALYZE")
                self.stdout.write(
                    f"Seeded {seeded:,} audit events, {events // EVENTS_PER_REQUEST:,} requests "
                    f"into {name} in {time.perf_counter() - started:.1f} s "
                    f"(PostgreSQL {server.setting('server_version')}, {os.cpu_count()} CPUs)"
                )
                self.time_reports(runs)
        finally:
            connection.close()
            if not keep:
                server.drop(name)

    # --- seeding ---------------------------------------------------------------------

    def seed(self, events: int) -> int:
        company = Department.objects.create(name="清理电商集团")
        stores = [
            Department.objects.create(name=f"第{i + 1}号门店", parent=company)
            for i in range(STORES)
        ]
        Member.objects.bulk_create(
            [
                Member(username=f"m{s.pk}_{i}", display_name=f"店员{i}", department=s)
                for s in stores
                for i in range(MEMBERS_PER_STORE)
            ]
        )
        Conversation.objects.bulk_create(
            [
                Conversation(kind="customer", title=f"客户会话{i}", department=s)
                for s in stores
                for i in range(CONVERSATIONS_PER_STORE)
            ]
        )
        requests = events // EVENTS_PER_REQUEST
        with connection.cursor() as cursor:
            cursor.execute(_REQUESTS_SQL, {"n": requests})
            cursor.execute(_TOMBSTONES_SQL)
            cursor.execute(_REQUEST_EVENTS_SQL)
            cursor.execute("SELECT count(*) FROM audit_auditevent")
            written = cursor.fetchone()[0]
            mix = [(t, target) for t, share, target in NOISE for _ in range(share)]
            cursor.execute(
                _NOISE_SQL,
                {
                    "n": max(0, events - written),
                    "types": [t for t, _target in mix],
                    "targets": [target for _t, target in mix],
                    "requests": events // EVENTS_PER_REQUEST,
                },
            )
            cursor.execute("SELECT count(*) FROM audit_auditevent")
            return cursor.fetchone()[0]

    # --- timing ----------------------------------------------------------------------

    def time_reports(self, runs: int) -> None:
        quarter = Quarter(2026, 2)
        start, end = quarter.start, quarter.end
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM audit_auditevent WHERE created_at >= %s AND created_at < %s",
                [start, end],
            )
            in_quarter = cursor.fetchone()[0]
        times = []
        for i in range(runs):
            began = time.perf_counter()
            report = quarterly_report(2026, 2)
            times.append(time.perf_counter() - began)
            self.stdout.write(f"  run {i + 1}: {times[-1] * 1000:.0f} ms")
        median = statistics.median(times)
        for fmt, render in _formats(report):
            began = time.perf_counter()
            size = len(render())
            self.stdout.write(
                f"  {fmt} from the same report: {(time.perf_counter() - began) * 1000:.0f} ms, "
                f"{size / 1024:.0f} KiB"
            )
        total = report["deletions"]["total"]
        self.stdout.write(
            f"Quarterly report 2026-Q2 ({in_quarter:,} events in the quarter; "
            f"{total['deletions']:,} deletions, {report['approval_latency'][0]['approvals']:,} "
            f"first-step approvals, {report['anomalies']['count']:,} anomalies): "
            f"median {median * 1000:.0f} ms of {runs} runs "
            f"(goal < {GOAL_SECONDS:.0f} s: {'met' if median < GOAL_SECONDS else 'NOT met'})"
        )


def _formats(report):
    tables = formats.quarterly_tables(report)
    charts = formats.bar_charts(report)
    return [
        ("CSV", lambda: formats.to_csv(tables)),
        ("XLSX", lambda: formats.to_xlsx(tables)),
        ("PDF", lambda: formats.to_pdf(title=report["period"], tables=tables, charts=charts)),
    ]


YEAR_START = datetime(2026, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai")).isoformat()

# Requests spread over the year: every 10th a server-side wipe, every 7th personal, every
# 13th a retention run, the rest batch; every 10th batch one rejected.
_REQUESTS_SQL = f"""
INSERT INTO retention_deletionrequest (
    requester_id, method, status, reason, scope, scope_root_id, max_message_id, preview,
    confirmed_protected, filed_at, decided_at, idempotency_key)
SELECT m.id, x.method,
       CASE WHEN x.method = 'batch' AND g %% 10 = 3 THEN 'rejected' ELSE 'completed' END,
       '清理旧记录', '{{}}'::jsonb, m.department_id, 0,
       jsonb_build_object('messages', 30, 'bytes', 3000, 'by_department',
           jsonb_build_array(jsonb_build_object('department', m.department_id,
                                                'messages', 30, 'bytes', 3000))),
       '[]'::jsonb, x.filed_at, x.filed_at + interval '2 hours', ''
FROM generate_series(1, %(n)s) AS g
JOIN LATERAL (SELECT id, department_id FROM retention_member
              ORDER BY id OFFSET (g * 7919) %% (SELECT count(*) FROM retention_member)
              LIMIT 1) AS m ON true
CROSS JOIN LATERAL (SELECT
    CASE WHEN g %% 10 = 0 THEN 'server' WHEN g %% 7 = 0 THEN 'personal'
         WHEN g %% 13 = 0 THEN 'retention' ELSE 'batch' END AS method,
    timestamptz '{YEAR_START}' + (g::float / %(n)s) * interval '365 days' AS filed_at) AS x
"""

# Three conversations of the requester's store per executed non-personal request.
_TOMBSTONES_SQL = """
INSERT INTO retention_tombstone (
    request_id, conversation_id, after_id, up_to_id, messages, bytes, state, created_at,
    purge_after, restored_at)
SELECT r.id, c.id, 0, 1000, 10, 1000,
       CASE WHEN r.id % 50 = 0 THEN 'restored' ELSE 'purged' END,
       r.decided_at + interval '1 day', r.decided_at + interval '8 days',
       CASE WHEN r.id % 50 = 0 THEN r.decided_at + interval '7 days 20 hours' END
FROM retention_deletionrequest r
CROSS JOIN LATERAL (SELECT id FROM retention_conversation
                    WHERE department_id = r.scope_root_id ORDER BY id
                    OFFSET r.id % 97 LIMIT 3) AS c
WHERE r.status = 'completed' AND r.method <> 'personal'
"""

_HASHES = (
    "replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', ''), "
    "replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '')"
)

# Filed; each step approved (batch one step, server three) or rejected; started and
# executed a day later; personal deletions one event.
_REQUEST_EVENTS_SQL = f"""
INSERT INTO audit_auditevent (
    created_at, actor_id, actor_name, event_type, target_type, target_id, department_id,
    details, prev_hash, hash)
SELECT e.at, r.requester_id, 'bench', e.type, 'retention.deletionrequest', r.id::text,
       r.scope_root_id, e.details, {_HASHES}
FROM retention_deletionrequest r
CROSS JOIN LATERAL (VALUES
    (400, r.filed_at, jsonb_build_object('method', r.method, 'messages', 30), true),
    (401, r.filed_at + (r.id % 180) * interval '1 minute',
        jsonb_build_object('step', 1, 'role', 'manager'), r.status = 'completed'),
    (401, r.filed_at + interval '3 hours', jsonb_build_object('step', 2, 'role', 'security'),
        r.method = 'server'),
    (401, r.filed_at + interval '5 hours', jsonb_build_object('step', 3, 'role', 'admin'),
        r.method = 'server'),
    (403, r.filed_at + interval '1 hour',
        jsonb_build_object('step', 1, 'role', 'manager', 'reason', '范围过大'),
        r.status = 'rejected'),
    (430, r.filed_at + interval '1 day', '{{}}'::jsonb, r.status = 'completed'),
    (432, r.filed_at + interval '1 day 10 minutes', '{{}}'::jsonb, r.status = 'completed')
) AS e(type, at, details, wanted)
WHERE e.wanted AND (r.method <> 'personal' OR e.type = 400)
UNION ALL
SELECT r.filed_at, r.requester_id, 'bench', 410, 'retention.deletionrequest', r.id::text,
       r.scope_root_id, jsonb_build_object('messages', 30), {_HASHES}
FROM retention_deletionrequest r WHERE r.method = 'personal'
"""

_NOISE_SQL = f"""
INSERT INTO audit_auditevent (
    created_at, actor_id, actor_name, event_type, target_type, target_id, department_id,
    details, prev_hash, hash)
SELECT timestamptz '{YEAR_START}' + (g::float / %(n)s) * interval '365 days',
       NULL, 'bench', (%(types)s::int[])[1 + g %% 1000], (%(targets)s::text[])[1 + g %% 1000],
       (1 + g %% %(requests)s)::text, NULL,
       jsonb_build_object('why', 'quota', 'reason', '例行', 'messages', 5, 'attempt', 2),
       {_HASHES}
FROM generate_series(1, %(n)s) AS g
"""
