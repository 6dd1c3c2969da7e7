"""The browser pages of deletion requests, approvals, holds, policies and notifications,
through Django's test client: who may open or do what, and bad input never a 500."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client

from audit.events import EventType
from audit.models import AuditEvent
from retention.governance.decisions import do_approve_step
from retention.governance.policy_changes import do_update_policies
from retention.governance.protection import do_place_hold, do_set_protected
from retention.models import (
    ConversationHide,
    ConversationKind,
    DeletionRequest,
    Hold,
    Notification,
    PersonalRemoval,
    Policy,
    RequestMethod,
    RequestStatus,
    StepStatus,
)
from retention.models.roles import Role
from retention.policies import get_policy
from tests.conftest import file_request, make_chat, make_member, sign_in_verified

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "staff", "manager", "security", "auditor", "admin")


def client_for(member) -> Client:
    """Signed in as ``member`` (anonymous for None), the session verified with their
    authenticator, as every approver's is after the sign-in code step."""
    client = Client()
    if member is not None:
        sign_in_verified(client, member)
    return client


@dataclass
class PageTargets:
    """What the matrix acts on: a request of staff's (Hangzhou), one of staff2's
    (Shenzhen, outside staff's and manager's scope), a personal deletion and a hold."""

    cast: Any
    org: Any
    chats: dict
    own: DeletionRequest
    other: DeletionRequest
    personal: DeletionRequest
    hold: Hold
    extra: dict = field(default_factory=dict)


@pytest.fixture
def world(regulars, org, chats) -> PageTargets:
    cast = regulars
    # A second admin: an admin's own server-side wipe needs another admin to approve it.
    make_member("admin2", org.company, Role.ADMIN)
    return PageTargets(
        cast=cast,
        org=org,
        chats=chats,
        own=file_request(cast.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk]),
        other=file_request(cast.staff2, RequestMethod.BATCH, departments=[org.shenzhen.pk]),
        personal=file_request(
            cast.staff, RequestMethod.PERSONAL, conversations=[chats["hangzhou"].pk]
        ),
        hold=do_place_hold(
            acting_user=cast.security,
            kind="legal",
            reason="诉讼保全",
            conversations=[],
            departments=[org.warehouse],
            verified_second_factor=True,
        ),
    )


def wizard_data(w: PageTargets, who: str) -> dict:
    if who == "admin":
        return {"method": "server", "departments": [w.org.east.pk], "reason": "年底清理"}
    return {
        "method": "batch",
        "departments": [w.org.hangzhou.pk],
        "include_subdepartments": "on",
        "reason": "年底清理",
    }


def policy_data(w: PageTargets, who: str) -> dict:
    return {
        "personal_monthly_quota": 12,
        "batch_min_consecutive_signin_days": 3,
        "batch_delay_hours": 24,
        "server_delay_hours": 72,
        "recycle_bin_days": 7,
        "retention_grace_days": 7,
        "approval_expiry_days": 14,
        "export_keep_days": 30,
        "review_due_days": 14,
        "session_idle_minutes": 30,
        "frequent_deletion_threshold": 20,
        "frequent_deletion_window_hours": 24,
        "report_person_deletions_threshold": 20,
        "report_fast_approval_seconds": 60,
        "report_near_purge_hours": 24,
        "window_start": "22:00",
        "window_end": "06:00",
        "approval_chains": '{"batch": ["manager"], "server": ["manager", "security", "admin"]}',
        "server_cost_tiers": '[{"up_to_messages": null, "cny": 800}]',
        "require_second_factor": "on",
    }


