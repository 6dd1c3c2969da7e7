"""Shared fixtures: a small company and the cast that every permission test needs.

Company (director, admin, security, auditor)
├── East region (manager)
│   └── Hangzhou store (staff, customer chats)
│       └── Hangzhou warehouse team
└── South region (manager2)
    └── Shenzhen store (staff2)
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db.backends.signals import connection_created
from django.utils import timezone

from retention.governance.filing import do_file_request
from retention.governance.scope import resolve_scope
from retention.models import (
    Conversation,
    ConversationKind,
    DeletionRequest,
    Department,
    Member,
    SignInDay,
)
from retention.models.roles import Role, ensure_role_groups
from retention.records.store import NewMessage, add_messages, create_conversation

PASSWORD = "correct-horse-battery"


def _allow_truncate_for_tests(sender, connection, **kwargs) -> None:
    # Transactional tests reset tables with TRUNCATE, which the audit log refuses to
    # everyone who does not say this (the application never does).
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET qingli.allow_truncate = 'on'")


connection_created.connect(_allow_truncate_for_tests)

# One master key for the whole run, shared with worker processes that tests start.
if not django_settings.QINGLI_MASTER_KEY:
    os.environ["QINGLI_MASTER_KEY"] = base64.b64encode(os.urandom(32)).decode()
    django_settings.QINGLI_MASTER_KEY = os.environ["QINGLI_MASTER_KEY"]


@dataclass
class Org:
    company: Department
    east: Department
    hangzhou: Department
    warehouse: Department
    south: Department
    shenzhen: Department


@dataclass
class Cast:
    admin: Member
    security: Member
    auditor: Member
    director: Member
    manager: Member
    manager2: Member
    staff: Member
    staff2: Member
    warehouse_staff: Member


def make_member(username: str, department: Department, *roles: Role) -> Member:
    from django.contrib.auth.models import Group

    ensure_role_groups()  # transactional tests flush the groups the migration made
    member = Member.objects.create_user(
        username=username, password=PASSWORD, department=department, display_name=username.title()
    )
    member.groups.set(Group.objects.filter(name__in=[str(r) for r in roles]))
    return member


# --- the second factor ------------------------------------------------------------------------


def enrol_authenticator(member: Member):
    """A confirmed TOTP authenticator for ``member`` (the one they have, if any)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=member, confirmed=True).first()
    return device or TOTPDevice.objects.create(user=member, name="authenticator", confirmed=True)


def current_code(device, *, steps_ahead: int = 0) -> str:
    """The code an authenticator app (which knows nothing of drift) shows now, or
    ``steps_ahead`` time steps later."""
    import time

    from django_otp.oath import TOTP

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def unused_code(device) -> str:
    """A code the server still accepts: each time step's code works once, so after one
    was used in this step, the next step's (the server allows one step of clock skew)."""
    import time

    device.refresh_from_db()
    now_step = int(time.time() - device.t0) // device.step
    return current_code(device, steps_ahead=max(0, device.last_t + 1 - now_step))


def sign_in_verified(client, member: Member):
    """Sign ``client`` in as ``member`` with a session verified by their authenticator,
    as the sign-in code step leaves it (django_otp.login stores the device's id)."""
    from django_otp import DEVICE_ID_SESSION_KEY

    device = enrol_authenticator(member)
    client.force_login(member)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def api_token(member: Member, *, second_factor: bool = True) -> str:
    """A fresh API key for ``member``: issued after a second-factor check, as the token
    endpoint issues it for a valid ``otp`` (tests of that endpoint send real codes), or
    without one."""
    from retention.access.tokens import do_issue_token

    if second_factor:
        enrol_authenticator(member)
    return do_issue_token(
        member=member,
        name="tests",
        second_factor_verified=second_factor,
        request=None,
        via="tests",
    ).key


def api_client_for(member: Member, *, second_factor: bool = True, **defaults):
    """An API client that sends a real token of ``member``'s (``defaults``: headers sent
    with every request, e.g. HTTP_ACCEPT_LANGUAGE)."""
    from rest_framework.test import APIClient

    client = APIClient(**defaults)
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(member, second_factor=second_factor)}")
    return client


@pytest.fixture
def org(db) -> Org:
    company = Department.objects.create(name="Company")
    east = Department.objects.create(name="East region", parent=company)
    hangzhou = Department.objects.create(name="Hangzhou store", parent=east)
    warehouse = Department.objects.create(name="Hangzhou warehouse", parent=hangzhou)
    south = Department.objects.create(name="South region", parent=company)
    shenzhen = Department.objects.create(name="Shenzhen store", parent=south)
    return Org(company, east, hangzhou, warehouse, south, shenzhen)


