"""The demo company: its department tree, its people and their sign-in history."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.utils import timezone

from retention.demo.people import chinese_name
from retention.models import Department, Member, SignInDay
from retention.models.roles import Role, ensure_role_groups

COMPANY_NAME = "清风电商"
# Demo members are recognised by this address domain (``.invalid`` is reserved, so no
# notification e-mail to a demo member can ever reach a real mailbox).
DEMO_EMAIL_DOMAIN = "demo.qingli.invalid"
SIGN_IN_HISTORY_DAYS = 30

# region → [(store, [teams])]. 华东区 holds the store of ``staff``, 华南区 that of ``staff2``.
REGIONS: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...] = (
    (
        "华东区",
        (
            ("杭州西湖店", ("客服组", "仓储组")),
            ("上海徐汇店", ("客服组",)),
            ("南京新街口店", ()),
            ("苏州观前店", ()),
        ),
    ),
    (
        "华南区",
        (
            ("深圳南山店", ("客服组", "仓储组")),
            ("广州天河店", ("客服组",)),
            ("厦门思明店", ()),
        ),
    ),
    (
        "华北区",
        (
            ("北京朝阳店", ("客服组", "仓储组")),
            ("天津和平店", ()),
            ("青岛市南店", ()),
        ),
    ),
    (
        "西南区",
        (
            ("成都锦江店", ("客服组",)),
            ("重庆渝中店", ()),
        ),
    ),
)
STAFF_STORE = "杭州西湖店"
STAFF2_STORE = "深圳南山店"


class DemoDataError(Exception):
    """Demo data cannot be written or removed; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class SignIn:
    """One of the named demo sign-ins printed at the end of a seed."""

    username: str
    display_name: str
    role: Role
    # "company", a region name or a store name.
    place: str
    is_staff: bool = False


SIGN_INS: tuple[SignIn, ...] = (
    SignIn("admin", "周文博", Role.ADMIN, "company", is_staff=True),
    # A second admin: enabling a retention rule needs one admin to propose, another to
    # approve.
    SignIn("admin2", "吴海峰", Role.ADMIN, "company", is_staff=True),
    SignIn("security", "孙立新", Role.SECURITY, "company"),
    SignIn("auditor", "钱静怡", Role.AUDITOR, "company"),
    SignIn("director", "林志远", Role.MANAGER, "company"),
    SignIn("manager", "陈思远", Role.MANAGER, "华东区"),
    SignIn("manager2", "黄嘉欣", Role.MANAGER, "华南区"),
    SignIn("staff", "王小雨", Role.STAFF, STAFF_STORE),
    SignIn("staff2", "李晓峰", Role.STAFF, STAFF2_STORE),
)


@dataclass(eq=False, slots=True)
class Person:
    """A demo member as the chat generator needs it (no ORM lookups in the hot loop)."""

    pk: int
    username: str
    name: str
    role: Role
    department: Department


@dataclass(eq=False, slots=True)
class Store:
    department: Department
    region: Department
    manager: Person | None = None
    # Store staff and its customer-service team answer customers.
    service: list[Person] = field(default_factory=list)
    warehouse: list[Person] = field(default_factory=list)
    teams: dict[str, Department] = field(default_factory=dict)
    team_members: dict[str, list[Person]] = field(default_factory=dict)

    @property
    def everyone(self) -> list[Person]:
        people = [self.manager] if self.manager else []
        people += self.service
        people += [p for members in self.team_members.values() for p in members]
        return list(dict.fromkeys(people))


@dataclass(eq=False, slots=True)
class Organisation:
    company: Department
    regions: dict[str, Department]
    stores: list[Store]
    departments: list[Department]
    people: list[Person]
    by_username: dict[str, Person]
    region_managers: dict[str, Person]

    def store(self, name: str) -> Store:
        return next(s for s in self.stores if s.department.name == name)


