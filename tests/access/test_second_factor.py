"""The second factor: enrolment, the sign-in code step, and the sensitive actions that
refuse an actor whose session or token has not passed it."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.events import EventType
from audit.models import AuditEvent
from retention.access import second_factor
from retention.access.second_factor import SecondFactorRequired
from retention.governance.decisions import do_approve_step, do_reject_request
from retention.governance.policy_changes import (
    do_grant_quota,
    do_operator_set_policies,
    do_update_policies,
)
from retention.governance.protection import do_place_hold, do_release_hold, do_set_protected
from retention.models import (
    ApiToken,
    Hold,
    RequestMethod,
    RetentionRule,
    RuleAction,
    SignInDay,
    StepStatus,
    Tombstone,
    TombstoneState,
)
from retention.policies import get_policy
from retention.rules.actions import (
    do_approve_rule,
    do_create_rule,
    do_preview_rule,
    do_propose,
    do_relax_rule,
)
from retention.wipes.recycle import do_restore_from_bin
from tests.conftest import (
    PASSWORD,
    api_token,
    current_code,
    enrol_authenticator,
    file_request,
    sign_in_verified,
)
from tests.wipes.test_execution import approved, run, store

pytestmark = pytest.mark.django_db

__all__ = ["store"]


@pytest.fixture(autouse=True)
def _english():
    with translation.override("en"):
        yield


@pytest.fixture
def pending(people, org, store):
    """A batch request of staff's, waiting for a manager of Hangzhou."""
    return file_request(
        people.staff, RequestMethod.BATCH, reason="清理旧记录", departments=[org.hangzhou.pk]
    )


def events(event_type):
    return AuditEvent.objects.filter(event_type=event_type)


def current_step_status(request):
    return request.steps.get(order=1).status


# --- the services refuse without it ---------------------------------------------------------


def test_an_approval_is_refused_without_the_second_factor_and_the_refusal_audited(people, pending):
    with pytest.raises(SecondFactorRequired, match="needs your second factor"):
        do_approve_step(pending, acting_user=people.manager, verified_second_factor=False)
    assert current_step_status(pending) == StepStatus.PENDING
    assert not events(EventType.REQUEST_STEP_APPROVED).exists()
    refusal = events(EventType.SECOND_FACTOR_MISSING).get()
    assert refusal.actor_id == people.manager.pk
    assert refusal.details == {"action": "decide-request", "enrolled": False}

    do_approve_step(pending, acting_user=people.manager, verified_second_factor=True)
    pending.refresh_from_db()
    assert pending.status == "approved"


def test_a_rejection_is_refused_without_it_too(people, pending):
    with pytest.raises(SecondFactorRequired):
        do_reject_request(
            pending, acting_user=people.manager, reason="不行", verified_second_factor=False
        )
    assert current_step_status(pending) == StepStatus.PENDING


def test_who_may_decide_is_refused_before_the_second_factor_is_asked_for(people, pending):
    # Staff may not decide at all: that is the answer, not "verify first".
    with pytest.raises(PermissionDenied) as refused:
        do_approve_step(pending, acting_user=people.staff2, verified_second_factor=False)
    assert not isinstance(refused.value, SecondFactorRequired)
    assert not events(EventType.SECOND_FACTOR_MISSING).exists()


def test_only_true_counts_as_verified(people, pending):
    # A truthy value that is not True (a device object, a string) is a bug, not a proof.
    with pytest.raises(SecondFactorRequired):
        do_approve_step(pending, acting_user=people.manager, verified_second_factor="yes")


def test_holds_policies_quota_and_protection_need_it(people, store, org):
    def place(verified: bool) -> Hold:
        return do_place_hold(
            acting_user=people.security,
            verified_second_factor=verified,
            kind="legal",
            reason="诉讼",
            conversations=[store["customer"]],
            departments=[],
        )

    with pytest.raises(SecondFactorRequired):
        place(False)
    assert not Hold.objects.exists()
    hold = place(True)
    with pytest.raises(SecondFactorRequired):
        do_release_hold(hold, acting_user=people.security, verified_second_factor=False)
    hold.refresh_from_db()
    assert hold.is_active

    with pytest.raises(SecondFactorRequired):
        do_update_policies(
            actor=people.admin, changes={"recycle_bin_days": 3}, verified_second_factor=False
        )
    assert get_policy("recycle_bin_days") == 7
    # Switching the requirement off is a policy change like any other.
    with pytest.raises(SecondFactorRequired):
        do_update_policies(
            actor=people.admin,
            changes={"require_second_factor": False},
            verified_second_factor=False,
        )
    assert get_policy("require_second_factor") is True

    with pytest.raises(SecondFactorRequired):
        do_grant_quota(
            actor=people.admin,
            member=people.staff,
            extra=5,
            reason="售后",
            verified_second_factor=False,
        )
    with pytest.raises(SecondFactorRequired):
        do_set_protected(
            store["group"], acting_user=people.admin, protected=True, verified_second_factor=False
        )
    store["group"].refresh_from_db()
    assert not store["group"].is_protected
    assert events(EventType.SECOND_FACTOR_MISSING).count() == 6