# (name, http method, url, POST data) -> the roles allowed; everyone else gets ``denied``,
# which maps a role to its status (403 for a forbidden action, 404 outside their scope).
# Allowed: 200 for a GET (and the preview, a POST that only reads); a redirect that is not
# to the sign-in page for a POST that changes something.
CASES: list[tuple[str, str, Any, Any, set[str], dict[str, int]]] = [
    ("requests", "get", lambda w: "/requests/", None, {*ROLES} - {"anonymous"}, {}),
    ("wizard", "get", lambda w: "/requests/new/", None, {"staff", "manager", "admin"}, {}),
    (
        "preview",
        "post-read",
        lambda w: "/requests/preview/",
        wizard_data,
        {"staff", "manager", "admin"},
        {},
    ),
    ("file", "post", lambda w: "/requests/new/", wizard_data, {"staff", "manager", "admin"}, {}),
    ("request-own", "get", lambda w: f"/requests/{w.own.pk}/", None, {*ROLES} - {"anonymous"}, {}),
    (
        "request-other",
        "get",
        lambda w: f"/requests/{w.other.pk}/",
        None,
        {"security", "auditor", "admin"},
        {"staff": 404, "manager": 404},
    ),
    (
        "approve",
        "post",
        lambda w: f"/requests/{w.own.pk}/approve/",
        lambda w, who: {"comment": "同意", "step": 1},
        {"manager"},
        {},
    ),
    (
        "approve-other",
        "post",
        lambda w: f"/requests/{w.other.pk}/approve/",
        lambda w, who: {"step": 1},
        set(),
        {"staff": 404, "manager": 404},
    ),
    (
        "reject",
        "post",
        lambda w: f"/requests/{w.own.pk}/reject/",
        lambda w, who: {"reason": "还在售后", "step": 1},
        {"manager"},
        {},
    ),
    (
        "cancel",
        "post",
        lambda w: f"/requests/{w.own.pk}/cancel/",
        lambda w, who: {},
        {"staff", "admin"},
        {},
    ),
    (
        "restore",
        "post",
        lambda w: f"/requests/{w.personal.pk}/restore/",
        lambda w, who: {},
        {"staff"},
        {},
    ),
    ("approvals", "get", lambda w: "/approvals/", None, {"manager", "security", "admin"}, {}),
    ("holds", "get", lambda w: "/holds/", None, {"manager", "security", "auditor", "admin"}, {}),
    (
        "place-hold",
        "post",
        lambda w: "/holds/place/",
        lambda w, who: {"kind": "legal", "reason": "诉讼", "departments": [w.org.south.pk]},
        {"security"},
        {},
    ),
    (
        "release-hold",
        "post",
        lambda w: f"/holds/{w.hold.pk}/release/",
        lambda w, who: {"reason": "结案"},
        {"security"},
        {"staff": 404},
    ),
    ("policies", "get", lambda w: "/policies/", None, {*ROLES} - {"anonymous"}, {}),
    ("edit-policies", "post", lambda w: "/policies/", policy_data, {"admin"}, {}),
    ("notifications", "get", lambda w: "/notifications/", None, {*ROLES} - {"anonymous"}, {}),
    (
        "mark-read",
        "post",
        lambda w: "/notifications/read/",
        lambda w, who: {},
        {*ROLES} - {"anonymous"},
        {},
    ),
    ("nav-counts", "get", lambda w: "/nav/counts/", None, {*ROLES} - {"anonymous"}, {}),
    (
        "hide",
        "post",
        lambda w: f"/conversations/{w.chats['hangzhou'].pk}/hide/",
        lambda w, who: {},
        {"staff"},
        {},
    ),
    (
        "unhide",
        "post",
        lambda w: f"/conversations/{w.chats['hangzhou'].pk}/unhide/",
        lambda w, who: {},
        {"staff"},
        {},
    ),
    (
        "delete-mine",
        "post",
        lambda w: f"/conversations/{w.chats['hangzhou'].pk}/delete-mine/",
        lambda w, who: {"reason": "不需要了"},
        {"staff"},
        {},
    ),
    (
        "delete-message-mine",
        "post",
        lambda w: (
            f"/conversations/{w.chats['hangzhou'].pk}/messages/"
            f"{w.chats['hangzhou'].messages.order_by('pk').first().pk}/delete-mine/"
        ),
        lambda w, who: {},
        {"staff"},
        {},
    ),
    (
        "delete-mine-outside-scope",
        "post",
        lambda w: f"/conversations/{w.chats['shenzhen'].pk}/delete-mine/",
        lambda w, who: {},
        set(),
        {"staff": 404, "manager": 404},
    ),
]
MATRIX = [pytest.param(case, who, id=f"{case[0]}-{who}") for case in CASES for who in ROLES]


@pytest.mark.parametrize(("case", "who"), MATRIX)
def test_role_page_matrix(world, case, who):
    name, method, url, data, allowed, denied = case
    member = None if who == "anonymous" else getattr(world.cast, who)
    client = client_for(member)
    target = url(world)
    if method == "get":
        response = client.get(target)
    else:
        response = client.post(target, data(world, who) if data else {})
    changes_nothing = method in ("get", "post-read")
    if who == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith("/signin/")
        return
    if who in allowed:
        if changes_nothing:
            assert response.status_code == 200, response.content[:500]
        else:
            assert response.status_code == 302, response.content[:2000]
            assert not response["Location"].startswith("/signin/")
        return
    assert response.status_code == denied.get(who, 403), response.content[:500]


