"""Failed sign-ins lock a username and an address out (django-axes), in the browser and in
the API alike; the lockout is audited, ends after the cool-off, and admins lift it."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from axes.models import AccessAttempt
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from audit.events import EventType
from audit.models import AuditEvent
from retention.access.signin import active_lockouts, do_lift_lockout
from retention.models import ApiToken
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LIMIT = 5  # the default of QINGLI_SIGNIN_FAILURE_LIMIT
WEB_LOCKOUT_EN = "Too many failed sign-ins"
WEB_LOCKOUT_ZH = "登录失败次数过多"


def events(event_type):
    return AuditEvent.objects.filter(event_type=event_type)


def browser(address: str = "127.0.0.1", language: str = "en") -> Client:
    client = Client(REMOTE_ADDR=address)
    client.cookies["django_language"] = language
    return client


def sign_in(client: Client, username: str, password: str):
    return client.post("/signin/", {"username": username, "password": password})


def signed_in(client: Client) -> bool:
    return client.get("/").status_code == 200


def test_the_fifth_failure_locks_the_username_out_even_for_the_right_password(cast):
    client = browser()
    for _ in range(LIMIT - 1):
        response = sign_in(client, "manager", "wrong")
        assert response.status_code == 200  # the form again, with its error
        assert 'role="alert"' in response.content.decode()
    locked = sign_in(client, "manager", "wrong")
    assert locked.status_code == 429
    assert WEB_LOCKOUT_EN in locked.content.decode()
    assert locked["Retry-After"] == str(15 * 60)

    refused = sign_in(client, "manager", PASSWORD)
    assert refused.status_code == 429
    assert not signed_in(client)
    assert not events(EventType.SIGN_IN).exists()

    event = events(EventType.SIGN_IN_LOCKED_OUT).get()  # one event per lockout, not per try
    assert event.details["username"] == "manager"
    assert "username" in event.details["locked"]
    assert event.details["failures"]["username"] == LIMIT
    assert event.details["via"] == "web"
    assert event.ip_address == "127.0.0.1"
    assert event.actor_id is None
    # Every attempt stays in the log; the ones that met the lockout say so.
    failed = list(events(EventType.SIGN_IN_FAILED).order_by("id"))
    assert len(failed) == LIMIT + 1
    assert [e.details["locked_out"] for e in failed] == [False] * (LIMIT - 1) + [True, True]


def test_the_lockout_page_speaks_chinese_by_default():
    client = browser(language="zh-hans")
    for _ in range(LIMIT):
        response = sign_in(client, "nobody", "wrong")
    assert response.status_code == 429
    body = response.content.decode()
    assert WEB_LOCKOUT_ZH in body
    assert WEB_LOCKOUT_EN not in body


def test_an_unknown_username_is_locked_out_with_the_same_words(cast):
    """The answer does not tell a guesser which usernames exist."""
    known, unknown = browser("10.0.0.1"), browser("10.0.0.2")
    for _ in range(LIMIT):
        known_response = sign_in(known, "staff", "wrong")
        unknown_response = sign_in(unknown, "no-such-member", "wrong")
    assert known_response.status_code == unknown_response.status_code == 429

    def without_csrf_token(response) -> str:
        return re.sub(r"[A-Za-z0-9]{64}", "", response.content.decode())

    assert without_csrf_token(known_response) == without_csrf_token(unknown_response)


def test_failures_from_one_address_lock_the_address_for_every_username(cast):
    attacker = browser("203.0.113.7")
    for i in range(LIMIT):
        sign_in(attacker, f"guess{i}", "wrong")
    # Each username failed once only: it is the address that is locked out.
    assert sign_in(attacker, "staff", PASSWORD).status_code == 429
    assert not signed_in(attacker)
    event = events(EventType.SIGN_IN_LOCKED_OUT).get()
    assert event.details["locked"] == ["ip_address"]
    assert event.ip_address == "203.0.113.7"
    # The same member from another address is not affected.
    colleague = browser("198.51.100.2")
    assert sign_in(colleague, "staff", PASSWORD).status_code == 302
    assert signed_in(colleague)


def test_failures_from_many_addresses_lock_the_username(cast):
    for i in range(LIMIT):
        sign_in(browser(f"192.0.2.{i + 1}"), "director", "wrong")
    fresh = browser("192.0.2.200")
    assert sign_in(fresh, "director", PASSWORD).status_code == 429
    assert sign_in(fresh, "staff", PASSWORD).status_code == 302  # others sign in from there


def test_the_api_token_endpoint_counts_failures_and_answers_429_with_a_message(cast):
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    for _ in range(LIMIT - 1):
        bad = client.post("/api/v1/auth/token/", {"username": "staff", "password": "nope"})
        assert bad.status_code == 400
    locked = client.post("/api/v1/auth/token/", {"username": "staff", "password": "nope"})
    assert locked.status_code == 429
    assert WEB_LOCKOUT_EN in locked.json()["detail"]
    assert locked["Retry-After"] == str(15 * 60)

    right = client.post("/api/v1/auth/token/", {"username": "staff", "password": PASSWORD})
    assert right.status_code == 429
    assert not ApiToken.objects.filter(member=cast.staff).exists()
    assert not events(EventType.TOKEN_ISSUED).exists()
    assert events(EventType.SIGN_IN_LOCKED_OUT).get().details["via"] == "api"
    # One count for both doors: the browser is refused too.
    assert sign_in(browser(), "staff", PASSWORD).status_code == 429


def test_the_api_lockout_message_follows_accept_language():
    client = APIClient(HTTP_ACCEPT_LANGUAGE="zh-CN")
    for _ in range(LIMIT):
        response = client.post("/api/v1/auth/token/", {"username": "x", "password": "y"})
    assert response.status_code == 429
    assert WEB_LOCKOUT_ZH in response.json()["detail"]


def test_web_and_api_failures_add_up(cast):
    client = APIClient()
    for _ in range(LIMIT - 1):
        client.post("/api/v1/auth/token/", {"username": "staff", "password": "nope"})
    assert sign_in(browser(), "staff", "wrong").status_code == 429


def test_the_lockout_ends_after_the_cool_off_and_tries_meanwhile_do_not_extend_it(cast):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        client = browser()
        for _ in range(LIMIT):
            sign_in(client, "manager", "wrong")
        clock.shift(timedelta(minutes=14))
        assert sign_in(client, "manager", PASSWORD).status_code == 429
        clock.shift(timedelta(minutes=1, seconds=1))
        assert sign_in(client, "manager", PASSWORD).status_code == 302
        assert signed_in(client)
    assert events(EventType.SIGN_IN_LOCKED_OUT).count() == 1


def test_failures_further_apart_than_the_cool_off_do_not_add_up(cast):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        client = browser()
        for _ in range(LIMIT - 1):
            sign_in(client, "manager", "wrong")
        clock.shift(timedelta(minutes=16))
        assert sign_in(client, "manager", "wrong").status_code == 200  # a fresh count of 1
        assert sign_in(client, "manager", PASSWORD).status_code == 302


def test_the_failure_limit_is_a_setting(cast, settings):
    settings.AXES_FAILURE_LIMIT = 2
    client = browser()
    assert sign_in(client, "manager", "wrong").status_code == 200
    assert sign_in(client, "manager", "wrong").status_code == 429


def test_behind_a_proxy_the_forwarded_address_is_counted_and_audited(cast, settings):
    settings.QINGLI_PROXY_COUNT = 1
    proxy = "10.1.1.1"
    for i in range(LIMIT):
        Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"1.2.3.4, 203.0.113.{i}").post(
            "/signin/", {"username": f"guess{i}", "password": "wrong"}
        )
    # Five clients behind one proxy: nobody is locked out for the others' mistakes.
    assert active_lockouts() == []
    assert sorted(events(EventType.SIGN_IN_FAILED).values_list("ip_address", flat=True)) == [
        f"203.0.113.{i}" for i in range(LIMIT)
    ]
    # A spoofed left-hand entry does not dodge the count of the real address.
    for _ in range(LIMIT):
        Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"{_}.{_}.{_}.{_}, 198.51.100.9").post(
            "/signin/", {"username": "manager", "password": "wrong"}
        )
    assert {(lockout.kind, lockout.value) for lockout in active_lockouts()} == {
        ("username", "manager"),
        ("ip_address", "198.51.100.9"),
    }


# --- lifting a lockout ------------------------------------------------------------------------


def lock_out(username: str = "manager", address: str = "127.0.0.1") -> Client:
    client = browser(address)
    for _ in range(LIMIT):
        sign_in(client, username, "wrong")
    return client


def test_an_admin_lifts_a_username_lockout_and_it_is_audited(cast):
    client = lock_out("manager")
    [lockout] = [lo for lo in active_lockouts() if lo.kind == "username"]
    assert (lockout.value, lockout.failures) == ("manager", LIMIT)

    cleared = do_lift_lockout(actor=cast.admin, username="manager")
    assert cleared == 1
    assert not AccessAttempt.objects.filter(username="manager").exists()
    assert sign_in(client, "manager", PASSWORD).status_code == 302

    event = events(EventType.SIGN_IN_LOCKOUT_LIFTED).get()
    assert event.actor_id == cast.admin.pk
    assert event.target_id == str(cast.manager.pk)
    assert event.details["username"] == "manager"
    assert event.details["was_locked"] == ["username"]
    assert event.details["records_cleared"] == 1


def test_an_admin_lifts_an_address_lockout(cast):
    client = lock_out("someone", "203.0.113.50")
    do_lift_lockout(actor=cast.admin, ip_address="203.0.113.50")
    assert sign_in(client, "staff", PASSWORD).status_code == 302
    event = events(EventType.SIGN_IN_LOCKOUT_LIFTED).get()
    assert event.ip_address == "203.0.113.50"
    assert event.details["was_locked"] == ["ip_address"]


@pytest.mark.parametrize("who", ["staff", "manager", "security", "auditor"])
def test_only_admins_lift_lockouts(cast, who):
    lock_out("staff2")
    with pytest.raises(PermissionDenied):
        do_lift_lockout(actor=getattr(cast, who), username="staff2")
    assert AccessAttempt.objects.filter(username="staff2").exists()
    assert not events(EventType.SIGN_IN_LOCKOUT_LIFTED).exists()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "username"),
        ({"username": "   "}, "username"),
        ({"ip_address": "300.1.1.1"}, "ip_address"),
        ({"username": "never-failed"}, "username"),
    ],
)
def test_lifting_needs_something_to_lift(cast, kwargs, field):
    lock_out("manager")
    with pytest.raises(ValidationError) as refused:
        do_lift_lockout(actor=cast.admin, **kwargs)
    assert field in refused.value.message_dict
    assert AccessAttempt.objects.exists()
    assert not events(EventType.SIGN_IN_LOCKOUT_LIFTED).exists()


def test_the_lockouts_page_lists_and_lifts_for_admins_only(cast):
    lock_out("manager", "203.0.113.9")
    admin = browser()
    admin.force_login(cast.admin)
    page = admin.get("/lockouts/")
    assert page.status_code == 200
    listed = page.content.decode()
    assert "manager" in listed and "203.0.113.9" in listed
    assert "dashboard-lockouts" in admin.get("/").content.decode()

    lifted = admin.post("/lockouts/lift/", {"username": "manager"}, follow=True)
    assert "manager" in lifted.content.decode()
    assert events(EventType.SIGN_IN_LOCKOUT_LIFTED).get().actor_id == cast.admin.pk
    bad = admin.post("/lockouts/lift/", {"ip_address": "not-an-address"}, follow=True)
    assert '<li class="error">' in bad.content.decode()
    assert events(EventType.SIGN_IN_LOCKOUT_LIFTED).count() == 1

    manager = browser()
    manager.force_login(cast.manager)
    assert manager.get("/lockouts/").status_code == 403
    assert manager.post("/lockouts/lift/", {"ip_address": "203.0.113.9"}).status_code == 403
    assert "dashboard-lockouts" not in manager.get("/").content.decode()


def test_the_api_lists_and_lifts_lockouts_for_admins_only(cast):
    lock_out("manager", "203.0.113.9")
    admin = APIClient()
    admin.force_authenticate(cast.admin)
    listed = admin.get("/api/v1/lockouts/")
    assert listed.status_code == 200
    assert {(row["kind"], row["value"]) for row in listed.json()} == {
        ("username", "manager"),
        ("ip_address", "203.0.113.9"),
    }
    lifted = admin.post("/api/v1/lockouts/lift/", {"ip_address": "203.0.113.9"}, format="json")
    assert lifted.status_code == 200
    assert lifted.json() == {"records_cleared": 1}
    again = admin.post("/api/v1/lockouts/lift/", {"ip_address": "203.0.113.9"}, format="json")
    assert again.status_code == 400
    assert "ip_address" in again.json()
    assert admin.post("/api/v1/lockouts/lift/", {}, format="json").status_code == 400

    staff = APIClient()
    staff.force_authenticate(cast.staff)
    assert staff.get("/api/v1/lockouts/").status_code == 403
    assert staff.post("/api/v1/lockouts/lift/", {"username": "x"}, format="json").status_code == 403
    assert events(EventType.SIGN_IN_LOCKOUT_LIFTED).count() == 1


def test_the_shell_command_lists_and_lifts_in_an_admins_name(cast):
    lock_out("manager", "203.0.113.9")
    out = StringIO()
    call_command("lift_lockout", "--list", stdout=out)
    assert "username manager: 5 failures" in out.getvalue()
    assert "ip_address 203.0.113.9: 5 failures" in out.getvalue()

    call_command("lift_lockout", "--as", "admin", "--ip", "203.0.113.9", stdout=StringIO())
    assert events(EventType.SIGN_IN_LOCKOUT_LIFTED).get().actor_id == cast.admin.pk
    with pytest.raises(CommandError, match="admin"):
        call_command("lift_lockout", "--as", "staff", "--username", "manager")
    with pytest.raises(CommandError, match="--as"):
        call_command("lift_lockout", "--username", "manager")
    assert events(EventType.SIGN_IN_LOCKOUT_LIFTED).count() == 1