def test_a_restore_needs_it(people, org, store):
    request = approved(
        people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk]
    )
    run(request)
    with pytest.raises(SecondFactorRequired):
        do_restore_from_bin(request, acting_user=people.manager, verified_second_factor=False)
    assert not Tombstone.objects.filter(request=request, state=TombstoneState.RESTORED).exists()
    do_restore_from_bin(request, acting_user=people.manager, verified_second_factor=True)
    assert not Tombstone.objects.filter(request=request, state=TombstoneState.BINNED).exists()


def test_approving_and_relaxing_a_retention_rule_need_it(people, org):
    rule = do_create_rule(
        acting_user=people.admin, name="杭州", keep_days=30, action=RuleAction.BIN
    )
    do_preview_rule(rule, acting_user=people.admin)
    do_propose(rule, acting_user=people.admin)
    with pytest.raises(SecondFactorRequired):
        do_approve_rule(rule, acting_user=people.admin_b, verified_second_factor=False)
    assert RetentionRule.objects.get(pk=rule.pk).approved_by is None
    do_approve_rule(rule, acting_user=people.admin_b, verified_second_factor=True)
    with pytest.raises(SecondFactorRequired):
        do_relax_rule(rule, acting_user=people.admin, verified_second_factor=False, disable=True)
    assert RetentionRule.objects.get(pk=rule.pk).status != "disabled"


def test_with_the_policy_off_unverified_members_act_and_the_switch_is_audited(people, pending):
    do_operator_set_policies(changes={"require_second_factor": False}, via="tests")
    change = events(EventType.POLICY_CHANGED).get()
    assert change.actor_id is None
    assert change.details == {
        "key": "require_second_factor",
        "old": True,
        "new": False,
        "via": "tests",
    }
    do_approve_step(pending, acting_user=people.manager, verified_second_factor=False)
    assert current_step_status(pending) == StepStatus.APPROVED


@pytest.mark.parametrize("value", ["false", 0, None, [], "off"])
def test_the_policy_takes_true_or_false_only(people, value):
    with pytest.raises(ValidationError) as refused:
        do_update_policies(
            actor=people.admin,
            changes={"require_second_factor": value},
            verified_second_factor=True,
        )
    assert refused.value.message_dict == {"require_second_factor": ["Must be true or false."]}
    assert get_policy("require_second_factor") is True


# --- pages: refused, then allowed after verifying ---------------------------------------------


def test_the_approve_page_refuses_an_unverified_session_then_allows_it_after_the_code(
    people, pending
):
    device = enrol_authenticator(people.manager)
    client = Client()
    client.force_login(people.manager)  # password only: the session is not verified
    url = reverse("request-approve", args=[pending.pk])
    page = reverse("request", args=[pending.pk])

    refused = client.post(url, {"step": 1, "comment": ""}, HTTP_REFERER=f"http://testserver{page}")
    assert refused.status_code == 403
    body = refused.content.decode()
    assert 'data-testid="second-factor-required"' in body
    assert f'href="/signin/code/?next={page}"' in body
    assert current_step_status(pending) == StepStatus.PENDING

    before = client.cookies["sessionid"].value
    verified = client.post(f"/signin/code/?next={page}", {"code": current_code(device)})
    assert verified.status_code == 302
    assert client.cookies["sessionid"].value != before  # more rights, a new session key
    assert verified["Location"] == page
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id

    allowed = client.post(url, {"step": 1, "comment": ""})
    assert allowed.status_code == 302
    assert current_step_status(pending) == StepStatus.APPROVED


