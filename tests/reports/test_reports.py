"""The quarterly audit report against a seeded quarter whose answers are known.

The quarter (2026-Q3) is built through the real actions, with the clock frozen at chosen
moments (Asia/Shanghai), so that every count, latency and anomaly below is known before
the report runs.
"""

from __future__ import annotations

import csv
import io
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from openpyxl import load_workbook
from pypdf import PdfReader

from retention.governance.decisions import do_approve_step, do_reject_request
from retention.governance.policy_changes import do_grant_quota, do_update_policies
from retention.governance.protection import do_place_hold, do_release_hold
from retention.models import (
    Department,
    Execution,
    HoldKind,
    RequestMethod,
    RequestStatus,
)
from retention.reports.periods import Quarter
from retention.reports.quarterly import quarterly_report
from retention.wipes import move, runner, schedule
from retention.wipes.recycle import do_restore_from_bin
from tests.conftest import file_request, make_chat, sign_in_streak, sign_in_verified
from tests.governance.test_api_requests import api_for
from tests.rules.test_retention_rules import admins, chats, enabled, new_rule, run_rules

pytestmark = pytest.mark.django_db

__all__ = ["admins", "chats"]  # fixtures shared with the run and rule tests
SHANGHAI = ZoneInfo("Asia/Shanghai")
NAMES = {"hangzhou": "杭州门店", "warehouse": "杭州仓库", "shenzhen": "深圳门店"}


def at(month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=SHANGHAI)


@contextmanager
def clock(moment: datetime):
    with mock.patch("django.utils.timezone.now", return_value=moment):
        yield


def utf8(*bodies: str) -> int:
    return sum(len(b.encode()) for b in bodies)


def _run_of(request) -> int:
    return Execution.objects.get(request=request).pk


def run_now(request):
    started = schedule.start_request(request.pk)
    assert started is not None
    return runner.run_execution(started.pk)


