"""Compliance reviews: opened by every permanent deletion, decided by auditors only,
flagged ones told to the admins, overdue ones on the auditors' dashboard."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.events import EventType
from audit.models import AuditEvent, ComplianceReview, ReviewKind, ReviewStatus
from retention.exports import service as exports
from retention.exports.build import build_export
from retention.governance.policy_changes import do_update_policies
from retention.models import Notification, RequestMethod, Tombstone, TombstoneState
from retention.reports.periods import Quarter
from retention.reports.quarterly import quarterly_report
from tests.governance.test_api_requests import api_for
from tests.wipes.test_execution import approved, run, store

pytestmark = pytest.mark.django_db

__all__ = ["store"]  # fixtures shared with the run tests


@pytest.fixture
def review(people, org, store) -> ComplianceReview:
    """A server-side wipe of the Hangzhou store, with an export made before it."""
    request = approved(
        people.manager,
        [people.director, people.security, people.admin],
        RequestMethod.SERVER,
        departments=[org.hangzhou.pk],
    )
    export = exports.do_request_export(request, fmt="jsonl", acting_user=people.manager)
    build_export(export.pk)
    run(request)
    return ComplianceReview.objects.get(request=request)


def test_a_wipe_opens_a_review_that_says_what_went_and_on_whose_say_so(people, org, review):
    summary = review.summary
    assert review.kind == ReviewKind.SERVER_WIPE and review.status == ReviewStatus.OPEN
    assert summary["deleted_messages"] == 14 and summary["deleted_conversations"] == 3
    assert {d["name"]: d["messages"] for d in summary["departments"]} == {
        org.hangzhou.name: 12,
        org.warehouse.name: 2,
    }
    assert [(s["role"], s["approver"]) for s in summary["approvals"]] == [
        ("manager", "director"),
        ("security", "security"),
        ("admin", "admin"),
    ]
    assert [(e["format"], e["by"]) for e in summary["exports"]] == [("jsonl", "manager")]
    assert len(summary["exports"][0]["sha256"]) == 64


def test_an_auditor_signs_a_review_off_once(people, review):
    api = api_for(people.auditor)
    response = api.post(
        f"/api/v1/reviews/{review.pk}/sign-off/", {"finding": "符合流程"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "signed_off"
    assert response.json()["reviewer"] == "auditor"
    event = AuditEvent.objects.get(event_type=EventType.REVIEW_SIGNED_OFF)
    assert event.actor == people.auditor and event.details["review"] == review.pk
    assert event.details["finding"] == "符合流程"

    again = api.post(f"/api/v1/reviews/{review.pk}/flag/", {"finding": "晚了"}, format="json")
    assert again.status_code == 409 and "already decided" in again.json()["detail"]
    review.refresh_from_db()
    assert review.status == ReviewStatus.SIGNED_OFF and review.finding == "符合流程"


def test_a_flag_needs_a_finding_and_tells_the_admins(people, review):
    api = api_for(people.auditor)
    empty = api.post(f"/api/v1/reviews/{review.pk}/flag/", {"finding": "  "}, format="json")
    assert empty.status_code == 400 and "finding" in empty.json()
    assert ComplianceReview.objects.get(pk=review.pk).status == ReviewStatus.OPEN
    too_long = api.post(
        f"/api/v1/reviews/{review.pk}/flag/", {"finding": "长" * 4001}, format="json"
    )
    assert too_long.status_code == 400

    flagged = api.post(
        f"/api/v1/reviews/{review.pk}/flag/", {"finding": "审批人与申请人同组"}, format="json"
    )
    assert flagged.status_code == 200 and flagged.json()["status"] == "flagged"
    told = Notification.objects.filter(verb="review_flagged")
    assert {n.recipient.username for n in told} == {"admin", "admin_b"}  # every admin
    assert AuditEvent.objects.get(event_type=EventType.REVIEW_FLAGGED).details["finding"] == (
        "审批人与申请人同组"
    )


@pytest.mark.parametrize("who", ["staff", "manager", "director", "security"])
def test_only_auditors_and_admins_read_reviews(client, people, review, who):
    member = getattr(people, who)
    api = api_for(member)
    assert api.get("/api/v1/reviews/").status_code == 403
    assert api.get(f"/api/v1/reviews/{review.pk}/").status_code == 403
    assert api.get("/api/v1/reviews/999999/").status_code == 403  # no hint of what exists
    assert api.post(f"/api/v1/reviews/{review.pk}/sign-off/", {}, format="json").status_code == 403
    client.force_login(member)
    assert client.get(reverse("reviews")).status_code == 403
    assert client.post(reverse("review-decide", args=[review.pk, "sign-off"])).status_code == 403
    assert ComplianceReview.objects.get(pk=review.pk).status == ReviewStatus.OPEN


def test_admins_read_reviews_but_only_auditors_decide_them(client, people, review):
    api = api_for(people.admin)
    assert [r["id"] for r in api.get("/api/v1/reviews/").json()["results"]] == [review.pk]
    refused = api.post(f"/api/v1/reviews/{review.pk}/sign-off/", {}, format="json")
    assert refused.status_code == 403
    client.force_login(people.admin)
    page = client.get(reverse("review", args=[review.pk])).content.decode()
    assert 'data-testid="review-summary"' in page and 'data-testid="sign-off"' not in page
    assert ComplianceReview.objects.get(pk=review.pk).status == ReviewStatus.OPEN
    assert not AuditEvent.objects.filter(event_type__in=[800, 801]).exists()


def test_an_auditor_decides_on_the_page_and_bad_input_is_a_form_error(client, people, review):
    client.force_login(people.auditor)
    url = reverse("review", args=[review.pk])
    assert 'data-testid="sign-off"' in client.get(url).content.decode()
    empty = client.post(reverse("review-decide", args=[review.pk, "flag"]), {"finding": ""})
    assert empty.status_code == 400 and 'class="form-error"' in empty.content.decode()
    assert ComplianceReview.objects.get(pk=review.pk).status == ReviewStatus.OPEN
    done = client.post(reverse("review-decide", args=[review.pk, "sign-off"]), {"finding": ""})
    assert done.status_code == 302
    page = client.get(url).content.decode()
    assert 'data-testid="review-status"' in page and 'data-testid="sign-off"' not in page
    assert client.post(url + "approve/").status_code == 404  # only sign-off and flag


def test_overdue_reviews_show_on_the_auditors_dashboard(client, people, review):
    do_update_policies(
        actor=people.admin, changes={"review_due_days": 14}, verified_second_factor=True
    )
    client.force_login(people.auditor)
    assert 'data-testid="dashboard-overdue-reviews"' not in client.get("/").content.decode()
    ComplianceReview.objects.filter(pk=review.pk).update(
        opened_at=timezone.now() - timedelta(days=15)
    )
    dashboard = client.get("/").content.decode()
    assert 'data-testid="dashboard-overdue-reviews"' in dashboard
    assert reverse("review", args=[review.pk]) in dashboard
    listed = api_for(people.auditor).get("/api/v1/reviews/", {"overdue": "true"}).json()
    assert [(r["id"], r["overdue"]) for r in listed["results"]] == [(review.pk, True)]
    overdue_page = client.get(reverse("reviews"), {"show": "overdue"}).content.decode()
    assert f'data-testid="review-{review.pk}"' in overdue_page
    # Decided, it is no longer overdue anywhere.
    api_for(people.auditor).post(f"/api/v1/reviews/{review.pk}/sign-off/", {}, format="json")
    assert 'data-testid="dashboard-overdue-reviews"' not in client.get("/").content.decode()


def test_bad_review_filters_are_a_400(people, review):
    response = api_for(people.auditor).get("/api/v1/reviews/", {"status": "maybe"})
    assert response.status_code == 400 and "status" in response.json()


# --- the quarterly recycle-bin review ---------------------------------------------------


@pytest.fixture
def bin_quarter(people, org, store):
    """Last quarter's recycle bin, with known answers: request A (the Hangzhou store, 3
    conversations, 14 messages) entered on day 1 with a 7-day window; its group chat was
    restored on day 3, its warehouse chat purged early on day 5, its customer chat purged
    late on day 10. Request B (Shenzhen, 1 conversation, 3 messages) entered on day 20
    and was never purged. A server-side wipe in the quarter is no part of the bin."""
    quarter = Quarter.of(timezone.now()).previous()
    day = lambda n: quarter.start + timedelta(days=n)  # noqa: E731
    a = approved(people.staff, [people.manager], RequestMethod.BATCH, departments=[org.hangzhou.pk])
    b = approved(
        people.staff2, [people.manager2], RequestMethod.BATCH, departments=[org.shenzhen.pk]
    )
    wipe = approved(
        people.manager2,
        [people.director, people.security, people.admin],
        RequestMethod.SERVER,
        departments=[org.south.pk],
    )
    run(a)
    run(b)
    Tombstone.objects.filter(request=a).update(created_at=day(1), purge_after=day(8))
    Tombstone.objects.filter(request=a, conversation=store["group"]).update(
        state=TombstoneState.RESTORED, restored_at=day(3)
    )
    Tombstone.objects.filter(request=a, conversation=store["warehouse"]).update(
        state=TombstoneState.PURGED, purged_at=day(5)
    )
    Tombstone.objects.filter(request=a, conversation=store["customer"]).update(
        state=TombstoneState.PURGED, purged_at=day(10)
    )
    Tombstone.objects.filter(request=b).update(created_at=day(20), purge_after=day(27))
    Tombstone.objects.create(
        request=wipe,
        conversation=store["elsewhere"],
        after_id=0,
        up_to_id=10**9,
        messages=3,
        state=TombstoneState.PURGED,
        created_at=day(2),
        purge_after=day(2),
        purged_at=day(2),
    )
    return quarter, a, b


def row(requests, conversations, messages, ids=None):
    expected = {"requests": requests, "conversations": conversations, "messages": messages}
    return expected if ids is None else {**expected, "request_ids": ids}


def test_a_quarters_recycle_bin_review_has_the_known_answers(people, bin_quarter):
    quarter, a, b = bin_quarter
    response = api_for(people.auditor).post(
        "/api/v1/reviews/recycle-bin/", {"quarter": str(quarter)}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["kind"] == "recycle_bin" and body["period"] == str(quarter)
    figures = body["summary"]
    assert figures["entered"] == row(2, 4, 17)
    assert figures["restored"] == row(1, 1, 4)
    assert figures["purged"] == row(1, 2, 10)
    assert figures["purged_early"] == row(1, 1, 2, [a.pk])
    assert figures["purged_late"] == row(1, 1, 8, [a.pk])
    assert figures["kept_past_window"] == row(1, 1, 3, [b.pk])
    assert figures["in_bin_at_end"] == row(1, 1, 3)
    # Opening it again returns the same review.
    again = api_for(people.auditor).post(
        "/api/v1/reviews/recycle-bin/", {"quarter": str(quarter)}, format="json"
    )
    assert again.json()["id"] == body["id"]


def test_the_sign_off_keeps_the_figures_of_that_moment(client, people, store, bin_quarter):
    quarter, a, b = bin_quarter
    client.force_login(people.auditor)
    opened = client.post(reverse("review-recycle-bin"), {"quarter": str(quarter)})
    review = ComplianceReview.objects.get(kind=ReviewKind.RECYCLE_BIN)
    assert opened["Location"] == reverse("review", args=[review.pk])
    page = client.get(opened["Location"]).content.decode()
    assert 'data-testid="bin-purged_early"' in page and 'data-testid="sign-off"' in page
    client.post(reverse("review-decide", args=[review.pk, "sign-off"]), {"finding": "已核对"})

    Tombstone.objects.filter(request=b).update(
        state=TombstoneState.RESTORED, restored_at=quarter.start + timedelta(days=30)
    )
    review.refresh_from_db()
    assert review.status == ReviewStatus.SIGNED_OFF
    assert review.summary["kept_past_window"]["request_ids"] == [b.pk]  # as signed
    event = AuditEvent.objects.get(event_type=EventType.REVIEW_SIGNED_OFF)
    assert event.details["period"] == str(quarter) and event.details["kind"] == "recycle_bin"

    # The quarter's audit report shows the sign-off and the figures signed.
    shown = quarterly_report(quarter.year, quarter.number)["recycle_bin_review"]
    assert (shown["status"], shown["reviewer"], shown["finding"]) == (
        "signed_off",
        "auditor",
        "已核对",
    )
    assert shown["figures"]["purged_early"]["request_ids"] == [a.pk]
    page = client.get(reverse("report-quarterly", args=[str(quarter)])).content.decode()
    assert "已核对" in page


def test_the_report_says_when_nobody_has_reviewed_the_bin(people):
    quarter = Quarter.of(timezone.now())
    assert quarterly_report(quarter.year, quarter.number)["recycle_bin_review"] is None


@pytest.mark.parametrize("quarter", ["2026-Q5", "26-Q1", "", "2026Q1"])
def test_a_bad_quarter_is_a_400_that_says_so(people, quarter):
    response = api_for(people.auditor).post(
        "/api/v1/reviews/recycle-bin/", {"quarter": quarter}, format="json"
    )
    assert response.status_code == 400 and "quarter" in response.json()
    assert not ComplianceReview.objects.exists()


def test_a_future_quarter_cannot_be_reviewed_and_only_auditors_open_one(people):
    future = Quarter.of(timezone.now()).previous(-1)
    response = api_for(people.auditor).post(
        "/api/v1/reviews/recycle-bin/", {"quarter": str(future)}, format="json"
    )
    assert response.status_code == 400
    current = str(Quarter.of(timezone.now()))
    for member in (people.admin, people.manager):
        refused = api_for(member).post(
            "/api/v1/reviews/recycle-bin/", {"quarter": current}, format="json"
        )
        assert refused.status_code == 403
    assert not ComplianceReview.objects.exists()


def test_quarters_start_and_end_at_local_midnight():
    q4 = Quarter.parse("2026-Q4")
    assert (q4.start.month, q4.start.day, q4.end.year, q4.end.month) == (10, 1, 2027, 1)
    assert q4.previous() == Quarter(2026, 3)
    assert Quarter(2027, 1).previous(2) == q4.previous()
    assert Quarter.of(q4.end - timedelta(seconds=1)) == q4


def test_an_auditor_who_approved_the_deletion_cannot_review_it(people, org, store):
    """Auditors take no part in approvals; but a security officer who approved a wipe and
    became an auditor later must leave its review to another auditor."""
    from django.contrib.auth.models import Group

    from retention.models.roles import Role

    both = people.security
    request = approved(
        people.manager,
        [people.director, both, people.admin],
        RequestMethod.SERVER,
        departments=[org.hangzhou.pk],
    )
    run(request)
    both.groups.add(Group.objects.get(name=str(Role.AUDITOR)))
    review = ComplianceReview.objects.get(request=request)
    refused = api_for(both).post(f"/api/v1/reviews/{review.pk}/sign-off/", {}, format="json")
    assert refused.status_code == 403 and "another auditor" in refused.json()["detail"]
    assert ComplianceReview.objects.get(pk=review.pk).status == ReviewStatus.OPEN
    assert not AuditEvent.objects.filter(event_type=EventType.REVIEW_SIGNED_OFF).exists()
    signed = api_for(people.auditor).post(
        f"/api/v1/reviews/{review.pk}/sign-off/", {}, format="json"
    )
    assert signed.status_code == 200
    event = AuditEvent.objects.get(event_type=EventType.REVIEW_SIGNED_OFF)
    assert len(event.details["summary_sha256"]) == 64


def test_a_quarter_is_signed_off_only_once_it_has_ended(people):
    current = str(Quarter.of(timezone.now()))
    api = api_for(people.auditor)
    opened = api.post("/api/v1/reviews/recycle-bin/", {"quarter": current}, format="json")
    assert opened.status_code == 200
    early = api.post(f"/api/v1/reviews/{opened.json()['id']}/sign-off/", {}, format="json")
    assert early.status_code == 409 and "has not ended" in early.json()["detail"]
    assert ComplianceReview.objects.get().status == ReviewStatus.OPEN
