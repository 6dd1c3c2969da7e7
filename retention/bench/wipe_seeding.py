"""The data ``bench_wipe`` works on: the seeded scratch database with permissive policies,
the half of the demo company its requests cover, and those requests filed and approved
through the real services by the demo cast."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable

from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from retention.bench.probes import PgServer, using_database
from retention.bench.wipe_worker import drop_scheduled
from retention.demo.org import COMPANY_NAME
from retention.demo.seed import seed_demo
from retention.governance import approvals
from retention.governance.decisions import do_approve_step
from retention.governance.filing import do_file_request
from retention.governance.policy_changes import do_update_policies
from retention.governance.scope import resolve_scope
from retention.models import (
    Conversation,
    DeletionRequest,
    Department,
    Member,
    Message,
    RequestStatus,
)
from retention.wipes.runner import QUEUE

PERMISSIVE_POLICIES = {
    "execution_window": None,
    "batch_delay_hours": 0,
    "server_delay_hours": 0,
    "batch_min_consecutive_signin_days": 0,
    # The demo has one admin: the default server chain (manager, security, admin) cannot
    # be staffed for the director's request once its manager step falls to the admin.
    "approval_chains": {"batch": ["manager"], "server": ["manager", "security"]},
}


def seed_scratch(
    server: PgServer, dbname: str, *, messages: int, seed: int, say: Callable[[str], None]
) -> None:
    """Create ``dbname``, migrate it, seed ``messages`` demo messages and make the
    policies permissive."""
    server.create(dbname)
    started = time.perf_counter()
    with using_database(dbname):
        call_command("migrate", verbosity=0)
        report = seed_demo(
            messages=messages,
            password=secrets.token_urlsafe(12),
            seed=seed,
            progress=lambda _line: None,
        )
        admin = Member.objects.get(username="admin")
        # seed_demo switched require_second_factor off: the benchmark's members act
        # without a second factor, as in the demo.
        do_update_policies(actor=admin, changes=PERMISSIVE_POLICIES, verified_second_factor=False)
        connection.close()
    with server.connect(dbname) as conn:
        conn.execute("VACUUM ANALYZE")
    conversations = sum(v for k, v in report.conversations.items() if k != "supplier groups")
    say(
        f"Seeded {report.messages:,} messages in {conversations:,} conversations into "
        f"{dbname} in {time.perf_counter() - started:.1f} s (migrate, seed_demo, "
        "permissive policies, VACUUM ANALYZE)"
    )


def half(say: Callable[[str], None]) -> list[Department]:
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
    say(
        f"Scope: regions {', '.join(r.name for r in best)} with their sub-departments: "
        f"{share:.1%} of {total:,} messages"
    )
    return list(best)


def cast() -> dict[str, Member]:
    """The demo members who file, approve and restore."""
    wanted = ["admin", "director", "security"]
    found = {m.username: m for m in Member.objects.filter(username__in=wanted)}
    if len(found) != len(wanted):
        raise CommandError("the seeded database lacks the demo sign-ins")
    return found


def file_request(
    method: str,
    *,
    director: Member,
    departments: list[Department],
    say: Callable[[str], None],
) -> DeletionRequest:
    """File a request for the chosen half, as the demo director."""
    started = time.perf_counter()
    protected = list(Conversation.objects.filter(is_protected=True).values_list("pk", flat=True))
    data = {
        "departments": [d.pk for d in departments],
        "include_subdepartments": True,
        "confirm_protected": protected,
    }
    scope = resolve_scope(method, data, director)
    request, _ = do_file_request(
        requester=director, scope=scope, reason=f"bench_wipe: {method} of half the demo"
    )
    say(
        f"Filed {method} request {request.pk} ({request.preview['messages']:,} messages, "
        f"{request.preview['conversations']:,} conversations) in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return request


def approve(request: DeletionRequest, say: Callable[[str], None]) -> None:
    """Approve every step; its evidence export (if it needs one) is made before."""
    started = time.perf_counter()
    approvers = []
    while request.status == RequestStatus.PENDING:
        step = approvals.current_step(request)
        eligible = sorted(approvals.eligible_approvers(step), key=lambda m: m.pk)
        if not eligible:
            raise CommandError(f"nobody may decide step {step.order} ({step.role})")
        do_approve_step(
            request,
            acting_user=eligible[0],
            verified_second_factor=False,  # the demo's policy: see seed_scratch()
            comment="bench_wipe",
        )
        approvers.append(eligible[0].username)
        request.refresh_from_db()
    if request.status != RequestStatus.APPROVED:
        raise CommandError(f"request {request.pk} is {request.status}, not approved")
    # Approval scheduled a start at its run time (now); only a scheduler would move it
    # to the queue, and the benchmark enqueues the start itself.
    drop_scheduled(QUEUE)
    say(
        f"Approved request {request.pk} by {', '.join(approvers)} in "
        f"{time.perf_counter() - started:.1f} s"
    )


def warm(dbname: str, server: PgServer) -> None:
    """Read the message table once, so no path pays for a cold cache the others do not."""
    with server.connect(dbname) as conn:
        conn.execute("SELECT count(*), sum(body_bytes) FROM retention_message")
        conn.execute("SELECT count(*) FROM retention_conversation")
