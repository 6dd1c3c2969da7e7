"""Two-factor authentication in a real browser (zh-Hans): a manager's approval is refused
until they have a second factor; they set up an authenticator from the QR page (the code
is computed from the key the page shows, as a phone app would), sign out, sign in again
with a code, and approve.

Its screenshots (test-results/second-factor-*.png) are the ones in docs/img/.
"""

from __future__ import annotations

import base64
import re

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from retention.models import RequestStatus, StepStatus
from tests.access.test_second_factor import pending
from tests.browser.conftest import screenshot
from tests.conftest import PASSWORD, current_code, unused_code
from tests.wipes.test_execution import store

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

__all__ = ["pending", "store"]


def test_a_manager_sets_up_an_authenticator_signs_in_with_it_and_approves(page, people, pending):
    """``pending``: a batch request of staff's over the Hangzhou store."""
    cast, request = people, pending
    page.goto("/signin/")
    page.fill("#id_username", "manager")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit].primary")
    page.get_by_test_id("whoami").wait_for()
    # The manager has no authenticator: every page leads to setting one up.
    expect(page.get_by_test_id("second-factor-notice")).to_be_visible()

    # The approval is refused and says how to go on; nothing changes.
    page.goto(f"/requests/{request.pk}/")
    page.get_by_test_id("approve").click()
    expect(page.get_by_test_id("second-factor-required")).to_be_visible()
    assert request.steps.get(order=1).status == StepStatus.PENDING
    screenshot(page, "second-factor-required")

    page.get_by_test_id("enrol-link").click()
    expect(page.get_by_test_id("qr-code").locator("svg")).to_be_visible()
    expect(page.get_by_test_id("second-factor-notice")).to_have_count(0)
    screenshot(page, "second-factor-enrol")

    # What a phone app does with the key on the page: base32 → secret → TOTP code.
    typed = page.get_by_test_id("totp-secret").inner_text().replace(" ", "")
    secret = base64.b32decode(typed + "=" * (-len(typed) % 8))
    phone = TOTPDevice(key=secret.hex())

    page.fill("#id_code", "000000" if current_code(phone) != "000000" else "111111")
    page.get_by_test_id("confirm-enrolment").click()
    expect(page.get_by_test_id("code-error")).to_be_visible()
    assert not TOTPDevice.objects.filter(user=cast.manager).exists()

    page.fill("#id_code", current_code(phone))
    page.get_by_test_id("confirm-enrolment").click()
    # Back on the request, this session verified by the code just given.
    page.wait_for_url(re.compile(rf"/requests/{request.pk}/$"))
    expect(page.get_by_test_id("second-factor-notice")).to_have_count(0)
    device = TOTPDevice.objects.get(user=cast.manager, confirmed=True)
    assert device.key == secret.hex()

    page.locator("form[action='/signout/'] button").click()
    page.locator("#id_username").wait_for()

    # Signing in again: the password, then the authenticator's code.
    page.fill("#id_username", "manager")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url("**/signin/code/")
    expect(page.get_by_test_id("second-factor-code")).to_be_visible()
    page.fill("#id_code", unused_code(device))
    screenshot(page, "second-factor-sign-in")
    page.get_by_test_id("verify-code").click()
    page.get_by_test_id("whoami").wait_for()
    expect(page.get_by_test_id("second-factor-notice")).to_have_count(0)

    page.goto(f"/requests/{request.pk}/")
    page.fill("#id_comment", "同意，已核对")
    page.get_by_test_id("approve").click()
    expect(page.get_by_test_id("scheduled-for")).to_be_visible()
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
    assert request.steps.get(order=1).approver == cast.manager
