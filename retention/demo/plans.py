"""Which conversations the demo company has: customer chats, group chats, one-to-one chats
and supplier groups, with how many messages each gets, over a window of ~180 days.

Planning is cheap and done up front (a few tens of thousands of conversations at most);
the messages are produced afterwards, one conversation after another, by
:mod:`retention.demo.talk`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from retention.demo.org import STAFF2_STORE, STAFF_STORE, Organisation, Person, Store
from retention.demo.people import SUPPLIER_TITLES, SUPPLIERS, chinese_name, customer_handle
from retention.models import Conversation, ConversationKind, Department

WINDOW_DAYS = 180
# Share of all messages per kind of conversation, and a typical conversation's length,
# which sets how many conversations of each kind there are.
SHARES = {"customer": 0.60, "group": 0.25, "direct": 0.10, "supplier": 0.05}
TYPICAL_LENGTH = {"customer": 14, "direct": 35}


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
