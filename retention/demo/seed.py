"""Seeding the demo company: :func:`seed_demo` removes earlier demo data (with ``reset``),
builds the organisation and plans its conversations in one transaction, then streams the
messages in through the chunked writer and reports what was stored."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import Count

from audit import log as audit
from audit.events import EventType
from retention.demo.org import SIGN_INS, DemoDataError, Organisation, build_organisation
from retention.demo.plans import Plan, Window, plan_conversations
from retention.demo.reset import (
    DEMO_SOURCE,
    delete_demo_data,
    demo_conversations,
    demo_departments,
    demo_members,
    footprint,
)
from retention.demo.talk import messages_for
from retention.demo.writer import ChunkWriter, Encoder, Row, insert_rows, stamp_conversations
from retention.governance.policy_changes import do_operator_set_policies
from retention.models import Conversation, DataKey, Message, Participant, Sensitivity
from retention.records.crypto import ConversationCipher, new_wrapped_key
from retention.records.store import NewAttachment

DEFAULT_CHUNK = 20_000


@dataclass(slots=True)
class SeedReport:
    departments: int = 0
    department_levels: int = 0
    members: int = 0
    conversations: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    sensitivity: dict[str, int] = field(default_factory=dict)
    attachments: int = 0
    seconds: float = 0.0
    message_seconds: float = 0.0
    removed: dict[str, int] | None = None
    # (username, role, department) of the named sign-ins.
    sign_ins: list[tuple[str, str, str]] = field(default_factory=list)
    copy: bool = False
    # The demo switches the require_second_factor policy off (its people have no
    # authenticators); the command says so.
    second_factor_off: bool = False

    @property
    def rate(self) -> float:
        """Messages per second over the whole run."""
        return self.messages / self.seconds if self.seconds else 0.0


def seed_demo(
    *,
    messages: int,
    password: str,
    seed: int = 1,
    reset: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    progress: Callable[[str], None] | None = None,
) -> SeedReport:
    """Generate the demo company with ``messages`` messages; see the module docstring.

    Raises :class:`DemoDataError` (nothing changed) when demo data is already there and
    ``reset`` is false, or when it cannot be removed.
    """
    if messages < 0:
        raise ValueError("the number of messages must be 0 or more")
    if not password:
        raise ValueError("a password is required: every demo sign-in uses it")
    if chunk_size < 1:
        raise ValueError("the chunk size must be at least 1")
    say = progress or (lambda _text: None)
    started = time.perf_counter()
    report = SeedReport()
    # Built first: it checks the message table's columns, before anything is changed.
    writer = ChunkWriter()

    rng = random.Random(seed)
    window = Window.ending_today()
    # Removing the old demo and creating the new organisation is one transaction: if
    # anything fails up to here (a name clash, say), the database is as it was.
    with transaction.atomic():
        existing = footprint()
        if existing.any:
            if not reset:
                raise DemoDataError(
                    f"this database already has demo data ({existing.conversations} "
                    f"conversations, {existing.members} members, {existing.departments} "
                    "departments); run with --reset to replace it"
                )
            say("Removing the earlier demo data…")
            phase = time.perf_counter()
            report.removed = delete_demo_data()
            say(
                "  removed {messages:,} messages, {conversations:,} conversations, "
                "{members:,} members, {departments:,} departments".format(**report.removed)
                + f" in {time.perf_counter() - phase:.1f} s"
            )
        phase = time.perf_counter()
        org = build_organisation(rng, password)
        plans = plan_conversations(rng, org, messages)
        _create_conversations(plans)
    say(
        f"Created {len(org.departments)} departments, {len(org.people)} members and "
        f"{len(plans):,} conversations in {time.perf_counter() - phase:.1f} s; "
        f"writing {messages:,} messages…"
    )

    message_started = time.perf_counter()
    report.attachments = _write_messages(
        writer, rng, plans, window, messages, chunk_size, say, message_started
    )
    report.copy = writer.copy
    report.message_seconds = time.perf_counter() - message_started
    phase = time.perf_counter()
    stamp_conversations(DEMO_SOURCE)
    say(f"Set conversations' first and last message times in {time.perf_counter() - phase:.1f} s")
    _refresh_planner_statistics()

    phase = time.perf_counter()
    _fill_report(report, org)
    say(f"Counted what was stored in {time.perf_counter() - phase:.1f} s")
    report.seconds = time.perf_counter() - started
    audit.record(
        EventType.DEMO_DATA_SEEDED,
        actor=None,
        department_id=org.company.pk,
        details={
            "seed": seed,
            "departments": report.departments,
            "members": report.members,
            "conversations": report.conversations,
            "messages": report.messages,
            "sensitivity": report.sensitivity,
            "attachments": report.attachments,
            "reset": report.removed,
            "seconds": round(report.seconds, 1),
        },
    )
    # Nobody in the demo has an authenticator yet: without this, approving, holds and
    # policy changes would first need each person to set one up.
    do_operator_set_policies(changes={"require_second_factor": False}, via="seed_demo")
    report.second_factor_off = True
    return report


def _refresh_planner_statistics() -> None:
    """Bulk COPY leaves PostgreSQL's statistics stale until autovacuum comes round; pages
    opened right after seeding would get plans made for empty tables."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "ANALYZE retention_message, retention_conversation, retention_participant"
            )


