"""The ``bench_audit`` benchmark (``manage.py bench_audit --events N [--repeat R] [--keep]
[--no-verify]``).

Times the audit log explorer on a log of N events (server time, in-process, through
Django's test client signed in as an auditor: middleware, session, view, queries and the
template, as a browser request would go), against the goal of 100 ms a page.

1. Creates the scratch PostgreSQL database ``qingli_benchaudit_<N>`` beside the configured
   one (the configured database is not touched), migrates it, makes a department tree
   (1 company, 4 regions, 12 stores, 12 teams) and an auditor.
2. Seeds N events spread over 180 days with COPY: a realistic mix of sign-ins, requests
   and their approvals, holds, exports, policy changes, with Chinese details. The chain
   is real: every hash is computed with :func:`audit.log.hash_of_fields`, so the verify
   job and the digests work on it too. The explorer's indexes are dropped during the COPY
   and built after it (their build times are printed), then VACUUM ANALYZE.
3. Times each page and API read ``--repeat`` times after one warm-up, printing the median
   and p95 in ms and the number of queries.
4. Unless ``--no-verify``: times the daily digests job over the 180 days and one
   verification run of the whole chain.

``--keep`` leaves the database for EXPLAIN and a re-run reuses it (seeding is skipped
when it already holds N events). See docs/performance.md, "Audit log explorer".
"""

from __future__ import annotations

import json
import random
import statistics
import time
from datetime import timedelta
from typing import TextIO

from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.pagination import Cursor

from audit.events import EventType
from audit.log import GENESIS_HASH, hash_of_fields
from audit.models import AuditEvent, ChainVerification
from audit.verification import head_id, record_digests
from retention.api.audit import EventCursorPagination
from retention.bench.probes import PgServer, using_database
from retention.models import Department, Member
from retention.models.roles import Role, ensure_role_groups
from retention.reports.verification_runs import run_verification

SCRATCH_PREFIX = "qingli_benchaudit"
GOAL_MS = 100
SPAN = timedelta(days=180)
COPY_COLUMNS = [
    "id",
    "created_at",
    "actor_id",
    "actor_name",
    "event_type",
    "target_type",
    "target_id",
    "department_id",
    "ip_address",
    "details",
    "prev_hash",
    "hash",
]
# What a merchant's log holds, roughly: (event type, weight, object type).
MIX = [
    (EventType.SIGN_IN, 30, "retention.member"),
    (EventType.SIGN_OUT, 10, "retention.member"),
    (EventType.MESSAGES_INGESTED, 15, ""),
    (EventType.REQUEST_FILED, 6, "retention.deletionrequest"),
    (EventType.REQUEST_STEP_APPROVED, 6, "retention.deletionrequest"),
    (EventType.REQUEST_APPROVED, 4, "retention.deletionrequest"),
    (EventType.REQUEST_EXECUTED, 4, "retention.deletionrequest"),
    (EventType.PERSONAL_DELETED, 8, "retention.conversation"),
    (EventType.CONVERSATION_HIDDEN, 6, "retention.conversation"),
    (EventType.EXPORT_REQUESTED, 3, "retention.deletionrequest"),
    (EventType.EXPORT_DOWNLOADED, 3, "retention.deletionrequest"),
    (EventType.HOLD_PLACED, 2, "retention.conversation"),
    (EventType.POLICY_CHANGED, 1, "retention.policy"),
    (EventType.SIGN_IN_FAILED, 2, "retention.member"),
]
REASONS = [
    "清理过期的客服会话",
    "顾客要求删除聊天记录",
    "退款纠纷已结案，按规定清理",
    "门店撤销，清理历史聊天",
    "季度例行清理",
    "误发订单号和手机号，申请删除",
    "供应商群聊归档后删除",
    "员工离职，清理个人会话",
]
TITLES = ["买家咨询物流", "退货退款沟通", "发票问题", "优惠券使用", "地址修改", "售后维修"]
# A rare marker (in 1 event in 20,000) for a selective search hit; a miss no event holds.
RARE = "稽核标记"
MISSING = "这段文字不存在"


def bench_audit(
    stdout: TextIO, *, events: int, repeat: int, keep: bool, no_verify: bool, seed: int
) -> None:
    """Run the benchmark, printing to ``stdout`` (see the module docstring)."""
    if connection.vendor != "postgresql":
        raise CommandError(
            "bench_audit needs PostgreSQL (it measures the PostgreSQL indexes and creates "
            "a scratch database beside yours): set DATABASE_URL=postgres://…"
        )
    if events < 1000 or repeat < 3:
        raise CommandError("--events must be at least 1000 and --repeat at least 3")
    AuditBench(stdout, events=events, seed=seed).run(repeat=repeat, keep=keep, verify=not no_verify)


