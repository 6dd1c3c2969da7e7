"""Which conversations the demo company has, and the messages in them.

Planning is cheap and done up front (a few tens of thousands of conversations at most);
messages are produced by a generator, one conversation after another, so a seed of any
size streams through bounded memory.
"""

from __future__ import annotations

import math
import random
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate

from django.utils import timezone

from retention.demo import pii, scripts
from retention.demo.org import STAFF2_STORE, STAFF_STORE, Organisation, Person, Store
from retention.demo.people import SUPPLIER_TITLES, SUPPLIERS, chinese_name, customer_handle
from retention.models import Conversation, ConversationKind, Department

WINDOW_DAYS = 180
# Share of all messages per kind of conversation, and a typical conversation's length,
# which sets how many conversations of each kind there are.
SHARES = {"customer": 0.60, "group": 0.25, "direct": 0.10, "supplier": 0.05}
TYPICAL_LENGTH = {"customer": 14, "direct": 35}
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


@dataclass(eq=False, slots=True)
class Plan:
    """One conversation to create and the shape of its talk."""

    kind: str
    script: str  # "customer" | "group" | "supplier" | "direct"
    title: str
    department: Department
    members: list[Person]
    weight: float
    external_party: str = ""
    group_type: str = ""
    lead: Person | None = None
    # Names of people outside the company who talk here (supplier contacts).
    externals: tuple[str, ...] = ()
    store_name: str = ""
    colleague_names: tuple[str, ...] = ()
    # Days (from the start of the window) within which the talk happens.
    first_day: float = 0.0
    last_day: float = WINDOW_DAYS
    messages: int = 0
    # Filled once the rows exist.
    conversation: Conversation | None = None
    wrapped_key: bytes = b""


@dataclass(frozen=True, slots=True)
class DemoMessage:
    sender_id: int | None
    sender_name: str
    sent_at: datetime
    body: str
    # (file name, content, content type) for the few messages with a file.
    attachment: tuple[str, bytes, str] | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """The ~180 days the demo talk spans, ending at the start of today (local time).

    Anchoring on today's midnight rather than "now" makes two seeds with the same
    ``--seed`` on the same day produce the same timestamps.
    """

    start: float  # epoch seconds of the first day's local midnight
    first_weekday: int  # 0 = Monday
    latest: float  # nothing may be later than this (the moment the seed started)

    @classmethod
    def ending_today(cls) -> Window:
        now = timezone.localtime()
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        start = midnight - timedelta(days=WINDOW_DAYS)
        return cls(start.timestamp(), start.weekday(), now.timestamp() - 1)


# --------------------------------------------------------------------------- planning


def plan_conversations(rng: random.Random, org: Organisation, total: int) -> list[Plan]:
    """Every conversation that will receive at least one message, with its message count;
    the counts add up to exactly ``total``."""
    if total <= 0:
        return []
    budgets = _split(total, list(SHARES.values()))
    by_kind = dict(zip(SHARES, budgets, strict=True))
    plans: list[Plan] = []
    for kind, make in (
        ("customer", _customer_plans),
        ("group", _group_plans),
        ("direct", _direct_plans),
        ("supplier", _supplier_plans),
    ):
        budget = by_kind[kind]
        kind_plans = make(rng, org, budget)
        counts = allocate(budget, [p.weight for p in kind_plans])
        for plan, count in zip(kind_plans, counts, strict=True):
            plan.messages = count
        plans += [p for p in kind_plans if p.messages]
    return plans


