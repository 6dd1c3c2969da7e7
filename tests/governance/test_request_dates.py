"""Dates of a deletion request's scope: only days from 1990-01-01 to 2100-12-31 are filed
(API and wizard alike), and a request whose stored dates lie outside that range (it never
passed the inputs) takes no page down and is neither approved nor run."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pytest
from django.db import connection
from django.utils import timezone, translation

from audit.events import EventType
from audit.models import AuditEvent
from retention.dates import DAY_PATTERN, EARLIEST_DAY, LATEST_DAY, day_in_range
from retention.governance.decisions import do_approve_step
from retention.governance.scope import start_of_day
from retention.models import (
    DeletionRequest,
    Execution,
    ExecutionStatus,
    Message,
    RequestMethod,
    RequestStatus,
)
from retention.wipes import runner, schedule
from tests.conftest import file_request
from tests.governance.test_api_requests import api_for, batch
from tests.governance.test_request_pages import client_for, wizard_data_for

pytestmark = pytest.mark.django_db

RANGE = "Must be a date between 1990-01-01 and 2100-12-31."


def test_the_schema_pattern_agrees_with_the_range():
    pattern = re.compile(DAY_PATTERN)
    for day in (EARLIEST_DAY, LATEST_DAY, date(2024, 2, 29)):
        assert pattern.search(day.isoformat()) and day_in_range(day)
    for day in (EARLIEST_DAY - timedelta(days=1), LATEST_DAY + timedelta(days=1), date(1, 1, 1)):
        assert not pattern.search(day.isoformat()) and not day_in_range(day)
    assert not pattern.search("9999-12-31")


# --- filing -----------------------------------------------------------------------------


def test_the_reported_year_one_scope_is_refused_naming_sent_after(regulars, org, chats):
    """The issue's reproduction: it was filed (201) and then broke every request page."""
    client = api_for(regulars.staff)
    body = batch(org.hangzhou, sent_after="0001-01-01")

    filed = client.post("/api/v1/requests/", body, format="json")

    assert filed.status_code == 400, filed.data
    assert filed.data["scope"]["sent_after"] == [RANGE]
    assert not DeletionRequest.objects.exists()
    assert client.get("/api/v1/requests/").status_code == 200


@pytest.mark.parametrize(
    ("field", "day"),
    [
        ("sent_after", "9999-12-31"),
        ("sent_before", "0001-01-02"),
        ("sent_before", "2101-01-01"),
        ("sent_after", "1989-12-31"),
    ],
)
def test_a_scope_date_outside_the_range_is_refused_by_filing_and_preview(
    regulars, org, chats, field, day
):
    client = api_for(regulars.staff)
    for url in ("/api/v1/requests/", "/api/v1/requests/preview/"):
        response = client.post(url, batch(org.hangzhou, **{field: day}), format="json")
        assert response.status_code == 400, response.data
        assert response.data["scope"][field] == [RANGE]
    assert not DeletionRequest.objects.exists()


def test_the_first_and_last_day_of_the_range_are_filed(regulars, org, chats):
    scope = {"sent_after": "1990-01-01", "sent_before": "2100-12-31"}
    filed = api_for(regulars.staff).post(
        "/api/v1/requests/", batch(org.hangzhou, **scope), format="json"
    )
    assert filed.status_code == 201, filed.data
    assert {k: filed.data["scope"][k] for k in scope} == scope
    stored = DeletionRequest.objects.get()
    assert (stored.sent_after, stored.sent_before) == (
        start_of_day(date(1990, 1, 1)),
        start_of_day(date(2100, 12, 31)),
    )


@pytest.mark.parametrize("field", ["sent_after", "sent_before"])
def test_the_wizard_refuses_a_year_one_date_next_to_the_field(regulars, org, chats, field):
    client = client_for(regulars.staff)
    client.cookies["django_language"] = "en"
    for preview in (True, False):
        data = wizard_data_for(org, **{field: "0001-01-01"})
        if preview:
            data["preview"] = "1"
        response = client.post("/requests/new/", data)
        assert response.status_code == 400
        assert RANGE in response.content.decode()
    assert not DeletionRequest.objects.exists()


def test_the_wizard_date_pickers_offer_only_days_of_the_range(regulars, org, chats):
    page = client_for(regulars.staff).get("/requests/new/").content.decode()
    for name in ("sent_after", "sent_before"):
        (tag,) = re.findall(rf'<input[^>]*name="{name}"[^>]*>', page)
        assert 'type="date"' in tag
        assert 'min="1990-01-01"' in tag and 'max="2100-12-31"' in tag


