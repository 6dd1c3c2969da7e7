"""The quarterly report's anomalies: held frequent deletions are counted, and the
thresholds are policies read when the report runs."""

from __future__ import annotations

import pytest
from django.utils import timezone, translation

from retention.governance.decisions import do_approve_step
from retention.governance.policy_changes import do_update_policies
from retention.models import Message, RequestMethod, RequestStatus
from retention.reports.formats import quarterly_tables
from retention.reports.periods import Quarter
from retention.reports.quarterly import quarterly_report
from tests.conftest import file_request, make_chat

pytestmark = pytest.mark.django_db


def this_quarter() -> tuple[int, int]:
    today = timezone.localdate()
    return today.year, (today.month - 1) // 3 + 1


def set_policies(cast, **changes) -> None:
    do_update_policies(actor=cast.admin, changes=changes, verified_second_factor=True)


@pytest.fixture
def held(org, cast):
    """staff deleted twice on their side; the third waited and the manager approved it."""
    set_policies(cast, frequent_deletion_threshold=2)
    chat = make_chat(org.hangzhou, [cast.staff, cast.warehouse_staff], ["一", "二", "三"])
    requests = [
        file_request(cast.staff, RequestMethod.PERSONAL, messages=[m.pk])
        for m in Message.objects.filter(conversation=chat).order_by("id")
    ]
    assert requests[-1].status == RequestStatus.PENDING
    do_approve_step(requests[-1], acting_user=cast.manager, verified_second_factor=True)
    return requests[-1]


def test_held_frequent_deletions_count_as_anomalies(cast, held):
    anomalies = quarterly_report(*this_quarter())["anomalies"]
    assert anomalies["counts"]["frequent_deletions"] == 1
    (flag,) = anomalies["frequent_deletions"]
    assert (flag["request"], flag["username"], flag["deletions"]) == (held.pk, "staff", 2)
    with translation.override("en"):
        summary = quarterly_tables(quarterly_report(*this_quarter()))[0]
    assert ["Personal deletions held for frequent deletions", 1] in [
        [str(label), value] for label, value in summary.rows
    ]
    # The quarter before has none.
    earlier = Quarter(*this_quarter()).previous()
    counts = quarterly_report(earlier.year, earlier.number)["anomalies"]["counts"]
    assert counts["frequent_deletions"] == 0


def test_report_thresholds_are_policies_read_at_report_time(cast, held):
    report = quarterly_report(*this_quarter())["anomalies"]
    # Defaults: 20 deletions, 60 s, 24 h.
    assert (
        report["person_threshold"],
        report["fast_approval_seconds"],
        report["near_purge_hours"],
    ) == (20, 60, 24)
    assert report["heavy_deleters"] == []
    assert [f["request"] for f in report["fast_approvals"]] == [held.pk]

    set_policies(cast, report_person_deletions_threshold=2, report_fast_approval_seconds=0)
    report = quarterly_report(*this_quarter())["anomalies"]
    assert [(h["username"], h["deletions"]) for h in report["heavy_deleters"]] == [("staff", 3)]
    assert report["fast_approvals"] == []
    assert report["person_threshold"] == 2 and report["fast_approval_seconds"] == 0