def _split(total: int, shares: list[float]) -> list[int]:
    """``total`` split by ``shares`` into integers that add up to ``total`` exactly."""
    whole = sum(shares)
    raw = [total * s / whole for s in shares]
    counts = [math.floor(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: counts[i] - raw[i])
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def allocate(total: int, weights: list[float]) -> list[int]:
    """Messages per conversation in proportion to ``weights``, each at least one, summing
    to ``total``. With fewer messages than conversations the heaviest get one each."""
    n = len(weights)
    if n == 0 or total <= 0:
        return [0] * n
    if total < n:
        heaviest = sorted(range(n), key=lambda i: -weights[i])[:total]
        counts = [0] * n
        for i in heaviest:
            counts[i] = 1
        return counts
    return [1 + c for c in _split(total - n, weights)]


def _busy(person: Person) -> bool:
    return person.username in ("staff", "staff2")


def _customer_plans(rng: random.Random, org: Organisation, budget: int) -> list[Plan]:
    count = max(1, round(budget / TYPICAL_LENGTH["customer"]))
    stores = org.stores
    # The stores of staff and staff2 are the busiest, so those two have plenty of chats.
    store_weights = [
        2.5 if s.department.name in (STAFF_STORE, STAFF2_STORE) else rng.uniform(0.6, 1.4)
        for s in stores
    ]
    # Per store, once: who answers customers (staff and staff2 most often) and the names
    # a customer chat may mention.
    agents = [s.service or [s.manager] for s in stores]
    agent_weights = [[4 if _busy(a) else 1 for a in group] for group in agents]
    colleague_names = [tuple(p.name for p in s.everyone) for s in stores]
    store_indexes = range(len(stores))
    handles: set[str] = set()
    plans = []
    for _ in range(count):
        index = rng.choices(store_indexes, weights=store_weights)[0]
        store = stores[index]
        handle = customer_handle(rng)
        while handle in handles:
            handle = customer_handle(rng)
        handles.add(handle)
        members = [rng.choices(agents[index], weights=agent_weights[index])[0]]
        if len(agents[index]) > 1 and rng.random() < 0.2:
            # Transferred to a second agent (转接).
            members.append(rng.choice([a for a in agents[index] if a is not members[0]]))
        first = rng.uniform(0, WINDOW_DAYS - 0.5)
        roll = rng.random()
        life = rng.uniform(0, 3) if roll < 0.7 else rng.uniform(3, 20) if roll < 0.95 else 120
        plans.append(
            Plan(
                kind=ConversationKind.CUSTOMER,
                script="customer",
                title=handle,
                department=store.department,
                members=members,
                weight=rng.lognormvariate(0, 0.8) * (1.5 if any(map(_busy, members)) else 1),
                external_party=handle,
                store_name=store.department.name,
                colleague_names=colleague_names[index],
                first_day=first,
                last_day=min(WINDOW_DAYS, first + life + 1),
            )
        )
    return plans


def _group(
    rng: random.Random,
    title: str,
    department: Department,
    members: list[Person],
    group_type: str,
    weight: float,
    lead: Person | None,
) -> Plan:
    members = list(dict.fromkeys(m for m in members if m is not None))
    return Plan(
        kind=ConversationKind.GROUP,
        script="group",
        title=title,
        department=department,
        members=members,
        weight=weight * rng.lognormvariate(0, 0.3),
        group_type=group_type,
        lead=lead,
        colleague_names=tuple(m.name for m in members),
    )


def _group_plans(rng: random.Random, org: Organisation, budget: int) -> list[Plan]:
    people = org.by_username
    director = people["director"]
    managers = list(org.region_managers.values())
    plans = [
        _group(rng, f"{org.company.name}全员群", org.company, org.people, "company", 0.5, director),
        _group(
            rng,
            "管理层周会群",
            org.company,
            [director, people["admin"], *managers],
            "management",
            0.8,
            director,
        ),
        _group(
            rng,
            "数据安全工作群",
            org.company,
            [people["security"], people["auditor"], people["admin"], director, *managers],
            "security",
            0.3,
            people["security"],
        ),
    ]
    for region_name, region in org.regions.items():
        manager = org.region_managers.get(region_name)
        region_stores = [s for s in org.stores if s.region.pk == region.pk]
        store_managers = [s.manager for s in region_stores]
        plans.append(
            _group(
                rng,
                f"{region_name}店长群",
                region,
                [manager, director, *store_managers],
                "region",
                1.0,
                manager,
            )
        )
        plans.append(
            _group(
                rng,
                f"{region_name}大促作战群",
                region,
                [manager, *store_managers, *(p for s in region_stores for p in s.service[:2])],
                "promo",
                0.6,
                manager,
            )
        )
    for store in org.stores:
        busy = 1.6 if store.department.name in (STAFF_STORE, STAFF2_STORE) else 1.0
        name = store.department.name
        plans.append(
            _group(
                rng,
                f"{name}工作群",
                store.department,
                store.everyone,
                "store",
                1.5 * busy,
                store.manager,
            )
        )
        for team_name, team in store.teams.items():
            members = [store.manager, *store.team_members[team_name]]
            group_type = "warehouse" if team_name == "仓储组" else "service"
            plans.append(
                _group(
                    rng, f"{name}{team_name}", team, members, group_type, 1.1 * busy, store.manager
                )
            )
    return plans


def _direct_plans(rng: random.Random, org: Organisation, budget: int) -> list[Plan]:
    people = org.by_username
    pairs: list[tuple[Person, Person]] = []
    for store in org.stores:
        everyone = store.everyone
        pairs += [(a, b) for i, a in enumerate(everyone) for b in everyone[i + 1 :]]
        region_manager = org.region_managers.get(store.region.name)
        if store.manager and region_manager:
            pairs.append((store.manager, region_manager))
    director = people["director"]
    pairs += [(m, director) for m in org.region_managers.values()]
    for name in ("admin", "security", "auditor"):
        pairs.append((people[name], director))
    pairs += [(people["security"], people["admin"]), (people["auditor"], people["security"])]
    pairs += [(people["staff"], people["manager"]), (people["staff2"], people["manager2"])]
    pairs = list(dict.fromkeys(pairs))
    rng.shuffle(pairs)
    count = min(len(pairs), max(1, round(budget / TYPICAL_LENGTH["direct"])))
    # Pairs with staff or staff2 go first, so even a small seed gives them chats.
    pairs.sort(key=lambda pair: not (_busy(pair[0]) or _busy(pair[1])))
    # {colleague} in a one-to-one chat is a third person, from the same store if possible.
    names_all = tuple(p.name for p in org.people)
    colleagues: dict[int, tuple[str, ...]] = {}
    for store in org.stores:
        names = tuple(p.name for p in store.everyone)
        colleagues[store.department.pk] = names
        for team in store.teams.values():
            colleagues[team.pk] = names
    plans = []
    for a, b in pairs[:count]:
        # The deeper (more specific) department owns a one-to-one chat.
        department = a.department if a.department.depth >= b.department.depth else b.department
        first = rng.uniform(0, WINDOW_DAYS / 2)
        plans.append(
            Plan(
                kind=ConversationKind.DIRECT,
                script="direct",
                title=f"{a.name}与{b.name}",
                department=department,
                members=[a, b],
                weight=rng.lognormvariate(0, 0.7) * (2 if _busy(a) or _busy(b) else 1),
                colleague_names=colleagues.get(department.pk, names_all),
                first_day=first,
            )
        )
    return plans


# Which part of the company deals with which supplier.
_SUPPLIER_OWNERS = (
    "杭州西湖店",
    "深圳南山店",
    "华南区",
    "北京朝阳店",
    "上海徐汇店",
    "华北区",
    "company",
    "成都锦江店",
)


def _supplier_plans(rng: random.Random, org: Organisation, budget: int) -> list[Plan]:
    plans = []
    for (full_name, short_name), owner in zip(SUPPLIERS, _SUPPLIER_OWNERS, strict=True):
        stores: list[Store]
        if owner == "company":
            department = org.company
            members = [org.by_username["director"], *org.region_managers.values()]
        elif owner in org.regions:
            department = org.regions[owner]
            stores = [s for s in org.stores if s.region.pk == department.pk]
            members = [org.region_managers.get(owner), *(s.manager for s in stores)]
            members += [p for s in stores for p in s.warehouse]
        else:
            store = org.store(owner)
            department = store.department
            region_manager = org.region_managers.get(store.region.name)
            members = [region_manager, store.manager, *store.warehouse, *store.service[:2]]
        contacts = tuple(
            f"{chinese_name(rng)[0][0]}{rng.choice(SUPPLIER_TITLES)}（{short_name}）"
            for _ in range(rng.randint(1, 2))
        )
        members = list(dict.fromkeys(m for m in members if m is not None))
        plans.append(
            Plan(
                kind=ConversationKind.GROUP,
                script="supplier",
                title=f"供应商对接群-{short_name}",
                department=department,
                members=members,
                weight=rng.lognormvariate(0, 0.4),
                external_party=full_name,
                externals=contacts,
                colleague_names=tuple(m.name for m in members),
            )
        )
    return plans


# --------------------------------------------------------------------------- fill-ins


def _card_fields(rng: random.Random, values: dict[str, str]) -> None:
    values["bank"], values["card"] = pii.bank_card(rng)


def _courier_fields(rng: random.Random, values: dict[str, str]) -> None:
    values["courier"], values["tracking"] = pii.courier(rng)


def _wechat(rng: random.Random) -> str:
    _, pinyin = chinese_name(rng)
    return (
        f"{pinyin}_{rng.randint(1, 999)}"
        if rng.random() < 0.6
        else f"wxid_{pinyin}{rng.randint(10, 99)}"
    )


# Each maker draws one value; values are kept for the session (see _Session.__missing__).
_MAKERS = {
    "product": lambda rng: rng.choice(scripts.PRODUCTS),
    "color": lambda rng: rng.choice(scripts.COLORS),
    "size": lambda rng: rng.choice(scripts.SIZES),
    "material": lambda rng: rng.choice(scripts.MATERIALS),
    "promo": lambda rng: rng.choice(scripts.PROMOS),
    "weekday": lambda rng: rng.choice(scripts.WEEKDAYS),
    "shelf": lambda rng: rng.choice(scripts.SHELVES),
    "company": lambda rng: rng.choice(scripts.INVOICE_COMPANIES),
    "days": lambda rng: str(rng.randint(1, 3)),
    "n": lambda rng: str(rng.randint(2, 9)),
    "big": lambda rng: str(rng.randint(12, 480)),
    "price": lambda rng: str(rng.randint(29, 599)),
    "amount": lambda rng: f"{rng.randint(8_000, 260_000):,}",
    "pct": lambda rng: f"{rng.uniform(0.8, 6.5):.1f}",
    "month": lambda rng: str(rng.randint(1, 12)),
    "time": lambda rng: f"{rng.randint(14, 18)}:{rng.choice(('00', '30'))}",
    "date": lambda rng: f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日",
    "height": lambda rng: str(rng.randint(150, 185)),
    "weight": lambda rng: str(rng.randint(85, 170)),
    "shoe": lambda rng: str(rng.randint(35, 44)),
    "code": lambda rng: f"{rng.randrange(10**6):06d}",
    "order": pii.order_number,
    "phone": pii.mobile,
    "phone_spaced": pii.mobile_spaced,
    "masked_phone": pii.masked_mobile,
    "address": pii.address,
    "return_address": pii.address,
    "email": pii.email,
    "id_card": pii.id_card,
    "tax_id": pii.tax_id,
    "name": lambda rng: chinese_name(rng)[0],
    "customer": customer_handle,
    "wechat": _wechat,
    "city": lambda rng: rng.choice(pii.CITIES)[2],
}
_PAIRED = {"bank": _card_fields, "card": _card_fields, "courier": _courier_fields}
_PAIRED["tracking"] = _courier_fields


class _Session(dict):
    """Fill-in values of one session: drawn on first use, then the same for the session."""

    __slots__ = ("plan", "rng")

    def __init__(self, rng: random.Random, plan: Plan, **known: str):
        super().__init__(known)
        self.rng = rng
        self.plan = plan

    def colleague_besides(self, speaker: str) -> None:
        """Make ``{colleague}`` someone other than the speaker ("找X确认" said by X)."""
        current = self.get("colleague")
        if current is not None and current != speaker:
            return
        names = [n for n in self.plan.colleague_names if n != speaker]
        self["colleague"] = self.rng.choice(names) if names else "店长"

    def __missing__(self, key: str) -> str:
        maker = _MAKERS.get(key)
        if maker is not None:
            value = maker(self.rng)
            self[key] = value
            return value
        if key in _PAIRED:
            _PAIRED[key](self.rng, self)
            return self[key]
        if key == "colleague":
            value = self.rng.choice(self.plan.colleague_names or ("店长",))
        elif key == "store":
            value = self.plan.store_name
        elif key == "supplier":
            value = self.plan.external_party
        else:
            raise KeyError(key)
        self[key] = value
        return value


# --------------------------------------------------------------------------- messages


def _expected_length(topics: tuple[scripts.Topic, ...], extra: tuple[scripts.Step, ...]) -> float:
    total_weight = sum(t.weight for t in topics)
    per_topic = sum(t.weight * sum(s.probability for s in t.steps) for t in topics)
    return per_topic / total_weight + sum(s.probability for s in extra)


_CUSTOMER_WEIGHTS = tuple(accumulate(t.weight for t in scripts.CUSTOMER_TOPICS))
_SUPPLIER_WEIGHTS = tuple(accumulate(t.weight for t in scripts.SUPPLIER_TOPICS))
_DIRECT_WEIGHTS = tuple(accumulate(t.weight for t in scripts.DIRECT_TOPICS))
_GROUP_CHOICES = {
    kind: (
        tuple(scripts.GROUP_TOPICS[name] for name, _ in topics),
        tuple(accumulate(w for _, w in topics)),
    )
    for kind, topics in scripts.GROUP_KIND_TOPICS.items()
}
_SESSION_LENGTH = {
    "customer": _expected_length(
        scripts.CUSTOMER_TOPICS, scripts.CUSTOMER_OPEN + scripts.CUSTOMER_CLOSE
    ),
    "group": _expected_length(tuple(scripts.GROUP_TOPICS.values()), ()),
    "supplier": _expected_length(scripts.SUPPLIER_TOPICS, ()),
    "direct": _expected_length(scripts.DIRECT_TOPICS, ()),
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
            if rng.random() < attachment_rate and role in scripts.ATTACHMENTS:
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
) -> Iterator[tuple[int | None, str, str, scripts.Line, _Session]]:
    """One exchange on one topic: (sender id, sender name, role, line, fill-ins)."""
    script = plan.script
    if script == "customer":
        topic = rng.choices(scripts.CUSTOMER_TOPICS, cum_weights=_CUSTOMER_WEIGHTS)[0]
        steps = scripts.CUSTOMER_OPEN + topic.steps + scripts.CUSTOMER_CLOSE
        agent = rng.choice(plan.members)
        session = _Session(rng, plan, agent_nick="小" + agent.name[-1])
        speakers = {"C": (None, plan.external_party), "S": (agent.pk, agent.name)}
        for step in steps:
            if step.probability < 1 and rng.random() >= step.probability:
                continue
            sender_id, sender_name = speakers[step.role]
            yield sender_id, sender_name, step.role, rng.choice(step.lines), session
        return

    session = _Session(rng, plan)
    if script == "group":
        topics, cum = _GROUP_CHOICES[plan.group_type]
        topic = rng.choices(topics, cum_weights=cum)[0]
    elif script == "supplier":
        topic = rng.choices(scripts.SUPPLIER_TOPICS, cum_weights=_SUPPLIER_WEIGHTS)[0]
    else:
        topic = rng.choices(scripts.DIRECT_TOPICS, cum_weights=_DIRECT_WEIGHTS)[0]
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
    rng: random.Random, role: str, session: _Session
) -> tuple[str, tuple[str, bytes, str]]:
    body, name_pattern, kind = rng.choice(scripts.ATTACHMENTS[role])
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
