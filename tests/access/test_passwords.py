"""A member's API tokens go when their password changes or they are deactivated: a token
taken with the old password, or by someone who has left, opens nothing afterwards. Each
revocation is audited; refused or invalid changes change nothing."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from rest_framework.test import APIClient

from audit.events import EventType
from audit.models import AuditEvent
from retention.access.passwords import do_change_password
from retention.access.tokens import do_revoke_tokens_of_deactivated
from retention.errors import Conflict
from retention.models import ApiToken, Member
from tests.conftest import PASSWORD, api_token, enrol_authenticator, sign_in_verified, unused_code

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-new-long-passphrase"


def status_with(key: str) -> int:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/me/").status_code


def revocations() -> list[dict]:
    return [
        {"actor": e.actor_id, "target": e.target_id, **e.details}
        for e in AuditEvent.objects.filter(event_type=EventType.TOKEN_REVOKED).order_by("pk")
    ]


def token_id(key: str) -> str:
    from retention.access.tokens import hash_key

    return str(ApiToken.objects.get(key_hash=hash_key(key)).pk)


@pytest.fixture
def admin_browser(cast) -> Client:
    cast.admin.is_staff = True
    cast.admin.save()
    return sign_in_verified(Client(HTTP_ACCEPT_LANGUAGE="en"), cast.admin)


def member_form(member: Member, **changes) -> dict:
    """The admin's member change form as the page posts it, with ``changes``."""
    member.refresh_from_db()
    data = {
        "username": member.username,
        "first_name": member.first_name,
        "last_name": member.last_name,
        "email": member.email,
        "is_active": "on",
        "groups": [g.pk for g in member.groups.all()],
        "date_joined_0": member.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": member.date_joined.strftime("%H:%M:%S"),
        "display_name": member.display_name,
        "department": member.department_id,
    }
    for name, value in changes.items():
        if value is None:
            data.pop(name)
        else:
            data[name] = value
    return data


# --- the admin's member pages --------------------------------------------------------------------


def test_a_password_changed_by_an_admin_revokes_the_members_tokens(cast, admin_browser):
    first, second = api_token(cast.staff), api_token(cast.staff, second_factor=False)
    others = api_token(cast.staff2)
    assert status_with(first) == 200
    response = admin_browser.post(
        f"/admin/retention/member/{cast.staff.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
        follow=True,
    )
    assert response.status_code == 200
    assert "已吊销该成员的 2 个 API 令牌。" in response.content.decode()  # the admin's language
    cast.staff.refresh_from_db()
    assert cast.staff.check_password(NEW_PASSWORD)
    assert status_with(first) == 401
    assert status_with(second) == 401
    assert status_with(others) == 200
    assert revocations() == [
        {
            "actor": cast.admin.pk,
            "target": token_id(key),
            "member": cast.staff.pk,
            "name": "tests",
            "prefix": key[:8],
            "by_owner": False,
            "reason": "password-changed",
        }
        for key in (first, second)
    ]
    # The change itself is in the log as every admin change is.
    assert AuditEvent.objects.filter(
        event_type=EventType.CONFIG_CHANGED, target_id=str(cast.staff.pk)
    ).exists()
    # The new password (with the member's authenticator code) takes a new token.
    code = unused_code(enrol_authenticator(cast.staff))
    taken = APIClient().post(
        "/api/v1/auth/token/",
        {"username": "staff", "password": NEW_PASSWORD, "otp": code},
        format="json",
    )
    assert taken.status_code == 200
    assert status_with(taken.json()["token"]) == 200


def test_turning_password_sign_in_off_revokes_the_tokens_too(cast, admin_browser):
    key = api_token(cast.staff)
    response = admin_browser.post(
        f"/admin/retention/member/{cast.staff.pk}/password/",
        {"usable_password": "false", "unset-password": "1"},
    )
    assert response.status_code == 302
    cast.staff.refresh_from_db()
    assert not cast.staff.has_usable_password()
    assert status_with(key) == 401
    assert [e["reason"] for e in revocations()] == ["password-changed"]


@pytest.mark.parametrize(
    "form",
    [
        {"password1": NEW_PASSWORD, "password2": "something-else-entirely"},
        {"password1": "123", "password2": "123"},
        {"password1": "", "password2": ""},
    ],
)
def test_a_refused_password_form_keeps_the_password_and_the_tokens(cast, admin_browser, form):
    key = api_token(cast.staff)
    response = admin_browser.post(f"/admin/retention/member/{cast.staff.pk}/password/", form)
    assert response.status_code == 200  # the form again, with its errors
    assert "errornote" in response.content.decode()
    cast.staff.refresh_from_db()
    assert cast.staff.check_password(PASSWORD)
    assert status_with(key) == 200
    assert revocations() == []


def test_deactivating_a_member_revokes_their_tokens_for_good(cast, admin_browser):
    key = api_token(cast.staff)
    page = f"/admin/retention/member/{cast.staff.pk}/change/"
    response = admin_browser.post(page, member_form(cast.staff, is_active=None))
    assert response.status_code == 302, response.content.decode()[:3000]
    cast.staff.refresh_from_db()
    assert not cast.staff.is_active
    assert status_with(key) == 401
    assert revocations() == [
        {
            "actor": cast.admin.pk,
            "target": token_id(key),
            "member": cast.staff.pk,
            "name": "tests",
            "prefix": key[:8],
            "by_owner": False,
            "reason": "deactivated",
        }
    ]
    # Made active again, the member takes new tokens; the old one stays revoked.
    response = admin_browser.post(page, member_form(cast.staff))
    assert response.status_code == 302
    cast.staff.refresh_from_db()
    assert cast.staff.is_active
    assert status_with(key) == 401
    assert len(revocations()) == 1


def test_other_changes_to_a_member_keep_their_tokens(cast, admin_browser):
    key = api_token(cast.staff)
    page = f"/admin/retention/member/{cast.staff.pk}/change/"
    response = admin_browser.post(page, member_form(cast.staff, display_name="Staff Wang"))
    assert response.status_code == 302
    assert status_with(key) == 200
    assert revocations() == []


# --- the services --------------------------------------------------------------------------------


def test_members_change_their_own_password_and_lose_their_tokens(cast):
    key = api_token(cast.staff)
    revoked = do_change_password(
        cast.staff, password=NEW_PASSWORD, acting_user=cast.staff, request=None
    )
    assert revoked == [int(token_id(key))]
    assert status_with(key) == 401
    assert revocations()[0]["by_owner"] is True


def test_an_operator_at_the_shell_changes_a_password(cast):
    key = api_token(cast.staff)
    do_change_password(cast.staff, password=NEW_PASSWORD, acting_user=None, request=None)
    assert status_with(key) == 401
    assert revocations()[0]["actor"] is None


def test_nobody_else_changes_a_members_password(cast):
    key = api_token(cast.staff)
    with pytest.raises(PermissionDenied):
        do_change_password(
            cast.staff, password=NEW_PASSWORD, acting_user=cast.manager, request=None
        )
    cast.staff.refresh_from_db()
    assert cast.staff.check_password(PASSWORD)
    assert status_with(key) == 200
    assert revocations() == []


def test_a_weak_password_is_refused_by_the_service_and_nothing_changes(cast):
    key = api_token(cast.staff)
    with pytest.raises(ValidationError):
        do_change_password(cast.staff, password="12345678", acting_user=cast.admin, request=None)
    cast.staff.refresh_from_db()
    assert cast.staff.check_password(PASSWORD)
    assert status_with(key) == 200


def test_only_an_admin_revokes_a_deactivated_members_tokens_and_only_when_inactive(cast):
    key = api_token(cast.staff)
    with pytest.raises(Conflict):
        do_revoke_tokens_of_deactivated(cast.staff, acting_user=cast.admin, request=None)
    Member.objects.filter(pk=cast.staff.pk).update(is_active=False)
    with pytest.raises(PermissionDenied):
        do_revoke_tokens_of_deactivated(cast.staff, acting_user=cast.manager, request=None)
    assert ApiToken.objects.get(pk=token_id(key)).revoked_at is None
    assert do_revoke_tokens_of_deactivated(cast.staff, acting_user=cast.admin, request=None) == [
        int(token_id(key))
    ]
