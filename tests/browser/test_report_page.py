"""An auditor opens the quarterly report, sees its charts drawn, and downloads the PDF."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot
from tests.browser.test_smoke import sign_in
from tests.retention.test_reports import people, quarter

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

__all__ = ["people", "quarter"]  # fixtures: the seeded 2026-Q3

PAINTED = """canvas => {
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  return pixels.some(value => value !== 0);
}"""


def test_an_auditor_reads_the_quarterly_report_and_downloads_its_pdf(page, quarter):
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
