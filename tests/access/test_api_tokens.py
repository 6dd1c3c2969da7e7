"""API tokens: issued with or without a second-factor check, hashed at rest, listed and
revoked by their owner and by admins, and what each may do."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from audit.events import EventType
from audit.models import AuditEvent
from retention.access.tokens import TOUCH_EVERY
from retention.models import ApiToken, StepStatus
from tests.access.test_second_factor import pending
from tests.conftest import PASSWORD, api_client_for, api_token, current_code, enrol_authenticator
from tests.conftest import sign_in_verified as verified_client
from tests.wipes.test_execution import store

pytestmark = pytest.mark.django_db

__all__ = ["pending", "store"]

TOKEN_URL = "/api/v1/auth/token/"


def english() -> APIClient:
    return APIClient(HTTP_ACCEPT_LANGUAGE="en")


def take_token(**body) -> tuple[int, dict]:
    response = english().post(TOKEN_URL, body, format="json")
    return response.status_code, response.json()


def with_key(key: str) -> APIClient:
    client = english()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def approve(client: APIClient, request) -> object:
    return client.post(f"/api/v1/requests/{request.pk}/approve/", {"step": 1}, format="json")


def events(event_type):
    return AuditEvent.objects.filter(event_type=event_type)


# --- issuing -------------------------------------------------------------------------------------


def test_a_token_issued_without_the_second_factor_cannot_approve(people, pending):
    status, body = take_token(username="manager", password=PASSWORD, name="脚本")
    assert status == 200
    assert body["second_factor_verified"] is False
    client = with_key(body["token"])
    assert client.get("/api/v1/me/").json()["username"] == "manager"  # reads work

    refused = approve(client, pending)
    assert refused.status_code == 403
    assert "second factor" in refused.json()["detail"]
    assert "otp" in refused.json()["detail"]
    assert pending.steps.get(order=1).status == StepStatus.PENDING
    assert events(EventType.SECOND_FACTOR_MISSING).get().actor_id == people.manager.pk


def test_a_token_issued_with_a_valid_code_approves(people, pending):
    device = enrol_authenticator(people.manager)
    status, body = take_token(username="manager", password=PASSWORD, otp=current_code(device))
    assert status == 200, body
    assert body["second_factor_verified"] is True
    assert approve(with_key(body["token"]), pending).status_code == 200
    assert pending.steps.get(order=1).status == StepStatus.APPROVED
    issued = events(EventType.TOKEN_ISSUED).get()
    assert issued.details["second_factor"] is True
    assert issued.details["via"] == "api"


def test_a_member_with_an_authenticator_needs_its_code_for_any_token(people):
    device = enrol_authenticator(people.manager)
    status, body = take_token(username="manager", password=PASSWORD)
    assert status == 400
    assert list(body) == ["otp"]

    right = current_code(device)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    status, body = take_token(username="manager", password=PASSWORD, otp=wrong)
    assert status == 400
    assert "not correct" in body["otp"][0]
    assert events(EventType.SECOND_FACTOR_FAILED).get().details["via"] == "api"

    status, body = take_token(username="manager", password=PASSWORD, otp="12 34")
    assert status == 400 and "6-digit" in body["otp"][0]
    assert not ApiToken.objects.exists()


def test_a_code_without_an_authenticator_is_refused(people):
    status, body = take_token(username="staff", password=PASSWORD, otp="123456")
    assert status == 400
    assert "no authenticator" in body["otp"][0]
    assert not ApiToken.objects.exists()


def test_a_wrong_password_never_reaches_the_code(people):
    device = enrol_authenticator(people.manager)
    status, _body = take_token(username="manager", password="nope", otp=current_code(device))
    assert status == 400
    assert not events(EventType.SECOND_FACTOR_FAILED).exists()
    device.refresh_from_db()
    assert device.last_t == -1  # the code was not spent


def test_keys_are_kept_only_as_their_sha256(people):
    status, body = take_token(username="staff", password=PASSWORD)
    key = body["token"]
    token = ApiToken.objects.get(pk=body["id"])
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert token.prefix == key[:8]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM retention_apitoken")
        row = cursor.fetchone()
    assert key not in [str(v) for v in row]


def test_the_old_header_works_and_records_when_a_token_was_last_used(people):
    key = api_token(people.staff, second_factor=False)
    token = ApiToken.objects.get(member=people.staff)
    assert token.last_used_at is None
    assert with_key(key).get("/api/v1/me/").status_code == 200
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    with_key(key).get("/api/v1/me/")
    token.refresh_from_db()
    assert token.last_used_at == first  # not written on every request
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now() - 2 * TOUCH_EVERY)
    with_key(key).get("/api/v1/me/")
    token.refresh_from_db()
    assert token.last_used_at > first


def test_each_call_issues_a_new_token_and_an_inactive_members_tokens_stop(people):
    first = api_token(people.staff, second_factor=False)
    second = api_token(people.staff, second_factor=False)
    assert first != second
    assert with_key(first).get("/api/v1/me/").status_code == 200
    people.staff.is_active = False
    people.staff.save()
    assert with_key(second).get("/api/v1/me/").status_code == 401


@pytest.mark.parametrize(
    "header", ["Token", "Token ", "Token a b", "Bearer abc", "Token " + "x" * 300]
)
def test_malformed_credentials_are_refused(header):
    client = english()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/me/").status_code == 401


def test_a_too_long_name_is_a_400(people):
    status, body = take_token(username="staff", password=PASSWORD, name="x" * 101)
    assert status == 400 and "name" in body
    assert not ApiToken.objects.exists()


# --- listing and revoking ------------------------------------------------------------------------


def test_owners_list_and_revoke_their_own_tokens_and_cannot_see_others(people):
    mine = api_client_for(people.staff, second_factor=False, HTTP_ACCEPT_LANGUAGE="en")
    theirs_key = api_token(people.staff2, second_factor=False)
    theirs = ApiToken.objects.get(member=people.staff2)

    listed = mine.get("/api/v1/auth/tokens/").json()["results"]
    assert [t["member"] for t in listed] == ["staff"]
    assert "key_hash" not in listed[0] and "token" not in listed[0]
    # Narrowing to someone else shows nothing either.
    assert mine.get(f"/api/v1/auth/tokens/?member={people.staff2.pk}").json()["results"] == []

    other = mine.post(f"/api/v1/auth/tokens/{theirs.pk}/revoke/")
    assert other.status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert with_key(theirs_key).get("/api/v1/me/").status_code == 200

    own = ApiToken.objects.get(member=people.staff)
    done = mine.post(f"/api/v1/auth/tokens/{own.pk}/revoke/")
    assert done.status_code == 200
    assert done.json()["revoked_at"]
    # The token that revoked itself no longer works.
    assert mine.get("/api/v1/me/").status_code == 401
    event = events(EventType.TOKEN_REVOKED).get()
    assert event.actor_id == people.staff.pk
    assert event.details["by_owner"] is True


def test_admins_list_and_revoke_anyones_tokens(people):
    key = api_token(people.staff2, second_factor=False)
    token = ApiToken.objects.get(member=people.staff2)
    admin = api_client_for(people.admin, HTTP_ACCEPT_LANGUAGE="en")
    listed = admin.get(f"/api/v1/auth/tokens/?member={people.staff2.pk}").json()["results"]
    assert [t["id"] for t in listed] == [token.pk]
    assert admin.get("/api/v1/auth/tokens/?member=abc").status_code == 400

    assert admin.post(f"/api/v1/auth/tokens/{token.pk}/revoke/").status_code == 200
    assert with_key(key).get("/api/v1/me/").status_code == 401
    again = admin.post(f"/api/v1/auth/tokens/{token.pk}/revoke/")
    assert again.status_code == 409
    event = events(EventType.TOKEN_REVOKED).get()
    assert event.actor_id == people.admin.pk
    assert event.details == {
        "member": people.staff2.pk,
        "name": "tests",
        "prefix": token.prefix,
        "by_owner": False,
    }


def test_an_unknown_token_is_a_404(people):
    client = api_client_for(people.staff, second_factor=False)
    assert client.post("/api/v1/auth/tokens/999999/revoke/").status_code == 404


# --- the security page ---------------------------------------------------------------------------


def test_the_security_page_creates_a_token_shown_once_and_revokes_it(people):
    client = Client()
    client.force_login(people.staff)
    created = client.post(reverse("token-create"), {"name": "导出脚本"})
    assert created.status_code == 200
    body = created.content.decode()
    token = ApiToken.objects.get(member=people.staff)
    key = body.split('data-testid="new-token-key">')[1].split("<")[0]
    assert hashlib.sha256(key.encode()).hexdigest() == token.key_hash
    assert token.second_factor_verified is False  # the session was not verified
    # Shown once: the next visit has its prefix only.
    again = client.get(reverse("security")).content.decode()
    assert key not in again and token.prefix in again

    assert client.post(reverse("token-revoke", args=[token.pk])).status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_token_made_in_a_verified_session_may_approve(people, pending):
    client = verified_client(Client(), people.manager)
    client.post(reverse("token-create"), {"name": "审批脚本"})
    token = ApiToken.objects.get(member=people.manager)
    assert token.second_factor_verified is True
    assert events(EventType.TOKEN_ISSUED).get().details["via"] == "web"


def test_the_page_will_not_revoke_someone_elses_token(people):
    api_token(people.staff2, second_factor=False)
    token = ApiToken.objects.get(member=people.staff2)
    client = Client()
    client.force_login(people.staff)
    assert client.post(reverse("token-revoke", args=[token.pk])).status_code == 404
    assert client.get(reverse("member-security")).status_code == 403
    token.refresh_from_db()
    assert token.revoked_at is None


def test_admins_revoke_on_the_members_page(people):
    api_token(people.staff2, second_factor=False)
    token = ApiToken.objects.get(member=people.staff2)
    client = Client()
    client.force_login(people.admin)  # revoking takes access away: no second factor needed
    page = client.get(reverse("member-security")).content.decode()
    assert token.prefix in page
    response = client.post(reverse("token-revoke", args=[token.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("member-security")
    token.refresh_from_db()
    assert token.revoked_by_id == people.admin.pk


# --- the tokens DRF's authtoken issued before ---------------------------------------------------


def test_legacy_tokens_keep_working_hashed_and_their_plaintext_table_goes(people):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("retention.migrations.0013_api_tokens")
    legacy_key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
            "user_id bigint NOT NULL, created timestamp with time zone NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)",
            [legacy_key, people.staff.pk, timezone.now()],
        )
    with connection.schema_editor() as editor:
        migration.adopt_legacy_tokens(apps, editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    token = ApiToken.objects.get(member=people.staff)
    assert (token.name, token.second_factor_verified) == ("legacy token", False)
    assert with_key(legacy_key).get("/api/v1/me/").json()["username"] == "staff"