def test_get_on_an_action_is_not_allowed(world):
    client = client_for(world.cast.manager)
    assert client.get(f"/requests/{world.own.pk}/approve/").status_code == 405
    assert client.get("/requests/preview/").status_code == 405
    world.own.refresh_from_db()
    assert world.own.status == RequestStatus.PENDING


# --- the live preview -------------------------------------------------------------------------


def preview(client: Client, **data) -> str:
    response = client.post("/requests/preview/", data)
    assert response.status_code == 200
    return response.content.decode()


def test_the_preview_warns_about_sub_departments_left_out(world):
    client = client_for(world.cast.manager)
    html = preview(client, method="batch", departments=[world.org.east.pk])
    assert 'data-testid="subdepartments-left-out"' in html
    assert "Hangzhou store" in html  # East's sub-department, with its records, stays

    html = preview(
        client, method="batch", departments=[world.org.hangzhou.pk], include_subdepartments="on"
    )
    assert 'data-testid="subdepartments-left-out"' not in html
    # The warehouse is held: left out and said so; the store's own two messages go.
    assert 'data-testid="preview-messages">2<' in html
    assert 'data-testid="preview-left-out"' in html


def test_the_preview_counts_the_whole_subtree_with_the_box(regulars, org, chats):
    client = client_for(regulars.staff)
    html = preview(
        client, method="batch", departments=[org.hangzhou.pk], include_subdepartments="on"
    )
    assert 'data-testid="preview-messages">3<' in html
    html = preview(client, method="batch", departments=[org.hangzhou.pk])
    assert 'data-testid="preview-messages">2<' in html
    assert "Hangzhou warehouse" in html


def test_the_preview_of_a_server_wipe_shows_its_cost_and_approval_chain(regulars, org, chats):
    html = preview(client_for(regulars.manager), method="server", departments=[org.east.pk])
    assert 'data-testid="cost"' in html and "500" in html
    assert 'data-testid="planned-steps"' in html


@pytest.mark.parametrize(
    "data",
    [
        {"method": "batch", "departments": ["abc"]},
        {"method": "batch", "departments": ["999999"]},
        {"method": "nonsense", "departments": ["1"]},
        {"method": "batch", "sent_after": "2024-13-45", "departments": ["1"]},
        {"method": "batch", "sent_after": "2024-05-02", "sent_before": "2024-05-01"},
        {"method": "batch", "whole_company": "on"},
        {"method": "batch", "confirm_protected": ["x"]},
    ],
)
def test_bad_preview_input_shows_errors_not_a_500(regulars, org, chats, data):
    if data.get("sent_before"):
        data = {**data, "departments": [org.hangzhou.pk]}
    html = preview(client_for(regulars.staff), **data)
    assert 'data-testid="preview-errors"' in html


def test_an_empty_scope_shows_a_hint(regulars):
    html = preview(client_for(regulars.staff), method="batch")
    assert 'data-testid="preview-empty"' in html


def test_a_department_outside_the_viewers_scope_is_an_error(regulars, org, chats):
    html = preview(client_for(regulars.staff), method="batch", departments=[org.shenzhen.pk])
    assert 'data-testid="preview-errors"' in html
    assert "Shenzhen" not in html


def test_the_preview_asks_to_confirm_protected_conversations(regulars, org, chats):
    cast = regulars
    supplier = make_chat(org.hangzhou, [cast.staff], ["报价单"], title="供应商对接群")
    do_set_protected(supplier, acting_user=cast.admin, protected=True, verified_second_factor=True)
    client = client_for(cast.manager)
    html = preview(client, method="batch", departments=[org.hangzhou.pk])
    assert 'data-testid="protected"' in html and "供应商对接群" in html
    assert 'name="confirm_protected"' in html and f'value="{supplier.pk}" checked' not in html
    html = preview(
        client, method="batch", departments=[org.hangzhou.pk], confirm_protected=[supplier.pk]
    )
    # Still listed, now ticked, so editing the scope keeps the confirmation.
    assert f'value="{supplier.pk}" checked' in html


# --- filing ---------------------------------------------------------------------------------