class AuditBench:
    """One run: the scratch database of ``events`` events, and the timings read from it."""

    def __init__(self, stdout: TextIO, *, events: int, seed: int) -> None:
        self.stdout = stdout
        self.events = events
        self.server = PgServer.of_default_connection()
        self.dbname = f"{SCRATCH_PREFIX}_{events}"
        self.rng = random.Random(seed)

    def run(self, *, repeat: int, keep: bool, verify: bool) -> None:
        events = self.events
        try:
            self.prepare(events)
            with using_database(self.dbname):
                self.report(events, repeat)
                if verify:
                    self.verify()
                connection.close()
        finally:
            if not keep:
                self.server.drop(self.dbname)
                self.stdout.write(f"Dropped {self.dbname}.")

    # --- the data -------------------------------------------------------------------------

    def prepare(self, events: int) -> None:
        """Create and seed the scratch database unless a kept one already holds N events."""
        if self.server.exists(self.dbname):
            with self.server.connect(self.dbname) as conn:
                found = conn.execute("SELECT count(*) FROM audit_auditevent").fetchone()[0]
            if found == events:
                self.stdout.write(f"Reusing {self.dbname} ({found:,} events).")
                return
            self.server.drop(self.dbname)
        self.server.create(self.dbname)
        with using_database(self.dbname):
            call_command("migrate", verbosity=0)
            self.make_org()
            self.seed_events(events)
            connection.close()
        started = time.perf_counter()
        with self.server.connect(self.dbname) as conn:
            conn.execute("VACUUM ANALYZE")
        self.stdout.write(f"VACUUM ANALYZE {time.perf_counter() - started:.1f} s")

    def make_org(self) -> None:
        ensure_role_groups()
        company = Department.objects.create(name="清风电商")
        for r in range(4):
            region = Department.objects.create(name=f"区域{r + 1}", parent=company)
            for s in range(3):
                store = Department.objects.create(name=f"门店{r + 1}-{s + 1}", parent=region)
                Department.objects.create(name="客服组", parent=store)
        auditor = Member.objects.create_user(username="auditor", password=None, department=company)
        auditor.groups.set([Group.objects.get(name=Role.AUDITOR)])

    def seed_events(self, n: int) -> None:
        rng = self.rng
        departments = list(Department.objects.values_list("pk", flat=True))
        actors = [(5000 + i, f"member{i:03d}") for i in range(120)]
        types, weights, objects = zip(*MIX, strict=True)
        end = timezone.now() - timedelta(hours=1)
        start = end - SPAN
        step_us = SPAN / timedelta(microseconds=1) / n
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'audit_auditevent' "
                "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
            )
            indexes = cursor.fetchall()
            for name, _definition in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
        started = time.perf_counter()
        prev = GENESIS_HASH
        chosen = rng.choices(range(len(types)), weights=weights, k=n)
        raw = connection.connection  # psycopg 3
        with raw.cursor() as cursor:
            copy_sql = f"COPY audit_auditevent ({', '.join(COPY_COLUMNS)}) FROM STDIN"
            with cursor.copy(copy_sql) as copy:
                for i in range(n):
                    k = chosen[i]
                    event_type, object_type = int(types[k]), objects[k]
                    actor_id, actor_name = actors[rng.randrange(len(actors))]
                    if event_type == EventType.MESSAGES_INGESTED:
                        actor_id, actor_name = None, ""
                    created = start + timedelta(microseconds=int(i * step_us))
                    target_id = ""
                    if object_type == "retention.member":
                        target_id = str(actor_id)
                    elif object_type == "retention.deletionrequest":
                        target_id = str(rng.randrange(1, 20_000))
                    elif object_type == "retention.conversation":
                        target_id = str(rng.randrange(1, 50_000))
                    elif object_type:
                        target_id = "1"
                    details = self.details_for(event_type, i)
                    department = rng.choice(departments) if object_type else None
                    ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                    digest = hash_of_fields(
                        prev_hash=prev,
                        created_at=created,
                        actor_id=actor_id,
                        actor_name=actor_name,
                        event_type=event_type,
                        target_type=object_type,
                        target_id=target_id,
                        department_id=department,
                        ip_address=ip,
                        details=details,
                    )
                    copy.write_row(
                        [
                            i + 1,
                            created,
                            actor_id,
                            actor_name,
                            event_type,
                            object_type,
                            target_id,
                            department,
                            ip,
                            json.dumps(details, ensure_ascii=False),
                            prev,
                            digest,
                        ]
                    )
                    prev = digest
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('audit_auditevent', 'id'), %s)", [n]
            )
        self.stdout.write(f"Seeded {n:,} events with COPY in {time.perf_counter() - started:.1f} s")
        with connection.cursor() as cursor:
            for name, definition in indexes:
                started = time.perf_counter()
                cursor.execute(definition)
                self.stdout.write(f"  index {name}: {time.perf_counter() - started:.1f} s")

    def details_for(self, event_type: int, i: int) -> dict:
        rng = self.rng
        if event_type in (EventType.SIGN_IN, EventType.SIGN_OUT, EventType.SIGN_IN_FAILED):
            return {"via": rng.choice(["web", "api"])}
        if event_type == EventType.MESSAGES_INGESTED:
            return {"messages": rng.randrange(1, 1000), "source": "千牛"}
        details = {"reason": rng.choice(REASONS), "title": rng.choice(TITLES)}
        if i % 20_000 == 7:
            details["note"] = f"{RARE}-{i}"
        return details

    # --- the timings ----------------------------------------------------------------------

    def report(self, n: int, repeat: int) -> None:
        auditor = Member.objects.get(username="auditor")
        client = Client()
        client.force_login(auditor)
        total = AuditEvent.objects.count()
        head = head_id()
        region = Department.objects.filter(depth=1).order_by("pk").first()
        store = Department.objects.filter(depth=2).order_by("pk").first()
        busy_request = (
            AuditEvent.objects.filter(target_type="retention.deletionrequest")
            .order_by("-id")
            .values_list("target_id", flat=True)
            .first()
        )
        middle = AuditEvent.objects.filter(id__gte=head // 2).order_by("id").first()
        day = timezone.localtime(middle.created_at).date()
        since, until = f"{day}T00:00", f"{day + timedelta(days=1)}T00:00"
        api_cursor = _api_cursor(head // 2)
        pages = [
            ("first page, no filter", "/audit/"),
            ("deep page (before = middle id)", f"/audit/?before={head // 2}"),
            ("deepest page (before = 60)", "/audit/?before=60"),
            ("actor", "/audit/?actor=member007"),
            ("actor, deep", f"/audit/?actor=member007&before={head // 2}"),
            ("action, common (sign-in)", f"/audit/?action={EventType.SIGN_IN}"),
            ("action, rare (policy changed)", f"/audit/?action={EventType.POLICY_CHANGED}"),
            (
                "department, one store (no sub)",
                f"/audit/?department={store.pk}&include_subdepartments=false",
            ),
            ("department, region + subtree", f"/audit/?department={region.pk}"),
            ("request", f"/audit/?request={busy_request}"),
            ("time range, one day in the middle", f"/audit/?since={since}&until={until}"),
            ("actor + one day", f"/audit/?actor=member007&since={since}&until={until}"),
            ("search hit, common 2 chars (退款)", "/audit/?q=退款"),
            ("search hit, 4 chars (门店撤销)", "/audit/?q=门店撤销"),
            (f"search hit, rare ({RARE})", f"/audit/?q={RARE}"),
            ("search miss, 7 chars", f"/audit/?q={MISSING}"),
            ("search miss, 2 chars (无此)", "/audit/?q=无此"),
            ("API, first page", "/api/v1/audit/events/"),
            ("API, deep cursor (middle)", f"/api/v1/audit/events/?cursor={api_cursor}"),
            ("API, actor + action", "/api/v1/audit/events/?actor=member007&action=400"),
            ("API, search hit (退款)", "/api/v1/audit/events/?q=退款"),
            ("verify page", "/audit/verify/"),
        ]
        self.stdout.write(
            f"\n{total:,} events, PostgreSQL {connection.pg_version // 10000}; "
            f"{repeat} timed runs per page after one warm-up (server time, ms)\n"
        )
        self.stdout.write(f"{'median':>8} {'p95':>8} {'max':>8} {'queries':>7} {'rows':>5}  page")
        for label, url in pages:
            self.time_page(client, label, url, repeat)

    def time_page(self, client: Client, label: str, url: str, repeat: int) -> None:
        response = client.get(url)  # warm caches and connections
        if response.status_code != 200:
            raise CommandError(f"{url}: HTTP {response.status_code}: {response.content[:300]}")
        timings = []
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                timings.append((time.perf_counter() - started) * 1000)
        rows = _rows_of(response)
        median = statistics.median(timings)
        p95 = statistics.quantiles(timings, n=20, method="inclusive")[18]
        over = "" if p95 < GOAL_MS else f"  (p95 over the {GOAL_MS} ms goal)"
        self.stdout.write(
            f"{median:8.1f} {p95:8.1f} {max(timings):8.1f} {len(queries):7} {rows:5}  {label}{over}"
        )

    def verify(self) -> None:
        started = time.perf_counter()
        days = record_digests()
        self.stdout.write(
            f"\nDaily digests: {len(days)} days recorded in {time.perf_counter() - started:.2f} s"
        )
        run = ChainVerification.objects.create()
        started = time.perf_counter()
        run = run_verification(run.pk)
        self.stdout.write(
            f"Verification of the whole chain: {run.status}, {run.events_checked:,} events and "
            f"{run.digests_checked} digests in {time.perf_counter() - started:.1f} s "
            f"(intact up to event {run.last_good_id})"
        )


def _rows_of(response) -> int:
    if response.get("Content-Type", "").startswith("application/json"):
        return len(response.json()["results"])
    return response.content.decode().count('data-testid="event-')


def _api_cursor(position: int) -> str:
    """A cursor of the API's pagination pointing at ``position`` (as its "next" would)."""
    paginator = EventCursorPagination()
    paginator.base_url = "http://testserver/"  # all encode_cursor needs of a request
    url = paginator.encode_cursor(Cursor(offset=0, reverse=False, position=str(position)))
    return url.split("cursor=", 1)[1]