def test_a_member_without_an_authenticator_is_led_to_set_one_up(people, pending):
    client = Client()
    client.force_login(people.manager)
    dashboard = client.get("/").content.decode()
    assert 'data-testid="second-factor-notice"' in dashboard
    assert "/security/authenticator/?next=/" in dashboard
    refused = client.post(reverse("request-approve", args=[pending.pk]), {"step": 1})
    assert refused.status_code == 403
    assert 'data-testid="enrol-link"' in refused.content.decode()


def test_members_who_never_need_it_see_no_notice_and_nobody_does_with_the_policy_off(people):
    client = Client()
    client.force_login(people.staff)
    assert 'data-testid="second-factor-notice"' not in client.get("/").content.decode()
    do_operator_set_policies(changes={"require_second_factor": False}, via="tests")
    client.force_login(people.manager)
    assert 'data-testid="second-factor-notice"' not in client.get("/").content.decode()


def test_placing_a_hold_on_the_page_needs_it(people, store):
    client = Client()
    client.force_login(people.security)
    data = {"kind": "legal", "reason": "诉讼", "conversations": str(store["customer"].pk)}
    assert client.post(reverse("hold-place"), data).status_code == 403
    assert not Hold.objects.exists()
    sign_in_verified(client, people.security)
    assert client.post(reverse("hold-place"), data).status_code == 302
    assert Hold.objects.count() == 1


def test_the_policies_page_needs_it_and_shows_the_switch(people):
    client = Client()
    client.force_login(people.admin)
    form = client.get(reverse("policies")).content.decode()
    assert 'name="require_second_factor"' in form
    assert re.search(r'name="require_second_factor"[^>]*checked', form)
    data = {
        **{k: v for k, v in get_all_policy_form_data().items()},
        "recycle_bin_days": 3,
    }
    assert client.post(reverse("policies"), data).status_code == 403
    assert get_policy("recycle_bin_days") == 7
    sign_in_verified(client, people.admin)
    saved = client.post(reverse("policies"), data)
    assert saved.status_code == 302
    assert get_policy("recycle_bin_days") == 3
    assert get_policy("require_second_factor") is True
    # Unticking the box switches it off (audited like every policy change).
    data.pop("require_second_factor")
    assert client.post(reverse("policies"), data).status_code == 302
    assert get_policy("require_second_factor") is False


def get_all_policy_form_data() -> dict:
    import json

    from retention.policies import all_policies

    current = all_policies()
    data = {
        key: value
        for key, value in current.items()
        if isinstance(value, int) and not isinstance(value, bool)
    }
    data["approval_chains"] = json.dumps(current["approval_chains"])
    data["server_cost_tiers"] = json.dumps(current["server_cost_tiers"])
    data["window_start"] = current["execution_window"]["start"]
    data["window_end"] = current["execution_window"]["end"]
    data["require_second_factor"] = "on"
    return data


def test_configuration_needs_a_verified_session(people):
    people.admin.is_staff = True
    people.admin.save()
    enrol_authenticator(people.admin)
    client = Client()
    client.force_login(people.admin)
    response = client.get("/admin/retention/member/", follow=True)
    assert response.redirect_chain[-1][0] == "/signin/code/?next=%2Fadmin%2Fretention%2Fmember%2F"
    queues = client.get("/admin/django_rq/dashboard/", follow=True)
    assert queues.redirect_chain[-1][0].startswith("/signin/code/")
    sign_in_verified(client, people.admin)
    assert client.get("/admin/retention/member/").status_code == 200
    assert client.get("/admin/django_rq/dashboard/").status_code == 200


# --- enrolment ------------------------------------------------------------------------------------


def enrolment_secret(client) -> str:
    from retention.web.security import ENROLMENT_SECRET

    return client.session[ENROLMENT_SECRET]


def code_for_secret(key_hex: str, *, steps_ahead: int = 0) -> str:
    return current_code(TOTPDevice(key=key_hex), steps_ahead=steps_ahead)