@pytest.fixture
def cast(org: Org) -> Cast:
    return Cast(
        admin=make_member("admin", org.company, Role.ADMIN),
        security=make_member("security", org.company, Role.SECURITY),
        auditor=make_member("auditor", org.company, Role.AUDITOR),
        director=make_member("director", org.company, Role.MANAGER),
        manager=make_member("manager", org.east, Role.MANAGER),
        manager2=make_member("manager2", org.south, Role.MANAGER),
        staff=make_member("staff", org.hangzhou, Role.STAFF),
        staff2=make_member("staff2", org.shenzhen, Role.STAFF),
        warehouse_staff=make_member("warehouse", org.warehouse, Role.STAFF),
    )


def make_chat(
    department: Department,
    participants: list[Member],
    bodies: list[str],
    *,
    kind: str = ConversationKind.GROUP,
    title: str = "",
) -> Conversation:
    conversation = create_conversation(
        kind=kind,
        title=title or f"{department.name} chat",
        department=department,
        participants=participants,
    )
    start = timezone.now() - timedelta(days=1)
    sender = participants[0] if participants else None
    add_messages(
        conversation,
        [
            NewMessage(
                sender=sender,
                sender_name=sender.username if sender else "customer",
                sent_at=start + timedelta(minutes=i),
                body=body,
            )
            for i, body in enumerate(bodies)
        ],
    )
    return conversation


@pytest.fixture
def chats(org: Org, cast: Cast) -> dict[str, Conversation]:
    """One conversation per interesting place in the tree."""
    return {
        "hangzhou": make_chat(
            org.hangzhou, [cast.staff], ["亲，在的", "订单已发货"], kind=ConversationKind.CUSTOMER
        ),
        "warehouse": make_chat(org.warehouse, [cast.warehouse_staff], ["今天盘点"]),
        "shenzhen": make_chat(org.shenzhen, [cast.staff2], ["深圳店早会"]),
        "company": make_chat(org.company, [cast.director, cast.admin], ["全员通知"]),
    }


# --- filing requests: a sign-in streak (batch requests need one) and a filed request ------------

REASON = "清理过期聊天记录"


def sign_in_streak(members: Iterable[Member], *, days: int = 5, until: date | None = None) -> None:
    """``members`` signed in on each of the ``days`` days up to ``until`` (today): long
    enough a streak to file batch requests. Days a member already has stay as they are."""
    last = until or timezone.localdate()
    SignInDay.objects.bulk_create(
        [SignInDay(member=m, day=last - timedelta(days=i)) for m in members for i in range(days)],
        ignore_conflicts=True,
    )


def file_request(
    requester: Member, method: str, *, reason: str = REASON, confirm_protected=(), **scope
) -> DeletionRequest:
    """A request filed through the action, for tests of what follows; ``scope`` as the
    request form gives it, sub-departments included unless it says otherwise."""
    data = {"include_subdepartments": True, **scope, "confirm_protected": list(confirm_protected)}
    return do_file_request(
        requester=requester, scope=resolve_scope(method, data, requester), reason=reason
    )[0]


@pytest.fixture
def regulars(cast: Cast) -> Cast:
    """Everyone signed in on each of the last five days: eligible to file batches."""
    sign_in_streak(vars(cast).values())
    return cast


