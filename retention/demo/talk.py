"""The messages of the demo conversations: sessions of talk on one topic at a time, timed
by the hours shops and offices keep, with the rare small file.

Messages are produced by a generator, one conversation after another, so a seed of any
size streams through bounded memory.
"""

from __future__ import annotations

import math
import random
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate

from retention.demo.fillins import Session
from retention.demo.org import Person
from retention.demo.plans import WINDOW_DAYS, Plan, Window
from retention.demo.scripts.customer import CUSTOMER_CLOSE, CUSTOMER_OPEN, CUSTOMER_TOPICS
from retention.demo.scripts.direct import DIRECT_TOPICS
from retention.demo.scripts.groups import GROUP_KIND_TOPICS, GROUP_TOPICS
from retention.demo.scripts.lines import Line, Step, Topic
from retention.demo.scripts.suppliers import SUPPLIER_TOPICS
from retention.demo.scripts.words import ATTACHMENTS

# About one message in two hundred carries a small file (kept rare: files are slow).
ATTACHMENT_RATE = 0.005

# Relative chance of a session starting in each hour of the day (local time). Shop
# customer service runs late into the evening; colleagues talk in office hours.
_SERVICE_HOURS = (
    1,
    0.5,
    0.2,
    0.1,
    0.1,
    0.2,
    0.5,
    1,
    3,
    7,
    9,
    9,
    7,
    6,
    8,
    8,
    7,
    6,
    5,
    6,
    8,
    8,
    6,
    3,
)
_OFFICE_HOURS = (0.1, 0, 0, 0, 0, 0, 0.2, 1, 6, 9, 9, 8, 5, 6, 8, 8, 8, 7, 4, 2, 1.5, 1, 0.5, 0.2)
_HOURS = tuple(range(24))
_SERVICE_CUM = tuple(accumulate(_SERVICE_HOURS))
_OFFICE_CUM = tuple(accumulate(_OFFICE_HOURS))


@dataclass(frozen=True, slots=True)
class DemoMessage:
    sender_id: int | None
    sender_name: str
    sent_at: datetime
    body: str
    # (file name, content, content type) for the few messages with a file.
    attachment: tuple[str, bytes, str] | None = None


def _expected_length(topics: tuple[Topic, ...], extra: tuple[Step, ...]) -> float:
    total_weight = sum(t.weight for t in topics)
    per_topic = sum(t.weight * sum(s.probability for s in t.steps) for t in topics)
    return per_topic / total_weight + sum(s.probability for s in extra)


_CUSTOMER_WEIGHTS = tuple(accumulate(t.weight for t in CUSTOMER_TOPICS))
_SUPPLIER_WEIGHTS = tuple(accumulate(t.weight for t in SUPPLIER_TOPICS))
_DIRECT_WEIGHTS = tuple(accumulate(t.weight for t in DIRECT_TOPICS))
_GROUP_CHOICES = {
    kind: (
        tuple(GROUP_TOPICS[name] for name, _ in topics),
        tuple(accumulate(w for _, w in topics)),
    )
    for kind, topics in GROUP_KIND_TOPICS.items()
}
_SESSION_LENGTH = {
    "customer": _expected_length(CUSTOMER_TOPICS, CUSTOMER_OPEN + CUSTOMER_CLOSE),
    "group": _expected_length(tuple(GROUP_TOPICS.values()), ()),
    "supplier": _expected_length(SUPPLIER_TOPICS, ()),
    "direct": _expected_length(DIRECT_TOPICS, ()),
}
# Seconds between two messages of a session, by who talks.
_GAPS = {"customer": (8, 150), "group": (20, 600), "supplier": (60, 1800), "direct": (10, 300)}