def test_filing_redirects_to_the_request_page(regulars, org, chats):
    client = client_for(regulars.staff)
    response = client.post("/requests/new/", wizard_data_for(org))
    request = DeletionRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/requests/{request.pk}/"
    assert request.requester == regulars.staff and request.preview["messages"] == 3
    page = client.get(response["Location"]).content.decode()
    assert 'data-testid="timeline"' in page and 'data-testid="steps"' in page


def wizard_data_for(org, **extra) -> dict:
    return {
        "method": "batch",
        "departments": [org.hangzhou.pk],
        "include_subdepartments": "on",
        "reason": "年底清理",
        "idempotency_key": "k-1",
        **extra,
    }


def test_filing_twice_with_the_same_form_files_once(regulars, org, chats):
    client = client_for(regulars.staff)
    client.post("/requests/new/", wizard_data_for(org))
    client.post("/requests/new/", wizard_data_for(org))
    assert DeletionRequest.objects.count() == 1


def test_a_filed_form_changed_and_sent_again_is_refused(regulars, org, chats):
    client = client_for(regulars.staff)
    client.cookies["django_language"] = "en"  # the message is matched in English
    client.post("/requests/new/", wizard_data_for(org))
    response = client.post("/requests/new/", wizard_data_for(org, reason="另一个原因"))
    assert response.status_code == 409
    assert "already used for a different request" in response.content.decode()
    assert DeletionRequest.objects.count() == 1


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"reason": ""}, "reason"),
        ({"departments": []}, "scope"),
        ({"sent_after": "2024-05-02", "sent_before": "2024-05-01"}, "sent_before"),
        ({"sent_after": "2999-01-01"}, "scope"),  # nothing to delete
        ({"method": "server"}, "method"),  # staff may not wipe
    ],
)
def test_bad_filing_input_shows_errors_and_files_nothing(regulars, org, chats, extra, error):
    response = client_for(regulars.staff).post("/requests/new/", wizard_data_for(org, **extra))
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()
    assert DeletionRequest.objects.count() == 0


def test_filing_without_a_sign_in_streak_is_refused_with_the_reason(cast, org, chats):
    response = client_for(cast.staff).post("/requests/new/", wizard_data_for(org))
    assert response.status_code == 403
    assert 'data-testid="refusal"' in response.content.decode()
    assert DeletionRequest.objects.count() == 0


def test_filing_a_protected_conversation_needs_the_box_ticked(regulars, org, chats):
    cast = regulars
    supplier = make_chat(org.hangzhou, [cast.staff], ["报价单"], title="供应商对接群")
    do_set_protected(supplier, acting_user=cast.admin, protected=True, verified_second_factor=True)
    client = client_for(cast.staff)
    response = client.post("/requests/new/", wizard_data_for(org))
    assert response.status_code == 400 and "供应商对接群" in response.content.decode()
    response = client.post("/requests/new/", wizard_data_for(org, confirm_protected=[supplier.pk]))
    assert response.status_code == 302
    assert DeletionRequest.objects.get().confirmed_protected == [supplier.pk]


# --- deciding ---------------------------------------------------------------------------------


def test_the_approver_sees_buttons_and_others_do_not(world):
    url = f"/requests/{world.own.pk}/"
    assert 'data-testid="approve"' in client_for(world.cast.manager).get(url).content.decode()
    # The director manages the company, above East: they may decide it too.
    assert 'data-testid="approve"' in client_for(world.cast.director).get(url).content.decode()
    for who in ("staff", "security", "auditor", "admin", "manager2"):
        html = client_for(getattr(world.cast, who)).get(url).content.decode()
        assert 'data-testid="approve"' not in html, who
    assert 'data-testid="cancel"' in client_for(world.cast.staff).get(url).content.decode()


def errors_shown(response) -> list[str]:
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"] if m.level_tag == "error"]


def test_approving_twice_is_a_message_not_an_error(world):
    client = client_for(world.cast.manager)
    url = f"/requests/{world.own.pk}/approve/"
    assert errors_shown(client.post(url, {"step": 1}, follow=True)) == []
    assert len(errors_shown(client.post(url, {"step": 1}, follow=True))) == 1
    world.own.refresh_from_db()
    assert world.own.status == RequestStatus.APPROVED