@pytest.fixture
def people(cast: Cast, org: Org) -> Cast:
    """The cast plus a second admin (an admin's own wipe needs another admin to approve
    it), everyone signed in on each of the last five days."""
    cast.admin_b = make_member("admin_b", org.company, Role.ADMIN)
    sign_in_streak(vars(cast).values())
    return cast


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """The token endpoint allows 20 calls a minute per address, counted in the cache
    (local memory, or Redis with REDIS_URL), and every test calls from one address: each
    test starts afresh, so none is throttled for what the tests before it did. With Redis
    this empties the test's Redis database, which tests of the queue empty anyway."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _static_files_without_collectstatic(settings):
    # Production serves hashed files after collectstatic; tests serve the sources.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def on_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def services_or_skip() -> None:
    """Tests of the real queue and the browser need PostgreSQL and Redis. On a developer's
    machine without them they skip; in CI (CI=true) a missing service is a failure."""
    missing = []
    if not on_postgres():
        missing.append("DATABASE_URL=postgres://…")
    if not os.environ.get("REDIS_URL"):
        missing.append("REDIS_URL=redis://…")
    if missing:
        message = "needs " + " and ".join(missing) + " (./qingli test sets both)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def redis_queue_connection():
    """The real Redis behind RQ_QUEUES, emptied before and after the test."""
    import django_rq

    services_or_skip()
    connection = django_rq.get_connection("default")
    connection.flushdb()
    yield connection
    connection.flushdb()


def database_url_for_subprocess() -> str:
    """The URL of the test database, for worker processes started by a test."""
    from django.db import connection

    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


ROOT = Path(__file__).resolve().parent.parent


def worker_env(**extra: str) -> dict[str, str]:
    """The environment of a real `manage.py rqworker` on the test database."""
    return {**os.environ, "DATABASE_URL": database_url_for_subprocess(), **extra}


def run_worker_burst(*queues: str, **extra: str) -> None:
    """Run a real worker over ``queues`` until they are empty; it must exit cleanly."""
    done = subprocess.run(
        [sys.executable, "manage.py", "rqworker", *queues, "--burst"],
        cwd=ROOT,
        env=worker_env(**extra),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@contextmanager
def running_worker(*args: str, **extra: str) -> Iterator[subprocess.Popen]:
    """A real worker (``args``: its queues and options) for the length of the block."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", *args],
        cwd=ROOT,
        env=worker_env(**extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid`` (a worker's horse), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    found.append(int(entry.name))
    return found


def kill_worker(process: subprocess.Popen) -> None:
    """SIGKILL a worker and its horse: no cleanup, no failure recorded."""
    horses = children_of(process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for horse in horses:
        with contextlib.suppress(ProcessLookupError):
            os.kill(horse, signal.SIGKILL)


@pytest.fixture
def killable_workers(redis_queue_connection, tmp_path):
    """``start(*args, **env)`` starts a real ``manage.py rqworker *args`` in a process group
    of its own (so a test can SIGKILL it and its horse with ``kill_worker``), logging to
    ``tmp_path``; ``start.logs()`` is their logs' tails. Every one is killed at the end."""
    started: list[subprocess.Popen] = []

    def start(*args: str, **extra: str) -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(started)}.log", "w")  # noqa: SIM115 (kept open)
        process = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", *args],
            cwd=ROOT,
            env=worker_env(**extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own, to kill without touching ours
        )
        log.close()
        started.append(process)
        return process

    start.logs = lambda: "\n".join(
        f"--- worker {i} ---\n{(tmp_path / f'worker-{i}.log').read_text()[-3000:]}"
        for i in range(len(started))
    )
    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                kill_worker(process)
            process.wait(timeout=10)


# --- API credentials: the one place tests get them, so a change of token model is one edit.


def api_token_for(member: Member) -> str:
    """An API token of ``member``, as ``Authorization: Token <key>`` carries it: issued
    after a second-factor check, so it may take every action the member's roles allow."""
    return api_token(member)


@pytest.fixture
def api_as():
    """``api_as(member)``: an APIClient signed in with the member's token (anonymous for
    None) that asks for English answers."""
    from rest_framework.test import APIClient

    def make(member: Member | None):
        client = APIClient()
        client.credentials(HTTP_ACCEPT_LANGUAGE="en")
        if member is not None:
            client.credentials(
                HTTP_AUTHORIZATION=f"Token {api_token_for(member)}", HTTP_ACCEPT_LANGUAGE="en"
            )
        return client

    return make


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """The figures of the hostile-client tests, when they ran: the role × endpoint matrix
    (tests/access/test_access.py) and the API fuzzing (tests/api/test_api_fuzz.py)."""
    import sys

    matrix = sys.modules.get("test_access")
    figures = getattr(matrix, "FIGURES", {})
    roles = [role for role in getattr(matrix, "MATRIX_ROLES", ()) if role in figures]
    if roles:
        terminalreporter.write_sep("-", "role x endpoint matrix")
        terminalreporter.write_line(
            f"{len(roles)} roles x {len(matrix.ROWS)} endpoints = "
            f"{sum(figures[r] for r in roles)} cells: "
            f"{sum(figures[f'{r} wrong'] for r in roles)} with an unexpected status, "
            f"{sum(figures[f'{r} unexpected 2xx'] for r in roles)} unexpected 2xx"
        )
    fuzz = sys.modules.get("test_api_fuzz")
    if fuzz is not None and fuzz.FIGURES["requests"]:
        failed = [
            report
            for report in terminalreporter.stats.get("failed", [])
            if "test_api_fuzz" in report.nodeid
        ]
        terminalreporter.write_sep("-", "API fuzzing (schemathesis)")
        terminalreporter.write_line(
            f"QINGLI_FUZZ_EXAMPLES={fuzz.EXAMPLES}"
            f"{' with boundary cases' if fuzz.COVERAGE else ''}: "
            f"{len(fuzz.OPERATIONS)} operations, {fuzz.FIGURES['examples']} generated cases, "
            f"each sent as {len(fuzz.ROLES)} roles ({', '.join(fuzz.ROLES)}): "
            f"{fuzz.FIGURES['requests']} requests; {len(failed)} operations failing"
        )