def iter_messages(
    rng: random.Random, plan: Plan, window: Window, attachment_rate: float = ATTACHMENT_RATE
) -> Iterator[DemoMessage]:
    """Exactly ``plan.messages`` messages for one conversation, in time order."""
    total = plan.messages
    starts = _session_starts(rng, plan, window, total)
    low_gap, high_gap = _GAPS[plan.script]
    emitted = 0
    t = 0.0
    latest = window.latest
    while emitted < total:
        # Sessions take their start from the sorted draws in proportion to progress, so
        # the talk covers the conversation's whole span whatever the sessions' lengths.
        start = starts[emitted * len(starts) // total]
        t = max(start, t + rng.uniform(low_gap, high_gap))
        for sender_id, sender_name, role, line, session in _session(rng, plan):
            if line.fields:
                if "colleague" in line.fields:
                    session.colleague_besides(sender_name)
                body = line.text.format_map(session)
            else:
                body = line.text
            attachment = None
            if rng.random() < attachment_rate and role in ATTACHMENTS:
                body, attachment = _attachment(rng, role, session)
            sent = datetime.fromtimestamp(min(t, latest), UTC)
            yield DemoMessage(sender_id, sender_name, sent, body, attachment)
            emitted += 1
            if emitted == total:
                return
            t += rng.uniform(low_gap, high_gap)


def _session_starts(rng: random.Random, plan: Plan, window: Window, total: int) -> list[float]:
    sessions = max(1, math.ceil(total / _SESSION_LENGTH[plan.script]))
    service = plan.script == "customer"
    cum_hours = _SERVICE_CUM if service else _OFFICE_CUM
    # Shoppers chat more at weekends; colleagues less.
    weekend_keep = 1.0 if service else 0.35
    span = max(plan.last_day - plan.first_day, 0.01)
    starts = []
    for _ in range(sessions):
        day = int(plan.first_day + rng.random() * span)
        if (window.first_weekday + day) % 7 >= 5 and rng.random() > weekend_keep:
            day = int(plan.first_day + rng.random() * span)
        day = min(day, WINDOW_DAYS - 1)
        hour = rng.choices(_HOURS, cum_weights=cum_hours)[0]
        starts.append(window.start + day * 86400 + hour * 3600 + rng.random() * 3600)
    starts.sort()
    return starts


def _session(
    rng: random.Random, plan: Plan
) -> Iterator[tuple[int | None, str, str, Line, Session]]:
    """One exchange on one topic: (sender id, sender name, role, line, fill-ins)."""
    script = plan.script
    if script == "customer":
        topic = rng.choices(CUSTOMER_TOPICS, cum_weights=_CUSTOMER_WEIGHTS)[0]
        steps = CUSTOMER_OPEN + topic.steps + CUSTOMER_CLOSE
        agent = rng.choice(plan.members)
        session = Session(rng, plan, agent_nick="小" + agent.name[-1])
        speakers = {"C": (None, plan.external_party), "S": (agent.pk, agent.name)}
        for step in steps:
            if step.probability < 1 and rng.random() >= step.probability:
                continue
            sender_id, sender_name = speakers[step.role]
            yield sender_id, sender_name, step.role, rng.choice(step.lines), session
        return

    session = Session(rng, plan)
    if script == "group":
        topics, cum = _GROUP_CHOICES[plan.group_type]
        topic = rng.choices(topics, cum_weights=cum)[0]
    elif script == "supplier":
        topic = rng.choices(SUPPLIER_TOPICS, cum_weights=_SUPPLIER_WEIGHTS)[0]
    else:
        topic = rng.choices(DIRECT_TOPICS, cum_weights=_DIRECT_WEIGHTS)[0]
    members = plan.members
    lead = plan.lead or rng.choice(members)
    others = [m for m in members if m is not lead] or members
    starter = rng.choice(members)
    previous: Person | None = None
    for step in topic.steps:
        if step.probability < 1 and rng.random() >= step.probability:
            continue
        role = step.role
        if role == "V":
            yield None, rng.choice(plan.externals), role, rng.choice(step.lines), session
            continue
        if role == "L":
            person = lead
        elif role == "A":
            person = starter
        elif role == "B":
            person = members[1] if starter is members[0] else members[0]
        else:
            # "M" or "U": someone else than the one who just spoke, when there is anyone.
            person = rng.choice(others)
            if person is previous and len(others) > 1:
                person = rng.choice(others)
        previous = person
        yield person.pk, person.name, role, rng.choice(step.lines), session


def _attachment(
    rng: random.Random, role: str, session: Session
) -> tuple[str, tuple[str, bytes, str]]:
    body, name_pattern, kind = rng.choice(ATTACHMENTS[role])
    serial = rng.randrange(10**8)
    name = name_pattern.format(n=serial)
    if kind == "png":
        return body, (name, tiny_png(rng, serial), "image/png")
    receipt = (
        f"清风电商 电子回单\n编号：{serial:08d}\n订单号：{session['order']}\n"
        f"金额：¥{session['price']}.00\n状态：已完成\n"
    )
    return body, (name, receipt.encode(), "text/plain; charset=utf-8")


def tiny_png(rng: random.Random, serial: int) -> bytes:
    """An 8×8 single-colour PNG, unique per ``serial`` (a text chunk), about 100 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    width = height = 8
    colour = bytes(rng.randrange(256) for _ in range(3))
    raw = b"".join(b"\x00" + colour * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"tEXt", b"Comment\x00qingli-demo-%d" % serial)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def messages_for(
    rng: random.Random, plans: list[Plan], window: Window
) -> Iterator[tuple[Plan, DemoMessage]]:
    """All messages of all plans, conversation by conversation."""
    for plan in plans:
        for message in iter_messages(rng, plan, window):
            yield plan, message