def _create_conversations(plans: list[Plan]) -> None:
    conversations = [
        Conversation(
            kind=p.kind,
            title=p.title,
            department=p.department,
            external_party=p.external_party,
            # Supplier groups are what protection is for: deleting them needs confirmation.
            is_protected=p.script == "supplier",
            source=DEMO_SOURCE,
        )
        for p in plans
    ]
    insert_rows(Conversation, conversations)
    keys = []
    for plan, conversation in zip(plans, conversations, strict=True):
        plan.conversation = conversation
        # Each conversation gets its own data key, as create_conversation gives it.
        plan.wrapped_key = new_wrapped_key(conversation.pk)
        keys.append(DataKey(conversation=conversation, wrapped_key=plan.wrapped_key))
    insert_rows(DataKey, keys)
    insert_rows(
        Participant,
        [
            Participant(conversation_id=plan.conversation.pk, member_id=member.pk)
            for plan in plans
            for member in plan.members
        ],
    )


def _write_messages(
    writer: ChunkWriter,
    rng: random.Random,
    plans: list[Plan],
    window: Window,
    total: int,
    chunk_size: int,
    say: Callable[[str], None],
    started: float,
) -> int:
    """Stream, encode and store all messages; returns how many carry an attachment."""
    encoder = Encoder()
    rows: list[Row] = []
    attached: list[tuple[Row, Conversation, ConversationCipher, NewAttachment]] = []
    done = attachments = 0
    current: Plan | None = None
    cipher: ConversationCipher | None = None
    make_row = encoder.row
    for plan, message in messages_for(rng, plans, window):
        if plan is not current:
            current = plan
            cipher = ConversationCipher(plan.conversation.pk, plan.wrapped_key)
        row = make_row(
            plan.conversation.pk,
            cipher,
            message.sender_id,
            message.sender_name,
            message.sent_at,
            message.body,
        )
        if message.attachment is None:
            rows.append(row)
        else:
            attached.append((row, plan.conversation, cipher, NewAttachment(*message.attachment)))
        if len(rows) + len(attached) >= chunk_size:
            writer.write(rows, attached)
            done += len(rows) + len(attached)
            attachments += len(attached)
            rows, attached = [], []
            _say_progress(say, done, total, started)
    if rows or attached:
        writer.write(rows, attached)
        done += len(rows) + len(attached)
        attachments += len(attached)
        _say_progress(say, done, total, started)
    return attachments


def _say_progress(say: Callable[[str], None], done: int, total: int, started: float) -> None:
    elapsed = time.perf_counter() - started
    rate = done / elapsed if elapsed else 0.0
    say(f"  {done:>11,} / {total:,} messages ({done / total:6.1%})  {rate:,.0f}/s")


def _fill_report(report: SeedReport, org: Organisation) -> None:
    """Counts as stored in the database, not as intended."""
    departments = demo_departments()
    report.departments = departments.count()
    depths = departments.values_list("depth", flat=True).distinct()
    report.department_levels = len(set(depths))
    report.members = demo_members().count()
    report.conversations = {
        row["kind"]: row["n"]
        for row in demo_conversations().values("kind").annotate(n=Count("pk")).order_by("kind")
    }
    report.conversations["supplier groups"] = (
        demo_conversations().filter(title__startswith="供应商对接群").count()
    )
    by_level = dict(
        Message.objects.filter(conversation__source=DEMO_SOURCE)
        .values_list("sensitivity")
        .annotate(n=Count("pk"))
        .order_by()
    )
    report.sensitivity = {
        level.name.lower(): by_level.get(level.value, 0) for level in reversed(Sensitivity)
    }
    report.messages = sum(by_level.values())
    places = {org.company.pk: org.company.name}
    places.update({d.pk: d.name for d in org.departments})
    report.sign_ins = [
        (s.username, str(s.role), places[org.by_username[s.username].department.pk])
        for s in SIGN_INS
    ]