def test_the_decision_forms_name_the_step_they_decide(world):
    html = client_for(world.cast.manager).get(f"/requests/{world.own.pk}/").content.decode()
    for form_id in ("id_approve_step", "id_reject_step"):
        assert f'<input type="hidden" name="step" value="1" id="{form_id}">' in html


def test_a_stale_decision_page_is_a_message_and_changes_nothing(world):
    # Someone who may decide steps 2 and 3 of a server-side wipe still has the page of
    # step 2 open after it was approved: neither button may decide step 3.
    cast, org = world.cast, world.org
    both = make_member("sec_admin", org.company, Role.SECURITY, Role.ADMIN)
    request = file_request(cast.manager, RequestMethod.SERVER, departments=[org.east.pk])
    do_approve_step(request, acting_user=cast.director, step_order=1, verified_second_factor=True)
    page = client_for(both).get(f"/requests/{request.pk}/").content.decode()
    assert 'value="2" id="id_approve_step"' in page
    do_approve_step(request, acting_user=cast.security, step_order=2, verified_second_factor=True)
    client = client_for(both)
    client.cookies["django_language"] = "en"  # the message is matched in English
    for action, data in (("approve", {"step": 2}), ("reject", {"step": 2, "reason": "不同意"})):
        errors = errors_shown(client.post(f"/requests/{request.pk}/{action}/", data, follow=True))
        assert len(errors) == 1 and "now waits for step 3" in errors[0], errors
    assert list(request.steps.order_by("order").values_list("status", flat=True)) == [
        StepStatus.APPROVED,
        StepStatus.APPROVED,
        StepStatus.PENDING,
    ]


def test_a_decision_that_does_not_name_its_step_changes_nothing(world):
    client = client_for(world.cast.manager)
    for action, data in (("approve", {"comment": "同意"}), ("reject", {"reason": "还在售后"})):
        response = client.post(f"/requests/{world.own.pk}/{action}/", data, follow=True)
        assert len(errors_shown(response)) == 1
    world.own.refresh_from_db()
    assert world.own.status == RequestStatus.PENDING
    assert world.own.steps.get().status == StepStatus.PENDING


def test_rejecting_without_a_reason_changes_nothing(world):
    client = client_for(world.cast.manager)
    url = f"/requests/{world.own.pk}/reject/"
    response = client.post(url, {"reason": " ", "step": 1}, follow=True)
    assert len(errors_shown(response)) == 1
    world.own.refresh_from_db()
    assert world.own.status == RequestStatus.PENDING
    response = client.post(url, {"reason": "还在售后", "step": 1})
    world.own.refresh_from_db()
    assert world.own.status == RequestStatus.REJECTED
    assert world.own.steps.get().comment == "还在售后"


def test_the_timeline_shows_filing_and_approval_with_their_details(world):
    do_approve_step(
        world.own, acting_user=world.cast.manager, comment="同意清理", verified_second_factor=True
    )
    html = client_for(world.cast.staff).get(f"/requests/{world.own.pk}/").content.decode()
    timeline = html.split('data-testid="timeline"')[1]
    assert "event-400" in timeline and "event-402" in timeline
    assert "同意清理" in timeline and "清理过期聊天记录" in timeline
    assert 'data-testid="scheduled-for"' in html


def test_a_server_wipe_shows_its_cost_on_the_request_page_and_inbox(regulars, org, chats):
    request = file_request(regulars.manager, RequestMethod.SERVER, departments=[org.east.pk])
    html = client_for(regulars.director).get(f"/requests/{request.pk}/").content.decode()
    assert 'data-testid="cost"' in html and "¥500" in html
    inbox = client_for(regulars.director).get("/approvals/").content.decode()
    assert f"#{request.pk}" in inbox and "¥500" in inbox


def test_the_inbox_and_navigation_count_what_awaits_the_viewer(world):
    manager = client_for(world.cast.manager)
    inbox = manager.get("/approvals/").content.decode()
    assert f'href="/requests/{world.own.pk}/"' in inbox
    assert f'href="/requests/{world.other.pk}/"' not in inbox
    assert 'data-testid="inbox-count">1<' in inbox
    counts = manager.get("/nav/counts/").content.decode()
    assert 'data-testid="approvals-count">1<' in counts
    assert 'id="notifications-badge"' in counts and 'hx-swap-oob="true"' in counts
    page = manager.get("/").content.decode()
    assert 'hx-get="/nav/counts/"' in page and 'id="approvals-badge"' in page
    # A member who approves nothing has no badge on the page: none is swapped in either
    # (htmx would report an out-of-band swap without a target).
    staff_counts = client_for(world.cast.staff).get("/nav/counts/").content.decode()
    assert 'id="approvals-badge"' not in staff_counts and 'id="notifications-badge"' in staff_counts


