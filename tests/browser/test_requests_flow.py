"""A batch deletion end to end in a real browser: staff file it in the wizard while the
live preview follows every change, their manager approves it from the inbox, and the
request's timeline tells the story."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone, translation
from playwright.sync_api import expect

from audit.events import EventType
from retention.models import DeletionRequest, Member, RequestStatus
from tests.browser.conftest import screenshot
from tests.conftest import PASSWORD, enrol_authenticator, sign_in_streak, unused_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def streaks(cast):
    """Staff and their manager signed in on each of the last five days."""
    sign_in_streak([cast.staff, cast.manager], until=timezone.localdate() - timedelta(days=1))
    return cast


def sign_in(page, username: str, *, second_factor: bool = False) -> None:
    """Sign in with the password; with ``second_factor`` the member has an authenticator
    and gives its code too, as approvers must before they approve."""
    device = None
    if second_factor:
        device = enrol_authenticator(Member.objects.get(username=username))
    page.goto("/signin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit].primary")
    if device is not None:
        page.wait_for_url("**/signin/code/")
        page.fill("#id_code", unused_code(device))
        page.get_by_test_id("verify-code").click()
    page.get_by_test_id("whoami").wait_for()


def sign_out(page) -> None:
    page.locator("form[action='/signout/'] button").click()
    page.locator("#id_username").wait_for()


def shown(label) -> re.Pattern:
    """An event's name as the (Chinese) page shows it, whatever its capitalisation."""
    with translation.override("zh-hans"):
        return re.compile(re.escape(str(label)), re.IGNORECASE)


def test_staff_file_a_batch_with_a_live_preview_and_their_manager_approves(
    page, streaks, org, chats
):
    sign_in(page, "staff")
    page.goto("/requests/new/")
    expect(page.get_by_test_id("preview-empty")).to_be_visible()
    wizard_url = page.url
    # Survives only if the page is never reloaded.
    page.evaluate("document.body.dataset.sameDocument = 'yes'")
    messages = page.get_by_test_id("preview-messages")

    page.get_by_test_id("department-tree").get_by_label("Hangzhou store").check()
    expect(messages).to_have_text("3")  # the store's two and its warehouse's one
    expect(page.get_by_test_id("preview-departments")).to_contain_text("Hangzhou warehouse")
    screenshot(page, "wizard")

    page.locator("#id_include_subdepartments").uncheck()
    expect(messages).to_have_text("2")
    expect(page.get_by_test_id("subdepartments-left-out")).to_contain_text("Hangzhou warehouse")

    page.locator("#id_include_subdepartments").check()
    expect(messages).to_have_text("3")
    expect(page.get_by_test_id("subdepartments-left-out")).to_have_count(0)

    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()
    page.fill("#id_sent_after", tomorrow)
    expect(messages).to_have_text("0")
    page.fill("#id_sent_after", "")
    expect(messages).to_have_text("3")

    assert page.url == wizard_url
    assert page.evaluate("document.body.dataset.sameDocument") == "yes"

    page.fill("#id_reason", "门店年底清理过期聊天记录")
    page.get_by_test_id("file-request").click()
    page.wait_for_url("**/requests/*/")
    request = DeletionRequest.objects.get()
    assert page.url.endswith(f"/requests/{request.pk}/")
    assert request.requester == streaks.staff and request.preview["messages"] == 3
    sign_out(page)

    sign_in(page, "manager", second_factor=True)
    expect(page.get_by_test_id("approvals-count")).to_have_text("1")
    page.get_by_test_id("nav-approvals").click()
    expect(page.get_by_test_id("inbox-count")).to_have_text("1")
    expect(page.get_by_test_id("inbox")).to_contain_text("Staff")
    screenshot(page, "inbox")

    page.get_by_test_id("inbox").get_by_role("link", name=f"#{request.pk}").click()
    expect(page.get_by_test_id("preview-messages")).to_have_text("3")
    page.fill("#id_comment", "同意，已核对")
    page.get_by_test_id("approve").click()

    timeline = page.get_by_test_id("timeline")
    expect(timeline.locator(".event-400")).to_contain_text(shown(EventType.REQUEST_FILED.label))
    expect(timeline.locator(".event-402")).to_contain_text(shown(EventType.REQUEST_APPROVED.label))
    expect(timeline).to_contain_text("同意，已核对")
    expect(page.get_by_test_id("scheduled-for")).to_be_visible()
    expect(page.get_by_test_id("approvals-count")).to_be_hidden()
    screenshot(page, "request-timeline")
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED
