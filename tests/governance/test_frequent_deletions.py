"""Frequent personal deletions: past the policy's threshold within its window, a member's
next personal deletion waits for their manager instead of taking effect."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from audit.events import EventType
from audit.models import AuditEvent
from retention.access.predicates import steps_awaiting
from retention.errors import Conflict
from retention.governance.approvals import FREQUENT_DELETIONS
from retention.governance.decisions import do_approve_step, do_reject_request
from retention.governance.policy_changes import do_update_policies
from retention.governance.protection import do_place_hold
from retention.models import Message, PersonalRemoval, Policy, RequestMethod, RequestStatus
from retention.models.roles import Role
from retention.policies import get_policy
from retention.records.selectors import messages_of
from tests.conftest import file_request, make_chat, sign_in_verified
from tests.governance.test_api_requests import api_for

pytestmark = pytest.mark.django_db


def set_policies(cast, **changes) -> None:
    do_update_policies(actor=cast.admin, changes=changes, verified_second_factor=True)


@pytest.fixture
def shared(org, cast):
    """A chat of staff's and the warehouse's, four messages each sees."""
    return make_chat(org.hangzhou, [cast.staff, cast.warehouse_staff], ["一", "二", "三", "四"])


def delete_mine(member, message):
    return file_request(member, RequestMethod.PERSONAL, messages=[message.pk])


def test_past_the_threshold_a_personal_deletion_waits_for_the_manager(cast, shared):
    set_policies(cast, frequent_deletion_threshold=2, frequent_deletion_window_hours=24)
    m1, m2, m3, m4 = Message.objects.filter(conversation=shared).order_by("id")
    # The first two take effect at once, as always.
    for message in (m1, m2):
        assert delete_mine(cast.staff, message).status == RequestStatus.COMPLETED

    held = delete_mine(cast.staff, m3)
    assert held.status == RequestStatus.PENDING
    assert not PersonalRemoval.objects.filter(request=held).exists()
    assert list(messages_of(shared, cast.staff)) == [m3, m4]  # nothing removed yet
    (step,) = held.steps.all()
    assert (step.role, step.department, step.because) == (
        Role.MANAGER,
        cast.manager.department,
        FREQUENT_DELETIONS,
    )
    event = AuditEvent.objects.get(event_type=EventType.PERSONAL_HELD_FOR_REVIEW)
    assert event.target_id == str(held.pk) and event.actor_id == cast.staff.pk
    assert event.details["deletions"] == 2 and event.details["threshold"] == 2
    # The member's manager has it in the inbox; a manager elsewhere does not.
    assert step in steps_awaiting(cast.manager)
    assert step not in steps_awaiting(cast.manager2)
    with pytest.raises(PermissionDenied):
        do_approve_step(held, acting_user=cast.staff, verified_second_factor=True)

    do_approve_step(held, acting_user=cast.manager, verified_second_factor=True)
    held.refresh_from_db()
    assert held.status == RequestStatus.COMPLETED
    removal = PersonalRemoval.objects.get(request=held)
    assert (removal.member, removal.message) == (cast.staff, m3)
    # Gone on the member's side only: exactly the message asked for, the others keep it.
    assert list(messages_of(shared, cast.staff)) == [m4]
    assert list(messages_of(shared, cast.warehouse_staff)) == [m1, m2, m3, m4]
    assert Message.objects.filter(conversation=shared).count() == 4
    deleted = AuditEvent.objects.get(event_type=EventType.PERSONAL_DELETED, target_id=str(held.pk))
    assert deleted.actor_id == cast.staff.pk
    assert deleted.details["approved_by"] == "manager"


def test_a_rejected_held_deletion_removes_nothing_and_uses_no_quota(cast, shared):
    set_policies(cast, frequent_deletion_threshold=1, personal_monthly_quota=3)
    m1, m2, m3, m4 = Message.objects.filter(conversation=shared).order_by("id")
    delete_mine(cast.staff, m1)
    held = delete_mine(cast.staff, m2)
    assert held.status == RequestStatus.PENDING
    waiting = delete_mine(cast.staff, m3)  # still over the threshold: held as well
    assert waiting.status == RequestStatus.PENDING
    # A held deletion counts against the month's quota while it waits ...
    with pytest.raises(PermissionDenied):
        delete_mine(cast.staff, m4)

    do_reject_request(held, acting_user=cast.manager, reason="太频繁", verified_second_factor=True)
    held.refresh_from_db()
    assert held.status == RequestStatus.REJECTED
    assert not PersonalRemoval.objects.filter(request=held).exists()
    assert m2 in messages_of(shared, cast.staff)
    # ... and a rejected one gives its quota back.
    assert delete_mine(cast.staff, m4).status == RequestStatus.PENDING


def test_threshold_zero_switches_the_check_off(cast, shared):
    set_policies(cast, frequent_deletion_threshold=0)
    for message in Message.objects.filter(conversation=shared):
        assert delete_mine(cast.staff, message).status == RequestStatus.COMPLETED
    assert not AuditEvent.objects.filter(event_type=EventType.PERSONAL_HELD_FOR_REVIEW).exists()


def test_deletions_outside_the_window_do_not_count(cast, shared):
    set_policies(cast, frequent_deletion_threshold=1)
    m1, m2, *_ = Message.objects.filter(conversation=shared).order_by("id")
    first = delete_mine(cast.staff, m1)
    first.decided_at = first.decided_at.replace(year=first.decided_at.year - 1)
    first.save(update_fields=["decided_at"])
    assert delete_mine(cast.staff, m2).status == RequestStatus.COMPLETED


def test_the_member_is_told_on_the_page_and_in_the_api(client, cast, shared):
    set_policies(cast, frequent_deletion_threshold=1)
    m1, m2, m3, _m4 = Message.objects.filter(conversation=shared).order_by("id")
    delete_mine(cast.staff, m1)
    sign_in_verified(client, cast.staff)
    response = client.post(
        f"/conversations/{shared.pk}/messages/{m2.pk}/delete-mine/",
        {"reason": "x"},
        follow=True,
        HTTP_ACCEPT_LANGUAGE="en",
    )
    html = response.content.decode()  # the member's language: Chinese
    assert "本次删除须等待主管审批" in html
    assert "Message deleted on your side" not in html and "仅在您这一侧删除" in html
    assert m2 in messages_of(shared, cast.staff)

    answer = api_for(cast.staff).post(
        "/api/v1/requests/",
        {"method": "personal", "reason": "x", "scope": {"messages": [m3.pk]}},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["status"] == "pending"
    assert "awaits your manager's approval" in body["notice"]
    assert body["steps"][0]["because"] == FREQUENT_DELETIONS


def test_the_security_dashboard_lists_members_over_the_threshold(client, cast, shared):
    set_policies(cast, frequent_deletion_threshold=2)
    m1, m2, m3, _m4 = Message.objects.filter(conversation=shared).order_by("id")
    delete_mine(cast.staff, m1)
    delete_mine(cast.warehouse_staff, m1)  # one deletion: under the threshold
    html = sign_in_verified(client, cast.security).get("/").content.decode()
    assert 'data-testid="dashboard-frequent-deleters"' in html
    assert "Staff" not in html.split('data-testid="dashboard-frequent-deleters"')[1]

    delete_mine(cast.staff, m2)
    delete_mine(cast.staff, m3)  # held
    section = client.get("/").content.decode().split('data-testid="dashboard-frequent-deleters"')[1]
    section = section.split("</section>")[0]
    assert "Staff" in section and "Warehouse" not in section
    assert '<td class="num">2</td><td class="num">1</td>' in section
    manager = sign_in_verified(client.__class__(), cast.manager)
    assert 'data-testid="dashboard-frequent-deleters"' not in manager.get("/").content.decode()


BAD_VALUES = [
    ("frequent_deletion_threshold", -1),
    ("frequent_deletion_threshold", "5"),
    ("frequent_deletion_window_hours", 0),
    ("report_person_deletions_threshold", -3),
    ("report_fast_approval_seconds", True),
    ("report_near_purge_hours", 24 * 366),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_bad_policy_values_are_refused_and_change_nothing(cast, key, value):
    response = api_for(cast.admin).patch("/api/v1/policies/", {key: value}, format="json")
    assert response.status_code == 400
    assert key in response.json()
    assert not Policy.objects.filter(key=key).exists()


def test_the_policies_page_edits_the_new_policies(client, cast):
    from tests.governance.test_request_pages import policy_data

    client = sign_in_verified(client, cast.admin)
    bad = {**policy_data(None, "admin"), "frequent_deletion_window_hours": 0}
    response = client.post("/policies/", bad)
    assert response.status_code == 400
    assert 'data-testid="error-frequent_deletion_window_hours"' in response.content.decode()
    assert not Policy.objects.exists()
    good = {
        **policy_data(None, "admin"),
        "frequent_deletion_threshold": 5,
        "report_fast_approval_seconds": 30,
    }
    assert client.post("/policies/", good).status_code == 302
    assert get_policy("frequent_deletion_threshold") == 5
    assert get_policy("report_fast_approval_seconds") == 30


def test_a_held_deletion_is_not_approved_once_a_hold_covers_its_conversation(cast, org, shared):
    set_policies(cast, frequent_deletion_threshold=1)
    m1, m2, _m3, _m4 = Message.objects.filter(conversation=shared).order_by("id")
    delete_mine(cast.staff, m1)
    held = delete_mine(cast.staff, m2)
    do_place_hold(
        acting_user=cast.security,
        kind="legal",
        reason="诉讼保全",
        conversations=[shared],
        departments=[],
        verified_second_factor=True,
    )
    with pytest.raises(Conflict):
        do_approve_step(held, acting_user=cast.manager, verified_second_factor=True)
    held.refresh_from_db()
    assert held.status == RequestStatus.PENDING
    assert not PersonalRemoval.objects.filter(request=held).exists()


def test_a_held_deletion_of_a_conversation_gone_meanwhile_is_a_conflict(cast, shared):
    set_policies(cast, frequent_deletion_threshold=1)
    other = make_chat(cast.staff.department, [cast.staff], ["别的"])
    delete_mine(cast.staff, Message.objects.filter(conversation=other).first())
    held = file_request(cast.staff, RequestMethod.PERSONAL, conversations=[shared.pk])
    assert held.status == RequestStatus.PENDING
    Message.all_rows.filter(conversation=shared).delete()
    shared.delete()
    with pytest.raises(Conflict):
        do_approve_step(held, acting_user=cast.manager, verified_second_factor=True)
    assert not PersonalRemoval.objects.filter(request=held).exists()
