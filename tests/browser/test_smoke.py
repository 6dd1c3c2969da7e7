from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page, username: str) -> None:
    page.goto("/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit].primary")
    page.get_by_test_id("whoami").wait_for()


def test_a_manager_signs_in_and_sees_their_dashboard(page, cast, chats):
    sign_in(page, "manager")
    assert page.get_by_test_id("whoami").inner_text().startswith("Manager")
    stats = page.get_by_test_id("department-stats")
    assert "Hangzhou warehouse" in stats.inner_text()
    assert "Shenzhen store" not in stats.inner_text()  # outside the manager's subtree
    assert page.get_by_test_id("visible-conversations").inner_text() == "2"
    screenshot(page, "dashboard-manager")

    page.get_by_role("link", name="Hangzhou store chat").first.click()
    assert "亲，在的" in page.get_by_test_id("messages").inner_text()


def test_a_wrong_password_shows_an_error_and_stays_signed_out(page, cast):
    page.goto("/")
    page.fill("#id_username", "manager")
    page.fill("#id_password", "wrong")
    page.click("button[type=submit].primary")
    expect(page.locator(".form-error")).to_be_visible()
    expect(page.get_by_test_id("whoami")).to_have_count(0)


def test_the_language_switch_changes_the_interface(page, cast):
    sign_in(page, "staff")
    screenshot(page, "dashboard-staff-zh")
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("link", name="Conversations", exact=True)).to_be_visible()
    page.get_by_role("button", name="简体中文").click()
    expect(page.get_by_role("link", name="会话", exact=True)).to_be_visible()