def test_enrolment_shows_a_qr_code_and_the_key_and_a_wrong_code_changes_nothing(people):
    client = Client()
    client.force_login(people.manager)
    page = client.get(reverse("second-factor-enrol"))
    assert page.status_code == 200
    body = page.content.decode()
    assert "<svg" in body and 'data-testid="qr-code"' in body
    key = enrolment_secret(client)
    assert second_factor.secret_for_humans(key) in body
    assert "<script" not in body.split("</head>")[1]  # no inline script (CSP)

    right = code_for_secret(key)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    refused = client.post(reverse("second-factor-enrol"), {"code": wrong})
    assert refused.status_code == 400
    assert 'data-testid="code-error"' in refused.content.decode()
    assert not TOTPDevice.objects.filter(user=people.manager).exists()
    failure = events(EventType.SECOND_FACTOR_FAILED).get()
    assert failure.details == {"via": "enrolment"}
    assert enrolment_secret(client) == key  # the same key: try the next code

    garbled = client.post(reverse("second-factor-enrol"), {"code": "12ab56"})
    assert garbled.status_code == 400
    assert 'data-testid="code-error"' in garbled.content.decode()

    confirmed = client.post(reverse("second-factor-enrol"), {"code": right})
    assert confirmed.status_code == 302
    device = TOTPDevice.objects.get(user=people.manager)
    assert device.confirmed and device.key == key
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id  # verified too
    enrolled = events(EventType.SECOND_FACTOR_ENROLLED).get()
    assert enrolled.actor_id == people.manager.pk
    assert key not in str(enrolled.details)
    # The code that confirmed it cannot be used again, to sign in say.
    with pytest.raises(ValidationError):
        second_factor.check_code(people.manager, right, request=None, via="tests")


def test_a_second_authenticator_is_refused_until_the_first_is_removed(people):
    enrol_authenticator(people.manager)
    with pytest.raises(Exception, match="already have an authenticator"):
        second_factor.do_enrol(
            people.manager,
            key_hex="ab" * 20,
            code=code_for_secret("ab" * 20),
            request=None,
        )
    assert TOTPDevice.objects.filter(user=people.manager).count() == 1


# --- signing in with it ------------------------------------------------------------------------