@pytest.fixture
def quarter(people, org, settings, monkeypatch):
    """2026-Q3, with its answers in the returned dict."""
    for key, name in NAMES.items():
        Department.objects.filter(pk=getattr(org, key).pk).update(name=name)
    # Everyone but the warehouse clerk signed in every day of the quarter.
    days = [date(2026, 6, 20) + timedelta(days=i) for i in range(110)]
    sign_in_streak(
        [m for m in vars(people).values() if m != people.warehouse_staff],
        days=len(days),
        until=days[-1],
    )
    customer = [f"客户消息{i}" for i in range(7)]
    group = [f"店内群{i}" for i in range(4)]
    stock = ["盘点1", "盘点2"]
    south = ["深圳1", "深圳2", "深圳3"]
    make_chat(org.hangzhou, [people.staff], customer, kind="customer")
    make_chat(org.hangzhou, [people.staff], group)
    make_chat(org.warehouse, [people.warehouse_staff], stock)
    make_chat(org.shenzhen, [people.staff2], south)

    # A personal deletion in the quarter before: not counted (the batch deletion below
    # takes the conversation for everyone, though).
    with clock(at(6, 30, 23, 30)):
        early = make_chat(org.hangzhou, [people.staff], ["六月"])
        file_request(people.staff, RequestMethod.PERSONAL, conversations=[early.pk])

    # 1. A batch deletion of Hangzhou (store and warehouse), approved in 30 s: fast.
    with clock(at(7, 1, 10)):
        first = file_request(people.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    with clock(at(7, 1, 10, 0, 30)):
        do_approve_step(first, acting_user=people.manager, verified_second_factor=True)
    with clock(at(7, 2, 22)):
        run_now(first)

    # 2. A batch deletion of Shenzhen, approved in 2 h, run at 14:00 after an admin
    # opened the execution window (an anomaly), then restored 11 h before its purge.
    with clock(at(7, 10, 9)):
        second = file_request(people.staff2, RequestMethod.BATCH, departments=[org.shenzhen.pk])
    with clock(at(7, 10, 10, 30)):
        do_update_policies(
            actor=people.admin, changes={"execution_window": None}, verified_second_factor=True
        )
    with clock(at(7, 10, 11)):
        do_approve_step(second, acting_user=people.manager2, verified_second_factor=True)
    with clock(at(7, 11, 14)):
        run_now(second)
    with clock(at(7, 11, 15)):
        do_update_policies(
            actor=people.admin,
            changes={"execution_window": {"start": "22:00", "end": "06:00"}},
            verified_second_factor=True,
        )
    with clock(at(7, 18, 3)):
        do_restore_from_bin(second, acting_user=people.manager2, verified_second_factor=True)

    # 3. A batch request rejected.
    with clock(at(8, 1, 10)):
        group2 = make_chat(
            org.hangzhou, [people.staff], ["新群1", "新群2", "新群3", "新群4", "新群5"]
        )
        third = file_request(people.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    with clock(at(8, 1, 12)):
        do_reject_request(
            third, acting_user=people.manager, reason="范围过大", verified_second_factor=True
        )

    # 4. A server-side wipe of Shenzhen through three steps: 1 h, 2 h and 3 h.
    with clock(at(8, 10, 9)):
        wipe = file_request(people.admin, RequestMethod.SERVER, departments=[org.shenzhen.pk])
    with clock(at(8, 10, 10)):
        do_approve_step(wipe, acting_user=people.manager2, verified_second_factor=True)
    with clock(at(8, 10, 12)):
        do_approve_step(wipe, acting_user=people.security, verified_second_factor=True)
    with clock(at(8, 10, 15)):
        wipe = do_approve_step(wipe, acting_user=people.admin_b, verified_second_factor=True)
    assert wipe.status == RequestStatus.APPROVED
    with clock(at(8, 13, 22)):
        run_now(wipe)

    # 5. Personal deletions past a quota of 1, an override, and an ineligible filer.
    with clock(at(9, 1, 9)):
        do_update_policies(
            actor=people.admin, changes={"personal_monthly_quota": 1}, verified_second_factor=True
        )
        mine = make_chat(org.hangzhou, [people.staff], ["我的1", "我的2"])
    with clock(at(9, 1, 10)):
        file_request(people.staff, RequestMethod.PERSONAL, conversations=[mine.pk])
    with clock(at(9, 1, 10, 5)), pytest.raises(PermissionDenied):
        file_request(people.staff, RequestMethod.PERSONAL, conversations=[group2.pk])
    with clock(at(9, 1, 11)):
        do_grant_quota(
            actor=people.admin,
            member=people.staff,
            extra=2,
            reason="月底清理",
            verified_second_factor=True,
        )
    with clock(at(9, 1, 11, 5)):
        file_request(people.staff, RequestMethod.PERSONAL, conversations=[group2.pk])
    with clock(at(9, 2, 9)), pytest.raises(PermissionDenied):
        file_request(people.warehouse_staff, RequestMethod.BATCH, departments=[org.warehouse.pk])

    # 6. A hold placed and released.
    with clock(at(9, 5, 10)):
        hold = do_place_hold(
            acting_user=people.security,
            kind=HoldKind.LEGAL,
            reason="诉讼保全",
            conversations=[],
            departments=[org.hangzhou],
            verified_second_factor=True,
        )
    with clock(at(9, 6, 10)):
        do_release_hold(
            hold, acting_user=people.security, reason="案件结束", verified_second_factor=True
        )

    # 7. A batch run killed after its first batch, resumed, then failed for good: one
    # resumed and one failed job, and no deletion (nothing completed).
    settings.QINGLI_WIPE_BATCH_MESSAGES = 1  # moves take 4 messages a batch
    settings.QINGLI_WIPE_MAX_ATTEMPTS = 2
    with clock(at(9, 10, 9)):
        make_chat(org.shenzhen, [people.staff2], [f"故障{i}" for i in range(10)])
        doomed = file_request(people.staff2, RequestMethod.BATCH, departments=[org.shenzhen.pk])
    with clock(at(9, 10, 10)):
        do_approve_step(doomed, acting_user=people.manager2, verified_second_factor=True)
    real_step, steps = runner._step, []

    def killed_after_one_batch(execution, worker):
        if steps:
            raise KeyboardInterrupt  # like SIGKILL: no cleanup, no failure recorded
        steps.append(worker)
        return real_step(execution, worker)

    with clock(at(9, 11, 22)), pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(runner, "_step", killed_after_one_batch)
        runner.run_execution(schedule.start_request(doomed.pk).pk, worker="first")
    monkeypatch.setattr(runner, "_step", real_step)

    def broken(*args, **kwargs):
        raise RuntimeError("磁盘已满")

    monkeypatch.setattr(move, "move_batch", broken)
    with clock(at(9, 11, 23)):
        failed = runner.run_execution(_run_of(doomed))
    assert failed.status == "failed" and failed.resumes == 1, failed.last_error

    # A personal deletion in the quarter after: not counted.
    with clock(at(10, 1, 0, 10)):
        late = make_chat(org.hangzhou, [people.staff], ["十月"])
        file_request(people.staff, RequestMethod.PERSONAL, conversations=[late.pk])

    return {
        "first": first,
        "second": second,
        "third": third,
        "wipe": wipe,
        "doomed": doomed,
        "bytes": {
            "hangzhou_batch": utf8(*customer, *group, "六月"),
            "warehouse": utf8(*stock),
            "south": utf8(*south),
            "mine": utf8("我的1", "我的2"),
            "group2": utf8("新群1", "新群2", "新群3", "新群4", "新群5"),
        },
    }


def test_the_quarter_parses_strictly():
    assert Quarter.parse("2026-Q4") == Quarter(2026, 4)
    for bad in ("2026-Q5", "abc", "2026-Q0", "2026Q1", ""):
        with pytest.raises(ValueError):
            Quarter.parse(bad)


def test_deletions_by_method_department_and_person_match_the_seeded_quarter(quarter, people):
    report = quarterly_report(2026, 3, person_threshold=2)
    b = quarter["bytes"]
    by_method = {m["method"]: m for m in report["deletions"]["by_method"]}
    assert {
        k: (v["deletions"], v["messages"], v["conversations"]) for k, v in by_method.items()
    } == {
        "personal": (2, 7, 2),
        "batch": (2, 17, 5),
        "server": (1, 3, 1),
        "retention": (0, 0, 0),
    }
    assert by_method["batch"]["bytes"] == b["hangzhou_batch"] + b["warehouse"] + b["south"]
    assert by_method["server"]["bytes"] == b["south"]
    assert by_method["personal"]["bytes"] == b["mine"] + b["group2"]
    assert report["deletions"]["total"] == {
        "deletions": 5,
        "messages": 27,
        "conversations": 8,
        "bytes": b["hangzhou_batch"] + b["warehouse"] + 2 * b["south"] + b["mine"] + b["group2"],
    }
    by_department = {
        e["name"]: (e["deletions"], e["messages"], e["conversations"], e["bytes"])
        for e in report["deletions"]["by_department"]
    }
    assert by_department == {
        "杭州门店": (3, 19, 5, b["hangzhou_batch"] + b["mine"] + b["group2"]),
        "杭州仓库": (1, 2, 1, b["warehouse"]),
        "深圳门店": (2, 6, 2, 2 * b["south"]),
    }
    by_person = {
        e["username"]: (e["deletions"], e["messages"]) for e in report["deletions"]["by_person"]
    }
    assert by_person == {"staff": (3, 21), "staff2": (1, 3), "admin": (1, 3)}


def test_approval_latency_rejections_holds_restores_and_refusals(quarter):
    report = quarterly_report(2026, 3)
    assert report["approval_latency"] == [
        {
            "step": 1,
            "role": "manager",
            "approvals": 4,  # 30 s, 1 h, 1 h and 2 h
            "median_seconds": 3600.0,
            "p90_seconds": 7200.0,
        },
        {
            "step": 2,
            "role": "security",
            "approvals": 1,
            "median_seconds": 7200.0,
            "p90_seconds": 7200.0,
        },
        {
            "step": 3,
            "role": "admin",
            "approvals": 1,
            "median_seconds": 10800.0,
            "p90_seconds": 10800.0,
        },
    ]
    rejections = report["rejections"]
    assert rejections["count"] == 1
    assert rejections["items"][0]["request"] == quarter["third"].pk
    assert rejections["by_reason"] == [{"reason": "范围过大", "count": 1}]
    assert report["refusals"]["by_why"] == {"quota": 1, "eligibility": 1}
    assert report["quota_overrides"]["count"] == 1
    assert report["quota_overrides"]["items"][0]["member"] == "staff"
    assert report["quota_overrides"]["extra"] == 2
    assert report["holds"]["placed"]["count"] == 1
    assert report["holds"]["released"]["count"] == 1
    assert report["holds"]["placed"]["items"][0]["reason"] == "诉讼保全"
    assert (report["restores"]["recycle_bin"], report["restores"]["messages"]) == (1, 3)
    assert report["jobs"]["failed"]["count"] == report["jobs"]["resumed"]["count"] == 1
    assert report["jobs"]["failed"]["items"][0]["request"] == quarter["doomed"].pk
    assert report["jobs"]["failed"]["items"][0]["reason"].endswith("磁盘已满")
    assert report["rule_runs"] == {"count": 0, "messages": 0, "failed": 0}


def test_each_anomaly_is_triggered_once(quarter):
    anomalies = quarterly_report(2026, 3, person_threshold=2)["anomalies"]
    assert [(o["request"], o["at"][11:16]) for o in anomalies["outside_window"]] == [
        (quarter["second"].pk, "14:00")
    ]
    assert [(h["username"], h["deletions"]) for h in anomalies["heavy_deleters"]] == [("staff", 3)]
    assert [(r["request"], r["hours_left"]) for r in anomalies["restores_near_purge"]] == [
        (quarter["second"].pk, 11.0)
    ]
    assert [(f["request"], f["seconds"]) for f in anomalies["fast_approvals"]] == [
        (quarter["first"].pk, 30.0)
    ]
    assert anomalies["count"] == 4


def test_the_quarters_around_it_see_only_their_own_records(quarter):
    assert quarterly_report(2026, 2)["deletions"]["total"]["deletions"] == 1
    assert quarterly_report(2026, 4)["deletions"]["total"]["deletions"] == 1
    assert quarterly_report(2025, 3)["deletions"]["total"]["deletions"] == 0


def test_a_retention_rule_run_counts_as_a_run_and_as_its_deletion(admins, org, chats):
    """The rule tests' own clock: now, so the report of the current quarter."""
    rule = enabled(new_rule(admins, department=org.hangzhou, keep_days=90), admins)
    run_rules()
    today = timezone.localdate()
    report = quarterly_report(today.year, (today.month - 1) // 3 + 1)
    # Hangzhou's customer and group chats each lose their 100-, 200- and 400-day-old messages.
    assert report["rule_runs"] == {"count": 1, "messages": 6, "failed": 0}
    retention = next(m for m in report["deletions"]["by_method"] if m["method"] == "retention")
    assert (retention["deletions"], retention["messages"], retention["conversations"]) == (1, 6, 2)
    assert [(p["username"], p["messages"]) for p in report["deletions"]["by_person"]] == [
        (rule.approved_by.username, 6)
    ]


# --- pages, API and downloads --------------------------------------------------------


def test_the_api_and_the_page_show_the_same_numbers(client, quarter, people):
    api = api_for(people.auditor).get("/api/v1/reports/quarterly/2026-Q3/")
    assert api.status_code == 200
    assert api.json()["deletions"]["total"]["messages"] == 27
    client.force_login(people.auditor)
    page = client.get("/reports/2026-Q3/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="total-messages">27<' in html
    assert 'id="report-charts"' in html and "深圳门店" in html
    assert "<script>" not in html  # CSP: no inline script


def test_the_csv_parses_with_the_same_numbers(client, quarter, people):
    client.force_login(people.auditor)
    response = client.get("/reports/2026-Q3/csv/")
    assert response.status_code == 200
    assert response["Content-Disposition"].endswith('2026-Q3.csv"')
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    departments = {r[1]: r[2:] for r in rows if r[0] == "by_department"}
    assert departments["杭州仓库"][:3] == ["1", "2", "1"]
    assert departments["深圳门店"][:3] == ["2", "6", "2"]
    methods = {r[1]: r[2:4] for r in rows if r[0] == "by_method"}
    assert sorted(methods.values()) == [["0", "0"], ["1", "3"], ["2", "17"], ["2", "7"]]


def test_the_xlsx_opens_with_a_sheet_per_table(client, quarter, people):
    client.force_login(people.auditor)
    response = client.get("/reports/2026-Q3/xlsx/")
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(response.content))
    assert {"summary", "by_method", "by_department", "by_person", "approval_latency"} <= set(
        book.sheetnames
    )
    persons = {row[0]: row[1:3] for row in book["by_person"].iter_rows(min_row=3, values_only=True)}
    assert persons["staff"] == (3, 21)


def test_the_pdf_carries_the_chinese_department_names(client, quarter, people):
    client.force_login(people.auditor)
    response = client.get("/reports/2026-Q3/pdf/")
    assert response.status_code == 200
    assert response.content.startswith(b"%PDF")
    reader = PdfReader(io.BytesIO(response.content))
    text = "".join(page.extract_text() for page in reader.pages)
    for name in NAMES.values():
        assert name in text
    fonts = {
        str(font["/BaseFont"])
        for page in reader.pages
        for font in page["/Resources"]["/Font"].get_object().values()
    }
    assert any("CJK" in f for f in fonts), fonts


def test_the_annual_assessment_lists_quarters_chain_findings_and_policy_changes(
    client, quarter, people
):
    data = api_for(people.auditor).get("/api/v1/reports/annual/2026/").json()
    assert [q["period"] for q in data["quarters"]] == ["2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"]
    assert [q["deletions"] for q in data["quarters"]] == [0, 1, 5, 1]
    assert data["chain"]["intact"] is True
    # The server-side wipe opened a compliance review nobody has signed off yet.
    assert [f["request"] for f in data["open_findings"]] == [quarter["wipe"].pk]
    assert [p["key"] for p in data["policy_changes"]] == [
        "execution_window",
        "execution_window",
        "personal_monthly_quota",
    ]
    client.force_login(people.auditor)
    book = load_workbook(io.BytesIO(client.get("/reports/annual/2026/xlsx/").content))
    assert book.sheetnames == ["quarters", "chain", "open_findings", "policy_changes"]
    rows = list(
        csv.reader(io.StringIO(client.get("/reports/annual/2026/csv/").content.decode("utf-8-sig")))
    )
    assert [r[1:3] for r in rows if r[0] == "quarters"] == [
        ["2026-Q1", "0"],
        ["2026-Q2", "1"],
        ["2026-Q3", "5"],
        ["2026-Q4", "1"],
    ]
    assert client.get("/reports/annual/2026/pdf/").content.startswith(b"%PDF")


# --- who may read, and bad input ------------------------------------------------------

READERS = {"auditor": True, "admin": True}


@pytest.mark.parametrize(
    "who", ["auditor", "admin", "staff", "manager", "director", "security", "staff2"]
)
def test_only_auditors_and_admins_read_reports(client, people, who):
    member = getattr(people, who)
    allowed = READERS.get(who, False)
    expected = 200 if allowed else 403
    assert api_for(member).get("/api/v1/reports/quarterly/2026-Q3/").status_code == expected
    assert api_for(member).get("/api/v1/reports/annual/2026/").status_code == expected
    client.force_login(member)
    assert client.get("/reports/2026-Q3/").status_code == expected
    assert client.get("/reports/2026-Q3/csv/").status_code == expected
    assert ('data-testid="nav-reports"' in client.get("/").content.decode()) is allowed


def test_reports_change_nothing_and_refuse_every_write(people):
    api = api_for(people.auditor)
    for method in ("post", "put", "patch", "delete"):
        assert getattr(api, method)("/api/v1/reports/quarterly/2026-Q3/").status_code == 405


@pytest.mark.parametrize("bad", ["2026-Q5", "abc", "2026-Q0", "2101-Q1", "1989-Q4"])
def test_a_bad_quarter_is_a_404_page_and_a_400_with_a_clear_message(client, people, bad):
    response = api_for(people.auditor).get(f"/api/v1/reports/quarterly/{bad}/")
    assert response.status_code == 400
    assert "YYYY-Qn" in response.json()["quarter"][0]
    client.force_login(people.auditor)
    page = client.get(f"/reports/{bad}/")
    assert page.status_code == 404
    assert "YYYY-Qn" in page.content.decode()
    assert client.get(f"/reports/{bad}/pdf/").status_code == 404
    assert api_for(people.auditor).get("/api/v1/reports/annual/20x6/").status_code == 400


def test_the_annual_assessment_shows_the_latest_verification_of_the_chain(people):
    """The nightly (or an auditor's) verification stands for the chain: the assessment does
    not walk millions of events again."""
    from audit.models import ChainVerification, VerificationStatus

    ChainVerification.objects.create(
        status=VerificationStatus.BROKEN,
        finished_at=timezone.now(),
        events_checked=1234,
        broken_id=42,
        reason="hash mismatch",
    )
    chain = api_for(people.auditor).get("/api/v1/reports/annual/2026/").json()["chain"]
    assert (chain["intact"], chain["broken_id"], chain["events_checked"]) == (False, 42, 1234)
    assert chain["reason"] == "hash mismatch" and chain["verified_at"]


def test_without_pango_the_pdf_is_a_clear_503_not_a_crash(client, people, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pango(name, *args, **kwargs):
        if name == "weasyprint":
            raise OSError("cannot load library 'libpangoft2-1.0-0'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pango)
    sign_in_verified(client, people.auditor)
    response = client.get("/reports/2026-Q3/pdf/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 503
    assert "libpangoft2-1.0-0 fonts-noto-cjk" in response.content.decode()
    assert client.get("/reports/2026-Q3/csv/").status_code == 200
