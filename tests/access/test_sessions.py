"""Browser sessions: a new key at sign-in, gone at sign-out and after a password change,
ended by idleness (the ``session_idle_minutes`` policy) and by the absolute cap."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from audit.events import EventType
from audit.models import AuditEvent
from retention.governance.policy_changes import do_update_policies
from tests.conftest import PASSWORD, sign_in_verified

pytestmark = pytest.mark.django_db

COOKIE = settings.SESSION_COOKIE_NAME


def signed_in_client(username: str) -> Client:
    client = Client()
    client.cookies["django_language"] = "en"
    assert client.post("/signin/", {"username": username, "password": PASSWORD}).status_code == 302
    return client


def with_cookie_of(client: Client) -> Client:
    """Another browser that presents a copy of ``client``'s session cookie."""
    other = Client()
    other.cookies[COOKIE] = client.cookies[COOKIE].value
    return other


def is_signed_in(client: Client) -> bool:
    response = client.get("/")
    return response.status_code == 200 and 'data-testid="whoami"' in response.content.decode()


def test_signing_in_gives_a_new_session_key_and_drops_the_old_one(cast):
    client = Client()
    before = client.session
    before["planted"] = "by someone else"
    before.save()
    planted_key = before.session_key
    client.cookies[COOKIE] = planted_key

    assert client.post("/signin/", {"username": "staff", "password": PASSWORD}).status_code == 302
    assert client.cookies[COOKIE].value != planted_key
    assert not Session.objects.filter(session_key=planted_key).exists()
    fixated = Client()
    fixated.cookies[COOKIE] = planted_key
    assert not is_signed_in(fixated)  # session fixation gets nothing
    assert is_signed_in(client)


def test_signing_out_ends_the_session_on_the_server(cast):
    client = signed_in_client("staff")
    copy = with_cookie_of(client)
    assert is_signed_in(copy)
    client.post("/signout/")
    assert not is_signed_in(copy)
    assert not Session.objects.exists()


def test_an_admin_changing_a_password_ends_the_members_sessions(client, cast):
    member_browser = signed_in_client("staff")
    assert is_signed_in(member_browser)
    cast.admin.is_staff = True
    cast.admin.save()
    sign_in_verified(client, cast.admin)  # the admin site needs the second factor
    changed = client.post(
        f"/admin/retention/member/{cast.staff.pk}/password/",
        {"password1": "a-new-long-passphrase", "password2": "a-new-long-passphrase"},
    )
    assert changed.status_code == 302, changed.content.decode()[:2000]
    cast.staff.refresh_from_db()
    assert cast.staff.check_password("a-new-long-passphrase")

    assert not is_signed_in(member_browser)
    response = member_browser.get("/conversations/")
    assert response.status_code == 302
    assert response["Location"].startswith("/signin/")
    assert is_signed_in(client)  # the admin's own session goes on


def test_a_password_changed_anywhere_ends_the_old_sessions(cast):
    browser = signed_in_client("manager")
    cast.manager.set_password("another-long-passphrase")  # e.g. manage.py changepassword
    cast.manager.save()
    assert not is_signed_in(browser)
    again = Client()
    assert (
        again.post(
            "/signin/", {"username": "manager", "password": "another-long-passphrase"}
        ).status_code
        == 302
    )


def test_a_session_unused_for_the_idle_limit_ends_and_says_why(cast):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        browser = signed_in_client("staff")
        # Use keeps it alive: well past 30 minutes in total, never 30 idle.
        for _ in range(3):
            clock.shift(timedelta(minutes=29))
            assert is_signed_in(browser)
        clock.shift(timedelta(minutes=31))
        response = browser.get("/conversations/?page=2")
        assert response.status_code == 302
        assert response["Location"] == "/signin/?next=%2Fconversations%2F%3Fpage%3D2"
        sign_in_page = browser.get(response["Location"]).content.decode()
        assert "signed out after 30 minutes without activity" in sign_in_page
        assert not is_signed_in(browser)
    event = AuditEvent.objects.get(event_type=EventType.SESSION_EXPIRED)
    assert event.actor_id == cast.staff.pk
    assert event.details == {"idle_minutes": 31}


def test_the_idle_limit_is_a_policy(cast):
    do_update_policies(
        actor=cast.admin, changes={"session_idle_minutes": 5}, verified_second_factor=True
    )
    with time_machine.travel(timezone.now(), tick=False) as clock:
        browser = signed_in_client("staff")
        clock.shift(timedelta(minutes=4))
        assert is_signed_in(browser)
        clock.shift(timedelta(minutes=6))
        assert not is_signed_in(browser)


@pytest.mark.parametrize("bad", [0, -1, 24 * 60 + 1, "30", 2.5, None, True])
def test_the_idle_policy_refuses_nonsense(cast, bad):
    with pytest.raises(ValidationError) as refused:
        do_update_policies(
            actor=cast.admin, changes={"session_idle_minutes": bad}, verified_second_factor=True
        )
    assert "session_idle_minutes" in refused.value.message_dict


def test_background_polls_do_not_keep_a_session_alive(cast):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        browser = signed_in_client("manager")
        poll = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/approvals/"}
        for _ in range(5):
            clock.shift(timedelta(minutes=5))
            assert browser.get("/nav/counts/", **poll).status_code == 200
        clock.shift(timedelta(minutes=6))  # 31 minutes since the last real use
        expired = browser.get("/nav/counts/", **poll)
        # htmx takes the whole page to the sign-in, and back to where it was afterwards.
        assert expired["HX-Redirect"] == "/signin/?next=http%3A%2F%2Ftestserver%2Fapprovals%2F"
        assert not is_signed_in(browser)


def test_an_api_call_on_an_idle_session_is_refused(cast):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        browser = signed_in_client("staff")
        assert browser.get("/api/v1/me/").status_code == 200
        clock.shift(timedelta(minutes=31))
        assert browser.get("/api/v1/me/").status_code == 401  # as to anyone signed out


def test_a_busy_session_still_ends_at_the_absolute_cap(cast):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        browser = signed_in_client("staff")
        used = timedelta()
        while used < timedelta(seconds=settings.SESSION_COOKIE_AGE) - timedelta(minutes=20):
            clock.shift(timedelta(minutes=20))
            used += timedelta(minutes=20)
            assert is_signed_in(browser), used
        clock.shift(timedelta(seconds=settings.SESSION_COOKIE_AGE) - used + timedelta(seconds=1))
        assert not is_signed_in(browser)
