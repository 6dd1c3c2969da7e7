"""A real Chromium enforces the Content-Security-Policy while an admin walks through every
kind of page — ours, htmx fragments, the Swagger docs, the Django admin, the RQ dashboard —
and not one thing is refused; and the lockout page reads right in the browser."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.conftest import PASSWORD, enrol_authenticator, unused_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Runs before any script of each page: every violation the browser reports is kept.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`
                    + ` at ${e.sourceFile}:${e.lineNumber} (${e.sample})`);
});
"""


@pytest.fixture
def watched(page):
    """The page, and the CSP complaints seen on it: console errors and violation events."""
    complaints: list[str] = []
    page.on(
        "console",
        lambda message: (
            complaints.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.add_init_script(RECORD_VIOLATIONS)
    return page, complaints


def visit(page, complaints: list[str], url: str, ready: str | None = None) -> None:
    response = page.goto(url)
    assert response.status == 200, url
    assert "Content-Security-Policy" in {h.title() for h in response.headers}, url
    if ready:
        page.locator(ready).first.wait_for()
    page.wait_for_load_state("networkidle")
    complaints.extend(page.evaluate("window.__csp"))
    assert complaints == [], url


def test_no_page_breaks_the_content_security_policy(watched, cast, chats):
    page, complaints = watched
    cast.admin.is_staff = True
    cast.admin.save()

    device = enrol_authenticator(cast.admin)  # the admin site needs the second factor
    visit(page, complaints, "/signin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url("**/signin/code/")
    page.wait_for_load_state("networkidle")
    complaints.extend(page.evaluate("window.__csp"))
    page.fill("#id_code", unused_code(device))
    page.get_by_test_id("verify-code").click()
    page.get_by_test_id("whoami").wait_for()

    conversation = chats["company"].pk
    for url, ready in [
        ("/", "[data-testid=whoami]"),
        ("/conversations/", None),
        (f"/conversations/{conversation}/", "[data-testid=messages]"),
        ("/requests/", None),
        ("/requests/new/", "[data-testid=preview-empty]"),
        ("/approvals/", None),
        ("/holds/", None),
        ("/rules/", None),
        ("/recycle-bin/", None),
        ("/policies/", "[data-testid=policy-form]"),
        ("/notifications/", None),
        ("/lockouts/", "[data-testid=lockouts]"),
        ("/reviews/", "[data-testid=reviews]"),
        ("/audit/", None),
        ("/audit/verify/", None),
        ("/security/", None),
        ("/reports/", "[data-testid=chart-method][data-drawn=true]"),
        # Swagger UI renders the whole API with its own scripts and styles.
        ("/api/docs/", ".swagger-ui .opblock"),
        ("/admin/", "#content"),
        ("/admin/retention/member/", "#result_list"),
        (f"/admin/retention/member/{cast.staff.pk}/change/", "#member_form"),
        ("/admin/django_rq/dashboard/", "#changelist"),
        ("/admin/django_rq/dashboard/queues/0/", "#changelist"),
    ]:
        visit(page, complaints, url, ready)
        if url in ("/api/docs/", "/admin/django_rq/dashboard/"):
            screenshot(page, "csp" + url.replace("/", "-").rstrip("-"))

    # htmx at work under the policy: the wizard's live preview swaps a fragment in.
    page.goto("/requests/new/")
    page.locator("input[name=method][value=server]").check()
    page.locator("input[name=whole_company]").check()
    expect(page.get_by_test_id("preview-empty")).to_have_count(0)
    page.wait_for_load_state("networkidle")
    complaints.extend(page.evaluate("window.__csp"))
    assert complaints == []
    screenshot(page, "csp-wizard-preview")

    # The watch itself works: an injected inline script is refused, and seen.
    page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.__ran = true'; document.body.appendChild(s); }"
    )
    page.wait_for_timeout(200)
    assert page.evaluate("window.__ran") is None
    assert any("script-src" in v for v in page.evaluate("window.__csp"))


def test_a_locked_out_member_sees_why_in_the_browser(page, cast):
    page.goto("/signin/")
    for _ in range(5):
        page.fill("#id_username", "manager")
        page.fill("#id_password", "wrong")
        page.click("button[type=submit].primary")
        page.wait_for_load_state()
    locked = page.get_by_test_id("locked-out")
    expect(locked).to_contain_text("登录失败次数过多")
    screenshot(page, "signin-locked-out")
    page.get_by_role("link", name="返回登录").click()
    page.fill("#id_username", "manager")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit].primary")
    expect(page.get_by_test_id("locked-out")).to_be_visible()  # the right password too
    expect(page.get_by_test_id("whoami")).to_have_count(0)