def test_signing_in_with_an_authenticator_needs_its_code(people):
    device = enrol_authenticator(people.manager)
    client = Client()
    step = client.post("/signin/", {"username": "manager", "password": PASSWORD})
    assert step.status_code == 302
    assert step["Location"] == "/signin/code/"
    # The password alone signs nobody in.
    assert client.get("/").status_code == 302
    assert not events(EventType.SIGN_IN).exists()

    wrong = client.post("/signin/code/", {"code": "000000"})
    if wrong.status_code == 302:  # 000000 happened to be the code: astronomically rare
        pytest.skip("the wrong code was the right one")
    assert wrong.status_code == 400
    assert events(EventType.SECOND_FACTOR_FAILED).get().details == {
        "via": "sign-in",
        "throttled": False,
    }
    assert client.get("/").status_code == 302

    device.refresh_from_db()
    device.throttle_reset()  # django-otp makes the next try wait a second after a miss
    done = client.post("/signin/code/", {"code": current_code(device)})
    assert done.status_code == 302 and done["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert events(EventType.SIGN_IN).get().actor_id == people.manager.pk


def test_wrong_codes_slow_further_tries_down(people):
    device = enrol_authenticator(people.manager)
    with pytest.raises(ValidationError):
        second_factor.check_code(people.manager, "000000", request=None, via="tests")
    # Right away, even the right code is refused: django-otp's exponential back-off.
    with pytest.raises(ValidationError, match="Too many wrong codes"):
        second_factor.check_code(people.manager, current_code(device), request=None, via="tests")
    device.refresh_from_db()
    assert device.throttling_failure_count == 1
    assert events(EventType.SECOND_FACTOR_FAILED).order_by("pk").last().details["throttled"]


def test_the_code_step_without_a_password_first_goes_back_to_sign_in(people):
    client = Client()
    response = client.post("/signin/code/", {"code": "123456"})
    assert response.status_code == 302 and response["Location"] == "/signin/"


def test_a_pending_sign_in_expires(people, settings):
    device = enrol_authenticator(people.manager)
    client = Client()
    client.post("/signin/", {"username": "manager", "password": PASSWORD})
    settings.QINGLI_SECOND_FACTOR_PENDING_SECONDS = -1
    response = client.post("/signin/code/", {"code": current_code(device)})
    assert response["Location"] == "/signin/"
    assert client.get("/").status_code == 302


def test_the_sign_in_code_step_keeps_next_but_never_leaves_the_site(people):
    device = enrol_authenticator(people.manager)
    client = Client()
    client.post(
        "/signin/", {"username": "manager", "password": PASSWORD, "next": "https://evil.test/"}
    )
    response = client.post("/signin/code/", {"code": current_code(device)})
    assert response["Location"] == "/"


# --- removing and resetting -----------------------------------------------------------------------


def test_removing_ones_authenticator_needs_a_code_and_revokes_its_tokens(people):
    device = enrol_authenticator(people.manager)
    api_token(people.manager, second_factor=True)
    api_token(people.manager, second_factor=False)
    client = sign_in_verified(Client(), people.manager)
    refused = client.post(reverse("second-factor-remove"), {"code": ""})
    assert refused.status_code == 400
    assert TOTPDevice.objects.filter(pk=device.pk).exists()

    removed = client.post(reverse("second-factor-remove"), {"code": current_code(device)})
    assert removed.status_code == 302
    assert not TOTPDevice.objects.filter(user=people.manager).exists()
    live = ApiToken.objects.filter(member=people.manager, revoked_at__isnull=True)
    assert [t.second_factor_verified for t in live] == [False]
    event = events(EventType.SECOND_FACTOR_REMOVED).get()
    assert len(event.details["tokens_revoked"]) == 1
    # The session is no longer verified: its device is gone.
    client.get("/")
    assert DEVICE_ID_SESSION_KEY not in client.session


def test_an_admin_resets_a_members_authenticator_with_a_verified_session(people):
    enrol_authenticator(people.manager)
    api_token(people.manager, second_factor=True)
    enrol_authenticator(people.admin)
    for target, actor, verified, refusal in (
        (people.manager, people.admin, False, SecondFactorRequired),
        (people.manager, people.security, True, PermissionDenied),  # not an admin
        (people.admin, people.admin, True, PermissionDenied),  # oneself: remove it with a code
    ):
        with pytest.raises(refusal):
            second_factor.do_reset_device(
                target,
                acting_user=actor,
                verified_second_factor=verified,
                reason="手机丢了",
            )
    assert TOTPDevice.objects.filter(user=people.manager).exists()

    client = sign_in_verified(Client(), people.admin)
    reset_url = reverse("member-reset-device", args=[people.manager.pk])
    no_reason = client.post(reset_url, {"reason": ""})
    assert no_reason.status_code == 302
    assert TOTPDevice.objects.filter(user=people.manager).exists()

    page = client.get(reverse("member-security")).content.decode()
    assert 'data-testid="member-manager"' in page

    done = client.post(reset_url, {"reason": "手机丢了"})
    assert done.status_code == 302
    assert not TOTPDevice.objects.filter(user=people.manager).exists()
    assert not ApiToken.objects.filter(member=people.manager, revoked_at__isnull=True).exists()
    event = events(EventType.SECOND_FACTOR_RESET).get()
    assert event.actor_id == people.admin.pk
    assert event.target_id == str(people.manager.pk)
    assert event.details["reason"] == "手机丢了"


def test_only_admins_see_everyones_authenticators(people):
    client = sign_in_verified(Client(), people.security)
    assert client.get(reverse("member-security")).status_code == 403
    reset = client.post(reverse("member-reset-device", args=[people.manager.pk]), {"reason": "x"})
    assert reset.status_code == 403


def test_a_sign_in_streak_counts_the_day_of_a_code_sign_in(people):
    device = enrol_authenticator(people.staff2)
    SignInDay.objects.filter(member=people.staff2).delete()
    client = Client()
    client.post("/signin/", {"username": "staff2", "password": PASSWORD})
    client.post("/signin/code/", {"code": current_code(device)})
    assert SignInDay.objects.filter(member=people.staff2, day=timezone.localdate()).exists()


def test_an_operator_resets_the_only_admins_authenticator_from_the_shell(people):
    from io import StringIO

    from django.core.management import CommandError, call_command

    enrol_authenticator(people.admin)
    with pytest.raises(CommandError, match="Say why"):
        call_command("reset_second_factor", "admin", "--reason", " ")
    with pytest.raises(CommandError, match="no member"):
        call_command("reset_second_factor", "nobody", "--reason", "手机丢了")
    out = StringIO()
    call_command("reset_second_factor", "admin", "--reason", "手机丢了", stdout=out)
    assert "authenticator is removed" in out.getvalue()
    assert not TOTPDevice.objects.filter(user=people.admin).exists()
    event = events(EventType.SECOND_FACTOR_RESET).get()
    assert event.actor_id is None and event.details["reason"] == "手机丢了"
    with pytest.raises(CommandError, match="no authenticator"):
        call_command("reset_second_factor", "admin", "--reason", "again")