def build_organisation(rng: random.Random, password: str) -> Organisation:
    """Create the department tree, the demo members (all with ``password``) and 30 days of
    sign-ins for each. Caller holds the transaction."""
    company = Department.objects.create(name=COMPANY_NAME)
    departments = [company]
    regions: dict[str, Department] = {}
    stores: list[Store] = []
    for region_name, store_specs in REGIONS:
        region = Department.objects.create(name=region_name, parent=company)
        regions[region_name] = region
        departments.append(region)
        for store_name, team_names in store_specs:
            store_dept = Department.objects.create(name=store_name, parent=region)
            departments.append(store_dept)
            store = Store(store_dept, region)
            for team_name in team_names:
                team = Department.objects.create(name=team_name, parent=store_dept)
                departments.append(team)
                store.teams[team_name] = team
                store.team_members[team_name] = []
            stores.append(store)

    places = {"company": company, **regions, **{s.department.name: s.department for s in stores}}
    # (username, display name, role, department, is_staff) for every member to create.
    specs: list[tuple[str, str, Role, Department, bool]] = [
        (s.username, s.display_name, s.role, places[s.place], s.is_staff) for s in SIGN_INS
    ]
    taken = {s.username for s in SIGN_INS}

    def new_person(role: Role, department: Department) -> str:
        name, pinyin = chinese_name(rng)
        username = pinyin
        suffix = 2
        while username in taken:
            username = f"{pinyin}{suffix}"
            suffix += 1
        taken.add(username)
        specs.append((username, name, role, department, False))
        return username

    for region_name, region in regions.items():
        if not any(s.place == region_name and s.role == Role.MANAGER for s in SIGN_INS):
            new_person(Role.MANAGER, region)
    # Busy stores (those of staff and staff2) get more people.
    for store in stores:
        busy = store.department.name in (STAFF_STORE, STAFF2_STORE)
        new_person(Role.MANAGER, store.department)
        for _ in range(rng.randint(4, 5) if busy else rng.randint(2, 4)):
            new_person(Role.STAFF, store.department)
        for team in store.teams.values():
            for _ in range(rng.randint(2, 4)):
                new_person(Role.STAFF, team)

    members = _create_members(specs, password)
    people = [
        Person(m.pk, m.username, m.display_name, role, dept)
        for m, (_, _, role, dept, _) in zip(members, specs, strict=True)
    ]
    by_username = {p.username: p for p in people}
    region_managers: dict[str, Person] = {}
    store_by_dept = {s.department.pk: s for s in stores}
    team_store = {t.pk: (s, name) for s in stores for name, t in s.teams.items()}
    for person in people:
        dept = person.department
        if dept.pk in regions_pks(regions) and person.role == Role.MANAGER:
            region_managers.setdefault(dept.name, person)
        elif dept.pk in store_by_dept:
            store = store_by_dept[dept.pk]
            if person.role == Role.MANAGER:
                store.manager = store.manager or person
            else:
                store.service.append(person)
        elif dept.pk in team_store:
            store, team_name = team_store[dept.pk]
            store.team_members[team_name].append(person)
            (store.warehouse if team_name == "仓储组" else store.service).append(person)
    _record_sign_in_history(people)
    return Organisation(company, regions, stores, departments, people, by_username, region_managers)


def regions_pks(regions: dict[str, Department]) -> set[int]:
    return {r.pk for r in regions.values()}


def demo_email(username: str) -> str:
    return f"{username}@{DEMO_EMAIL_DOMAIN}"


def _create_members(
    specs: list[tuple[str, str, Role, Department, bool]], password: str
) -> list[Member]:
    # One hash for everyone: the configured hasher is deliberately slow (PBKDF2 with a
    # million iterations), and a hundred members would otherwise cost most of a minute.
    # They all share the one published demo password anyway.
    taken = sorted(
        Member.objects.filter(username__in=[spec[0] for spec in specs]).values_list(
            "username", flat=True
        )
    )
    if taken:
        raise DemoDataError(
            "these sign-in names already belong to members that are not demo data: "
            f"{', '.join(taken[:10])}{' …' if len(taken) > 10 else ''}; "
            "rename them or seed another database (nothing was changed)"
        )
    password_hash = make_password(password)
    now = timezone.now()
    members = Member.objects.bulk_create(
        [
            Member(
                username=username,
                display_name=name,
                email=demo_email(username),
                password=password_hash,
                department=department,
                is_staff=is_staff,
                is_superuser=False,
                is_active=True,
                date_joined=now - timedelta(days=200),
                # They signed in today (see the sign-in history), so not "never".
                last_login=now - timedelta(hours=1),
            )
            for username, name, _, department, is_staff in specs
        ]
    )
    # The migration creates the role groups; a flushed database (tests) may lack them.
    ensure_role_groups()
    groups = {g.name: g for g in Group.objects.filter(name__in=[str(r) for r in Role])}
    Membership = Member.groups.through
    Membership.objects.bulk_create(
        [
            Membership(member_id=m.pk, group_id=groups[str(role)].pk)
            for m, (_, _, role, _, _) in zip(members, specs, strict=True)
        ]
    )
    return members


def _record_sign_in_history(people: list[Person]) -> None:
    """Every demo member signed in on each of the last 30 days, so every policy that needs
    a sign-in streak (batch filing needs 3 consecutive days) lets them act."""
    today = timezone.localdate()
    days = [today - timedelta(days=i) for i in range(SIGN_IN_HISTORY_DAYS)]
    SignInDay.objects.bulk_create(
        [SignInDay(member_id=p.pk, day=day) for p in people for day in days], batch_size=5000
    )