# --- a stored row outside the range -----------------------------------------------------

# What PostgreSQL stores and Python cannot read (or reads only near its edge).
STORED = [
    ("sent_after", "0001-01-01 00:00:00+08", "0001-01-01"),  # the BC timestamp
    ("sent_before", "0001-01-01 00:00:00+08", "0001-01-01"),
    ("sent_after", "-infinity", None),
    ("sent_before", "infinity", None),
    ("sent_before", "9999-12-31 23:00:00+00", "9999-12-31"),
    ("sent_after", "20000-01-01 00:00:00+00", None),
]


def store_bounds(request: DeletionRequest, field: str, moment: str, day: str | None) -> None:
    """Write a bound straight into the row, past every input, as a hostile or old
    writer would; the scope as filed says the same day when there is one."""
    scope = {**request.scope, field: day} if day else request.scope
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE retention_deletionrequest SET {field} = %s::timestamptz, scope = %s::jsonb "  # noqa: S608
            "WHERE id = %s",
            [moment, json.dumps(scope), request.pk],
        )


@pytest.fixture(params=STORED, ids=[f"{f}={m}" for f, m, _ in STORED])
def bad_request(request, regulars, org, chats):
    field, moment, day = request.param
    filed = file_request(regulars.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    store_bounds(filed, field, moment, day)
    return filed


def test_a_stored_bad_date_takes_no_list_or_page_down(bad_request, regulars):
    cast, pk = regulars, bad_request.pk
    for member in (cast.staff, cast.manager, cast.admin):
        api = api_for(member)
        listed = api.get("/api/v1/requests/")
        assert listed.status_code == 200
        assert pk in [r["id"] for r in listed.data["results"]]
        assert api.get(f"/api/v1/requests/{pk}/").status_code == 200
        pages = client_for(member)
        pages.cookies["django_language"] = "en"
        assert pages.get("/requests/").status_code == 200
        detail = pages.get(f"/requests/{pk}/")
        assert detail.status_code == 200
        assert 'data-testid="unusable-range"' in detail.content.decode()
        assert "cannot be approved or run" in detail.content.decode()
    inbox = client_for(cast.manager).get("/approvals/")
    assert inbox.status_code == 200
    assert f"/requests/{pk}/" in inbox.content.decode()


def test_a_stored_bad_date_is_not_approved_but_can_be_rejected(bad_request, regulars):
    url = f"/api/v1/requests/{bad_request.pk}/"
    manager = api_for(regulars.manager)

    approved = manager.post(url + "approve/", {"comment": "ok"}, format="json")

    assert approved.status_code == 409, approved.data
    assert "outside 1990-01-01 to 2100-12-31" in approved.data["detail"]
    assert DeletionRequest.objects.get(pk=bad_request.pk).status == RequestStatus.PENDING
    assert not AuditEvent.objects.filter(event_type=EventType.REQUEST_STEP_APPROVED).exists()
    pages = client_for(regulars.manager)
    pages.cookies["django_language"] = "en"
    page = pages.post(
        f"/requests/{bad_request.pk}/approve/", {"step": 1, "comment": ""}, follow=True
    )
    assert page.status_code == 200
    assert "cannot be approved or run" in page.content.decode()
    assert DeletionRequest.objects.get(pk=bad_request.pk).status == RequestStatus.PENDING
    rejected = manager.post(url + "reject/", {"reason": "日期不对"}, format="json")
    assert rejected.status_code == 200, rejected.data
    assert rejected.data["status"] == "rejected"


def test_a_stored_bad_date_can_be_cancelled(bad_request, regulars):
    url = f"/api/v1/requests/{bad_request.pk}/cancel/"
    cancelled = api_for(regulars.staff).post(url, {}, format="json")
    assert cancelled.status_code == 200, cancelled.data
    assert cancelled.data["status"] == "cancelled"


def test_a_valid_stored_range_reads_back_exactly(regulars, org, chats):
    after, before = timezone.localdate() - timedelta(days=3), timezone.localdate() + timedelta(1)
    filed = file_request(
        regulars.staff,
        RequestMethod.BATCH,
        departments=[org.hangzhou.pk],
        sent_after=after,
        sent_before=before,
    )
    stored = DeletionRequest.objects.get(pk=filed.pk)
    assert (stored.sent_after, stored.sent_before) == (start_of_day(after), start_of_day(before))
    values = DeletionRequest.objects.filter(pk=filed.pk).values_list("sent_after", flat=True)
    assert list(values) == [start_of_day(after)]
    assert DeletionRequest.objects.filter(sent_after=start_of_day(after)).exists()
    detail = api_for(regulars.staff).get(f"/api/v1/requests/{filed.pk}/").data
    assert detail["scope"]["sent_after"] == after.isoformat()
    assert 'data-testid="unusable-range"' not in (
        client_for(regulars.staff).get(f"/requests/{filed.pk}/").content.decode()
    )


# --- the run ----------------------------------------------------------------------------


def approve_then_store(cast, org, field, moment, day) -> DeletionRequest:
    """Approved while its range was good, then its range was rewritten in the database."""
    request = file_request(cast.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    request = do_approve_step(request, acting_user=cast.manager, verified_second_factor=True)
    assert request.status == RequestStatus.APPROVED
    store_bounds(request, field, moment, day)
    return DeletionRequest.objects.get(pk=request.pk)


@pytest.mark.parametrize(("field", "moment", "day"), STORED, ids=[f"{f}={m}" for f, m, _ in STORED])
def test_a_stored_bad_date_is_refused_at_run_time_and_deletes_nothing(
    regulars, org, chats, field, moment, day
):
    request = approve_then_store(regulars, org, field, moment, day)
    before = set(Message.objects.values_list("pk", flat=True))

    with translation.override("en"):  # the reason is matched in English
        started = schedule.start_request(request.pk, now=request.scheduled_for + timedelta(1))

    assert started is None
    assert not Execution.objects.exists()
    assert DeletionRequest.objects.get(pk=request.pk).status == RequestStatus.FAILED
    assert set(Message.objects.values_list("pk", flat=True)) == before
    failed = AuditEvent.objects.get(event_type=EventType.REQUEST_FAILED, target_id=str(request.pk))
    assert "outside 1990-01-01 to 2100-12-31" in failed.details["reason"]


def test_a_run_started_before_its_range_went_bad_stops_without_deleting(regulars, org, chats):
    """A sent_before of year 1 read back as year 1 would still delete nothing, but a run
    never guesses: whatever bound is unusable, the run fails before its first batch."""
    request = file_request(regulars.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    request = do_approve_step(request, acting_user=regulars.manager, verified_second_factor=True)
    started = schedule.start_request(request.pk, now=request.scheduled_for + timedelta(hours=1))
    assert started is not None
    store_bounds(request, "sent_before", "0001-01-01 00:00:00+08", "0001-01-01")
    before = set(Message.objects.values_list("pk", flat=True))

    with translation.override("en"):
        done = runner.run_execution(started.pk)

    assert done.status == ExecutionStatus.FAILED
    assert "outside 1990-01-01 to 2100-12-31" in done.last_error
    assert done.attempts == 1  # not retried: a retry would meet the same range
    assert set(Message.objects.values_list("pk", flat=True)) == before
    assert DeletionRequest.objects.get(pk=request.pk).status == RequestStatus.FAILED


def test_now_is_inside_the_range():
    # The range must hold every message a store can send today.
    assert day_in_range(timezone.localdate())


def test_a_purge_of_a_request_whose_range_went_bad_deletes_nothing(regulars, org, chats):
    """The bin's purge filters rows by the request's range too: a range that went bad after
    the move is never read clamped into a wider purge; the purge fails, rows stay."""
    request = file_request(regulars.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    request = do_approve_step(request, acting_user=regulars.manager, verified_second_factor=True)
    moved = runner.run_execution(
        schedule.start_request(request.pk, now=request.scheduled_for + timedelta(hours=1)).pk
    )
    assert moved.status == ExecutionStatus.COMPLETED
    store_bounds(request, "sent_before", "-infinity", "0001-01-01")
    rows = set(Message.all_rows.values_list("pk", flat=True))

    with translation.override("en"):
        purges = runner.start_due_purges(now=timezone.now() + timedelta(days=30))
        done = [runner.run_execution(pk) for pk in purges]

    assert done and all(run.status == ExecutionStatus.FAILED for run in done)
    assert "outside 1990-01-01 to 2100-12-31" in done[0].last_error
    assert set(Message.all_rows.values_list("pk", flat=True)) == rows