def test_cancel_and_restore_conflicts_are_messages(world):
    staff = client_for(world.cast.staff)
    for action, request in (("cancel", world.own), ("restore", world.personal)):
        url = f"/requests/{request.pk}/{action}/"
        assert errors_shown(staff.post(url, follow=True)) == []
        assert len(errors_shown(staff.post(url, follow=True))) == 1


def test_the_request_list_filters_by_status(world):
    client = client_for(world.cast.admin)
    html = client.get("/requests/?status=completed").content.decode()
    assert f'href="/requests/{world.personal.pk}/"' in html
    assert f'href="/requests/{world.own.pk}/"' not in html
    assert client.get("/requests/?status=bogus").status_code == 200


# --- a participant's side of a conversation ---------------------------------------------------


def test_participants_get_hide_and_delete_controls(world):
    url = f"/conversations/{world.chats['hangzhou'].pk}/"
    staff = client_for(world.cast.staff)
    assert 'data-testid="hide"' in staff.get(url + "mine/").content.decode()
    assert "delete-message-" not in client_for(world.cast.manager).get(url).content.decode()
    assert (
        'data-testid="my-side"'
        not in client_for(world.cast.manager).get(url + "mine/").content.decode()
    )

    staff.post(url + "hide/")
    assert ConversationHide.objects.filter(member=world.cast.staff).exists()
    assert 'data-testid="unhide"' in staff.get(url + "mine/").content.decode()
    staff.post(url + "unhide/")
    assert not ConversationHide.objects.filter(member=world.cast.staff).exists()


def test_per_message_delete_buttons_show_for_participants(regulars, chats):
    url = f"/conversations/{chats['hangzhou'].pk}/"
    html = client_for(regulars.staff).get(url).content.decode()
    assert "delete-message-" in html
    assert f'hx-get="{url}mine/"' in html


def test_deleting_a_message_on_my_side_keeps_it_for_others(regulars, chats):
    conversation = chats["hangzhou"]
    message = conversation.messages.order_by("pk").first()
    staff = client_for(regulars.staff)
    response = staff.post(f"/conversations/{conversation.pk}/messages/{message.pk}/delete-mine/")
    assert response.status_code == 302
    removal = PersonalRemoval.objects.get()
    assert removal.message == message and removal.member == regulars.staff
    assert conversation.messages.count() == 2


def test_the_personal_quota_refusal_is_a_message(regulars, chats):
    do_update_policies(
        actor=regulars.admin, changes={"personal_monthly_quota": 0}, verified_second_factor=True
    )
    conversation = chats["hangzhou"]
    response = client_for(regulars.staff).post(
        f"/conversations/{conversation.pk}/delete-mine/", follow=True
    )
    (message,) = errors_shown(response)
    assert "0" in message
    assert not PersonalRemoval.objects.exists()
    assert AuditEvent.objects.filter(event_type=EventType.REQUEST_REFUSED).exists()


def test_a_held_conversation_cannot_be_deleted_on_my_side(world):
    warehouse = world.chats["warehouse"]
    response = client_for(world.cast.warehouse_staff).post(
        f"/conversations/{warehouse.pk}/delete-mine/", follow=True
    )
    assert len(errors_shown(response)) == 1
    assert not PersonalRemoval.objects.filter(conversation=warehouse).exists()


# --- holds, policies, notifications -------------------------------------------------------


def test_placing_a_hold_validates_conversation_ids(regulars, org, chats):
    client = client_for(regulars.security)
    response = client.post(
        "/holds/place/", {"kind": "legal", "reason": "诉讼", "conversations": "12x, 999999"}
    )
    assert response.status_code == 400 and 'role="alert"' in response.content.decode()
    response = client.post("/holds/place/", {"kind": "legal", "reason": "诉讼"})
    assert response.status_code == 400  # names nothing to hold
    assert not Hold.objects.exists()
    ids = f"{chats['hangzhou'].pk}，{chats['shenzhen'].pk}"
    response = client.post(
        "/holds/place/", {"kind": "legal", "reason": "诉讼", "conversations": ids}
    )
    assert response.status_code == 302
    assert set(Hold.objects.get().conversations.all()) == {chats["hangzhou"], chats["shenzhen"]}


