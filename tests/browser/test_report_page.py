"""An auditor opens the quarterly report, sees its charts drawn, downloads the PDF, and
signs off the quarter's recycle-bin review, which the report then shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.test_smoke import sign_in
from tests.reports.test_reports import quarter

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

__all__ = ["quarter"]  # fixtures: the seeded 2026-Q3

PAINTED = """canvas => {
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  return pixels.some(value => value !== 0);
}"""


def test_an_auditor_reads_the_quarterly_report_and_signs_off_the_bin_review(page, quarter):
    sign_in(page, "auditor")
    page.get_by_test_id("nav-reports").click()
    page.goto("/reports/2026-Q3/")
    expect(page.get_by_test_id("report-title")).to_contain_text("2026-Q3")
    expect(page.get_by_test_id("total-messages")).to_have_text("27")
    for name in ("method", "department", "latency"):
        canvas = page.get_by_test_id(f"chart-{name}")
        expect(canvas).to_have_attribute("data-drawn", "true")
        assert canvas.evaluate(PAINTED), f"the {name} chart drew nothing"
    screenshot(page, "report-quarterly")

    with page.expect_download() as download:
        page.get_by_test_id("download-pdf").click()
    assert download.value.suggested_filename == "qingli-audit-report-2026-Q3.pdf"
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF")

    # The quarter's recycle-bin review: opened, its figures read, signed off.
    page.get_by_test_id("nav-reviews").click()
    page.select_option("#id_quarter", "2026-Q3")
    page.get_by_test_id("open-bin-review").click()
    expect(page.get_by_test_id("bin-figures")).to_be_visible()
    page.fill("#id_finding", "回收站本季度无异常")
    page.get_by_test_id("sign-off").click()
    expect(page.get_by_test_id("review-finding")).to_have_text("回收站本季度无异常")
    assert not page.get_by_test_id("sign-off").count()
    screenshot(page, "recycle-bin-review")

    page.goto("/reports/2026-Q3/")
    expect(page.locator("body")).to_contain_text("回收站本季度无异常")
