"""The ``benchmark_preview`` benchmark: the deletion preview (``compute_preview``) timed for
representative scopes.

Run it on a database seeded with seed_demo, e.g. 1,000,000 messages on PostgreSQL:
    manage.py benchmark_preview --repeat 7

The scopes are those of the demo company 清风电商: the store of ``staff``, the region
华东区 of ``manager`` (with and without sub-departments, and one month of it), a
server-side wipe of that region, the whole company as ``admin``, and the region again
while a hold sits on the staff's store. The hold is placed through ``do_place_hold``
inside a transaction that is rolled back afterwards, so the command leaves no trace.

``--explain`` prints ``EXPLAIN (ANALYZE, BUFFERS)`` of the slowest query of each scope.
"""

from __future__ import annotations

import statistics
import time
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from typing import TextIO

from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from retention.demo.org import COMPANY_NAME, STAFF_STORE
from retention.governance.policy_changes import do_operator_set_policies
from retention.governance.protection import do_place_hold
from retention.governance.scope import Scope, compute_preview, resolve_scope
from retention.models import Conversation, Department, Member, Message, RequestMethod

REGION = "华东区"
USERS = ["staff", "manager", "admin", "security"]


@dataclass
class Case:
    label: str
    requester: Member
    scope: Scope


def padded(text: str, width: int) -> str:
    """Left-align in a terminal, where each CJK character takes two columns."""
    columns = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - columns)


def benchmark_preview(stdout: TextIO, *, repeat: int, explain: bool) -> None:
    """Time the previews, printing to ``stdout`` (see the module docstring)."""
    PreviewBench(stdout).run(repeat, explain)


class PreviewBench:
    """Times the preview of each case, and prints its slowest query's plan if asked."""

    def __init__(self, stdout: TextIO) -> None:
        self.stdout = stdout

    def run(self, repeat: int, explain: bool) -> None:
        if repeat < 1:
            raise CommandError("--repeat must be at least 1")
        members = {m.username: m for m in Member.objects.filter(username__in=USERS)}
        missing = sorted(set(USERS) - set(members))
        if missing:
            raise CommandError(f"run seed_demo first: no member named {', '.join(missing)}")
        company = Department.objects.filter(name=COMPANY_NAME, parent__isnull=True).first()
        region = Department.objects.filter(name=REGION, parent=company).first()
        store = Department.objects.filter(name=STAFF_STORE, parent=region).first()
        if not (company and region and store):
            raise CommandError(f"run seed_demo first: no {COMPANY_NAME} / {REGION} / {STAFF_STORE}")
        self.explain = explain and connection.vendor == "postgresql"

        staff, manager, admin = members["staff"], members["manager"], members["admin"]
        today = timezone.localdate()
        # Confirm every protected chat (supplier groups), as a filing request would have to.
        protected = list(
            Conversation.objects.filter(is_protected=True).values_list("pk", flat=True)
        )

        def case(label, method, requester, **data) -> Case:
            data = {"include_subdepartments": True, "confirm_protected": protected, **data}
            return Case(label, requester, resolve_scope(method, data, requester))

        cases = [
            case(
                f"batch: staff's store {store.name} + teams",
                RequestMethod.BATCH,
                staff,
                departments=[store.pk],
            ),
            case(
                f"batch: region {region.name} with sub-departments",
                RequestMethod.BATCH,
                manager,
                departments=[region.pk],
            ),
            case(
                f"batch: region {region.name} without sub-departments",
                RequestMethod.BATCH,
                manager,
                departments=[region.pk],
                include_subdepartments=False,
            ),
            case(
                f"batch: region {region.name}, sent 60 to 30 days ago",
                RequestMethod.BATCH,
                manager,
                departments=[region.pk],
                sent_after=today - timedelta(days=60),
                sent_before=today - timedelta(days=30),
            ),
            case(
                f"server: wipe region {region.name}",
                RequestMethod.SERVER,
                manager,
                departments=[region.pk],
            ),
            case("server: whole company (admin)", RequestMethod.SERVER, admin, whole_company=True),
        ]

        self.stdout.write(
            f"{Message.objects.count():,} messages, {Conversation.objects.count():,} "
            f"conversations, {connection.vendor}; {repeat} timed runs per scope after one "
            "warm-up\n"
        )
        header = (
            f"{'scope':58} {'messages':>10} {'held':>8} {'median ms':>10} {'max ms':>8}"
            f" {'queries':>8} {'slowest q ms':>13}"
        )
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for c in cases:
            self.time_case(c, repeat)

        # A hold on the staff's store, placed the real way and rolled back afterwards.
        with transaction.atomic():
            # The benchmark acts from the operator's shell, with no session to verify:
            # inside this rolled-back transaction it lifts the second-factor requirement.
            do_operator_set_policies(
                changes={"require_second_factor": False}, via="benchmark_preview"
            )
            do_place_hold(
                acting_user=members["security"],
                verified_second_factor=False,
                kind="legal",
                reason="benchmark_preview (rolled back)",
                conversations=[],
                departments=[store],
            )
            held = case(
                f"batch: region {region.name}, hold on {store.name}",
                RequestMethod.BATCH,
                manager,
                departments=[region.pk],
            )
            self.time_case(held, repeat)
            transaction.set_rollback(True)

    def time_case(self, case: Case, repeat: int) -> None:
        def run() -> dict:
            return compute_preview(case.scope, requester=case.requester)

        preview = run()  # warm caches
        timings = []
        slowest: tuple[float, str] = (0.0, "")
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                preview = run()
                timings.append((time.perf_counter() - start) * 1000)
            for q in queries.captured_queries:
                ms = float(q["time"]) * 1000
                if ms > slowest[0]:
                    slowest = (ms, q["sql"])
        self.stdout.write(
            f"{padded(case.label, 58)} {preview['messages']:>10,} "
            f"{preview['excluded']['held']['messages']:>8,} "
            f"{statistics.median(timings):>10.1f} {max(timings):>8.1f} "
            f"{len(queries.captured_queries):>8} {slowest[0]:>13.1f}"
        )
        if self.explain and slowest[1]:
            self.print_plan(slowest[1])

    def print_plan(self, sql: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            plan = "\n".join(f"    {row[0]}" for row in cursor.fetchall())
        self.stdout.write(f"  slowest query:\n    {sql}\n{plan}\n")
