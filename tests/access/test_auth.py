from __future__ import annotations

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audit.events import EventType
from audit.models import AuditEvent
from retention.models import ApiToken, SignInDay
from tests.conftest import PASSWORD, enrol_authenticator, sign_in_verified, unused_code

pytestmark = pytest.mark.django_db


def events(event_type):
    return AuditEvent.objects.filter(event_type=event_type)


def test_signing_in_is_audited_and_counts_the_day(client, cast):
    response = client.post("/signin/", {"username": "manager", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/"
    event = events(EventType.SIGN_IN).get()
    assert event.actor_id == cast.manager.pk
    assert event.ip_address == "127.0.0.1"
    assert SignInDay.objects.filter(member=cast.manager, day=timezone.localdate()).exists()
    # A second sign-in the same day counts the day once.
    client.post("/signout/")
    client.post("/signin/", {"username": "manager", "password": PASSWORD})
    assert SignInDay.objects.filter(member=cast.manager).count() == 1


def test_a_failed_sign_in_is_audited_and_shows_a_form_error(client, cast):
    response = client.post("/signin/", {"username": "manager", "password": "wrong"})
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    event = events(EventType.SIGN_IN_FAILED).get()
    assert event.details["username"] == "manager"
    assert event.actor_id is None
    assert not events(EventType.SIGN_IN).exists()


def test_signing_out_is_audited_and_ends_the_session(client, cast):
    client.force_login(cast.staff)
    response = client.post("/signout/")
    assert response.status_code == 302
    assert events(EventType.SIGN_OUT).get().actor_id == cast.staff.pk
    assert client.get("/").status_code == 302


def test_the_api_gives_a_token_for_good_credentials_only(cast):
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    bad = client.post("/api/v1/auth/token/", {"username": "staff", "password": "nope"})
    assert bad.status_code == 400
    assert "not correct" in bad.json()["detail"]
    assert events(EventType.TOKEN_REFUSED).count() == 1

    good = client.post("/api/v1/auth/token/", {"username": "staff", "password": PASSWORD})
    assert good.status_code == 200
    assert good.json()["id"] == ApiToken.objects.get(member=cast.staff).pk
    assert events(EventType.TOKEN_ISSUED).get().actor_id == cast.staff.pk
    assert SignInDay.objects.filter(member=cast.staff, day=timezone.localdate()).exists()

    client.credentials(HTTP_AUTHORIZATION=f"Token {good.json()['token']}")
    assert client.get("/api/v1/me/").json()["username"] == "staff"


def test_a_token_request_without_fields_names_them():
    response = APIClient().post("/api/v1/auth/token/", {}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"username", "password"}  # otp and name are optional


def test_a_bad_token_is_refused():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token deadbeef")
    assert client.get("/api/v1/me/").status_code == 401


@pytest.mark.parametrize("who", ["staff", "manager", "security", "auditor", "director"])
def test_only_admins_reach_configuration_and_queues(client, cast, who):
    member = getattr(cast, who)
    member.is_staff = True  # even a staff flag set by mistake does not open the admin
    member.save()
    client.force_login(member)
    for url in ["/admin/", "/admin/django_rq/dashboard/", "/admin/retention/member/"]:
        assert client.get(url, follow=True).status_code == 404


def test_admins_reach_configuration_and_queues(client, cast):
    cast.admin.is_staff = True
    cast.admin.save()
    sign_in_verified(client, cast.admin)
    assert client.get("/admin/").status_code == 200
    assert client.get("/admin/retention/member/").status_code == 200
    assert client.get("/admin/django_rq/dashboard/").status_code == 200


def test_configuration_changes_are_audited(client, cast, org):
    cast.admin.is_staff = True
    cast.admin.save()
    sign_in_verified(client, cast.admin)
    response = client.post(
        f"/admin/retention/department/{org.shenzhen.pk}/change/",
        {"name": "深圳南山店", "parent": org.south.pk},
    )
    assert response.status_code == 302
    event = events(EventType.CONFIG_CHANGED).get()
    assert event.actor_id == cast.admin.pk
    assert event.target_id == str(org.shenzhen.pk)


def test_anonymous_admin_visits_go_to_the_one_sign_in_page(client):
    response = client.get("/admin/retention/member/", follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == "/signin/?next=/admin/retention/member/"


def test_an_admin_signing_in_from_an_admin_page_lands_on_it(client, cast):
    cast.admin.is_staff = True
    cast.admin.save()
    device = enrol_authenticator(cast.admin)
    response = client.post(
        "/signin/",
        {"username": "admin", "password": PASSWORD, "next": "/admin/retention/member/"},
    )
    assert response["Location"] == "/signin/code/"
    response = client.post("/signin/code/", {"code": unused_code(device)}, follow=True)
    assert response.redirect_chain[-1][0] == "/admin/retention/member/"
    assert response.status_code == 200


def test_an_admin_without_an_authenticator_is_sent_to_set_one_up(client, cast):
    cast.admin.is_staff = True
    cast.admin.save()
    client.force_login(cast.admin)
    response = client.get("/admin/retention/member/", follow=True)
    assert response.redirect_chain[-1][0] == (
        "/security/authenticator/?next=%2Fadmin%2Fretention%2Fmember%2F"
    )


def test_the_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    body = schema.content.decode()
    for path in [
        "/api/v1/auth/token/",
        "/api/v1/conversations/{conversation_id}/messages/",
        "/api/v1/ingest/messages/",
    ]:
        assert path in body
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert "cdn" not in docs.content.decode().lower()


def test_the_interface_is_chinese_until_someone_picks_english(client, cast):
    client.force_login(cast.staff)
    # An English-locale browser still gets the Chinese product by default.
    chinese = client.get("/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert "工作台" in chinese
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    english = client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "Dashboard" in english
    assert "工作台" not in english


def test_admins_mark_conversations_protected_through_an_audited_action(client, cast, chats):
    cast.admin.is_staff = True
    cast.admin.save()
    sign_in_verified(client, cast.admin)
    conversation = chats["hangzhou"]
    response = client.post(
        "/admin/retention/conversation/",
        {"action": "mark_protected", "_selected_action": [conversation.pk]},
    )
    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.is_protected
    assert events(EventType.CONVERSATION_PROTECTED).get().target_id == str(conversation.pk)