def test_security_sees_the_hold_form_and_others_only_the_list(world):
    assert (
        'data-testid="hold-form"' in client_for(world.cast.security).get("/holds/").content.decode()
    )
    for who in ("manager", "auditor", "admin"):
        html = client_for(getattr(world.cast, who)).get("/holds/").content.decode()
        assert 'data-testid="hold-form"' not in html and "诉讼保全" in html


def test_releasing_a_hold_twice_is_a_message(world):
    client = client_for(world.cast.security)
    url = f"/holds/{world.hold.pk}/release/"
    assert errors_shown(client.post(url, {"reason": "结案"}, follow=True)) == []
    assert len(errors_shown(client.post(url, follow=True))) == 1


def test_admins_change_policies_and_errors_show_per_policy(regulars):
    client = client_for(regulars.admin)
    assert 'data-testid="policy-form"' in client.get("/policies/").content.decode()
    assert (
        'data-testid="policy-form"'
        not in client_for(regulars.staff).get("/policies/").content.decode()
    )
    bad = {
        **policy_data(None, "admin"),
        "personal_monthly_quota": -1,
        "window_start": "25:00",
        "approval_chains": '{"batch": ["manager"], "server": ["manager"]}',
        "server_cost_tiers": "[not json",
    }
    response = client.post("/policies/", bad)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-testid="error-server_cost_tiers"' in html
    assert not Policy.objects.exists()
    bad["server_cost_tiers"] = '[{"up_to_messages": null, "cny": 800}]'
    html = client.post("/policies/", bad).content.decode()
    for key in ("personal_monthly_quota", "window_start", "approval_chains"):
        assert f'data-testid="error-{key}"' in html, key
    assert not Policy.objects.exists()

    response = client.post("/policies/", policy_data(None, "admin"))
    assert response.status_code == 302
    assert get_policy("personal_monthly_quota") == 12
    assert get_policy("server_cost_tiers") == [{"up_to_messages": None, "cny": 800}]
    assert AuditEvent.objects.filter(event_type=EventType.POLICY_CHANGED).count() == 2
    response = client.post("/policies/", {**policy_data(None, "admin"), "window_end": "05:30"})
    assert response.status_code == 302
    assert get_policy("execution_window") == {"start": "22:00", "end": "05:30"}
    # Both times empty: any time. One of them empty: an error, nothing changes.
    half = {**policy_data(None, "admin"), "window_start": "", "window_end": "05:30"}
    assert client.post("/policies/", half).status_code == 400
    assert get_policy("execution_window") == {"start": "22:00", "end": "05:30"}
    response = client.post(
        "/policies/", {**policy_data(None, "admin"), "window_start": "", "window_end": ""}
    )
    assert response.status_code == 302
    assert get_policy("execution_window") is None
    assert 'value="22:00"' not in client.get("/policies/").content.decode()


def test_notifications_list_their_text_and_can_be_marked_read(world):
    do_approve_step(world.own, acting_user=world.cast.manager, verified_second_factor=True)
    client = client_for(world.cast.staff)
    assert Notification.objects.filter(recipient=world.cast.staff, read_at__isnull=True).exists()
    counts = client.get("/nav/counts/").content.decode()
    assert 'data-testid="unread-count">' in counts
    html = client.get("/notifications/").content.decode()
    assert f"#{world.own.pk}" in html and f'href="/requests/{world.own.pk}/"' in html
    client.post("/notifications/read/")
    assert not Notification.objects.filter(
        recipient=world.cast.staff, read_at__isnull=True
    ).exists()


def test_pages_render_in_english_too(world):
    client = client_for(world.cast.manager)
    client.cookies["django_language"] = "en"
    html = client.get(f"/requests/{world.own.pk}/").content.decode()
    assert "Timeline" in html and "Approve" in html
    html = client.get("/requests/new/").content.decode()
    assert "Include sub-departments" in html


def test_a_group_conversation_can_be_picked_in_the_wizard(regulars, org):
    group = make_chat(org.hangzhou, [regulars.staff], ["群聊"], kind=ConversationKind.GROUP)
    client = client_for(regulars.staff)
    assert f'value="{group.pk}"' in client.get("/requests/new/").content.decode()
    html = preview(client, method="batch", conversations=[group.pk])
    assert 'data-testid="preview-messages">1<' in html
