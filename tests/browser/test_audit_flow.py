"""An auditor filters the audit log explorer, walks to an older page, and has the chain
verified by a real RQ worker: the status card, polling, says "intact up to event N"."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from audit import log as audit
from audit.events import EventType
from audit.models import ChainVerification
from tests.browser.conftest import screenshot
from tests.browser.test_requests_flow import sign_in
from tests.conftest import running_worker

pytestmark = [pytest.mark.browser, pytest.mark.queue, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(redis_queue_connection):
    with running_worker("default") as process:
        yield process


def test_an_auditor_filters_the_log_and_verifies_the_chain(page, cast, org, worker):
    holds = [
        audit.record(
            EventType.HOLD_PLACED,
            actor=cast.security,
            target_type="retention.conversation",
            target_id=i,
            department_id=org.hangzhou.pk,
            details={"reason": f"诉讼保全 第{i}号"},
        ).pk
        for i in range(60)
    ]
    audit.record(EventType.POLICY_CHANGED, actor=cast.admin, details={"reason": "调整冷静期"})

    sign_in(page, "auditor")
    page.get_by_role("button", name="English").click()
    page.get_by_test_id("nav-audit-log").click()
    expect(page.get_by_test_id("chain-badge")).to_contain_text("not verified")

    page.fill("#id_actor", "security")
    page.fill("#id_q", "诉讼保全")
    page.get_by_test_id("audit-filter-button").click()
    rows = page.locator('[data-testid="audit-events"] tbody tr')
    expect(rows).to_have_count(50)
    expect(page.get_by_test_id(f"event-{holds[-1]}")).to_be_visible()
    expect(page.locator("text=调整冷静期")).to_have_count(0)  # the admin's event is filtered out
    page.get_by_test_id("audit-older").click()
    expect(rows).to_have_count(10)
    expect(page.get_by_test_id(f"event-{holds[0]}")).to_be_visible()
    assert "actor=security" in page.url
    screenshot(page, "audit-explorer")

    link = page.get_by_test_id(f"event-{holds[0]}").get_by_role("link")
    expect(link).to_have_attribute("href", "/conversations/0/")  # the event's object

    page.goto("/audit/verify/")
    page.get_by_test_id("verify-now").click()
    result = page.get_by_test_id("verify-result")
    expect(result).to_contain_text("Intact up to event", timeout=30_000)
    run = ChainVerification.objects.get()
    assert run.status == "intact"
    expect(result).to_contain_text(f"Intact up to event {run.last_good_id}:")
    page.goto("/audit/")
    expect(page.get_by_test_id("chain-badge")).to_contain_text(
        f"Chain intact up to event {run.last_good_id}"
    )
    screenshot(page, "audit-verify")
