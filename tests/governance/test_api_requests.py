"""Deletion governance through the API: filing, previewing and deciding requests, holds,
hides, notifications, policies and quota — and who may call which endpoint."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from rest_framework.test import APIClient

from audit.events import EventType
from audit.models import AuditEvent
from retention.governance.approvals import NO_MANAGER_ABOVE
from retention.models import (
    ConversationHide,
    DeletionRequest,
    Hold,
    Notification,
    Policy,
    QuotaGrant,
    RequestMethod,
    RequestStatus,
)
from retention.models.roles import Role
from retention.policies import DEFAULTS
from tests.conftest import api_client_for, file_request, make_member
from tests.world import warehouse_hold

pytestmark = pytest.mark.django_db

REASON = "清理过期聊天记录"


def api_for(member=None, *, second_factor: bool = True) -> APIClient:
    """A client of ``member`` (anonymous for None) that asks for English answers, with a
    token of theirs issued after a second-factor check (``second_factor=False``: without)."""
    if member is None:
        return APIClient(HTTP_ACCEPT_LANGUAGE="en")
    return api_client_for(member, second_factor=second_factor, HTTP_ACCEPT_LANGUAGE="en")


def batch(department, **scope) -> dict:
    return {"method": "batch", "reason": REASON, "scope": {"departments": [department.pk], **scope}}


def actions_of(response) -> list[int]:
    return [event["action_code"] for event in response.data["timeline"]]


# --- requests ----------------------------------------------------------------------------


def test_staff_file_a_batch_and_their_manager_approves_it(regulars, org, chats):
    cast = regulars
    filed = api_for(cast.staff).post("/api/v1/requests/", batch(org.hangzhou), format="json")
    assert filed.status_code == 201, filed.data
    body = filed.data
    assert (body["method"], body["status"], body["requester"]) == ("batch", "pending", "staff")
    assert body["scope"] == {"departments": [org.hangzhou.pk], "include_subdepartments": True}
    assert body["preview"]["messages"] == 3  # the store's chat (2) and the warehouse's (1)
    (step,) = body["steps"]
    assert (step["role"], step["status"], step["approver"]) == ("manager", "pending", None)
    assert body["can_decide"] is False  # nobody decides their own request
    assert actions_of(filed) == [EventType.REQUEST_FILED]

    url = f"/api/v1/requests/{body['id']}/"
    assert api_for(cast.manager).get(url).data["can_decide"] is True
    approved = api_for(cast.manager).post(url + "approve/", {"comment": "同意"}, format="json")
    assert approved.status_code == 200, approved.data
    assert approved.data["status"] == "approved"
    assert approved.data["scheduled_for"] is not None
    assert approved.data["decided_at"] is not None
    assert approved.data["can_decide"] is False
    (step,) = approved.data["steps"]
    assert (step["status"], step["approver"], step["comment"]) == ("approved", "manager", "同意")
    assert actions_of(approved) == [
        EventType.REQUEST_FILED,
        EventType.REQUEST_STEP_APPROVED,
        EventType.REQUEST_APPROVED,
    ]
    first = api_for(cast.staff).get(url).data["timeline"][0]
    assert (first["actor"], first["action"]) == ("staff", "deletion request filed")


def test_a_stores_only_manager_who_is_an_auditor_passes_the_manager_step_up(regulars, org, chats):
    # Auditors never approve deletions, so a manager who is also an auditor does not make
    # their store the manager step's level: the step goes to the next manager up, and
    # where every manager above is an auditor too, to an admin. Filing is never refused
    # as unapprovable on their account.
    cast = regulars
    auditing_manager = make_member("sz_audit_manager", org.shenzhen, Role.MANAGER, Role.AUDITOR)
    filed = api_for(cast.staff2).post("/api/v1/requests/", batch(org.shenzhen), format="json")
    assert filed.status_code == 201, filed.data
    request = DeletionRequest.objects.get(pk=filed.data["id"])
    (step,) = request.steps.all()
    assert (step.role, step.department) == ("manager", org.south)
    assert Notification.objects.filter(recipient=cast.manager2, request=request).exists()
    assert not Notification.objects.filter(recipient=auditing_manager, request=request).exists()
    url = f"/api/v1/requests/{request.pk}/"
    assert api_for(auditing_manager).post(url + "approve/", {}, format="json").status_code == 403
    approved = api_for(cast.manager2).post(url + "approve/", {}, format="json")
    assert approved.data["status"] == "approved"

    auditors = Group.objects.get(name=Role.AUDITOR)
    for manager in (cast.manager2, cast.director):
        manager.groups.add(auditors)
    filed = api_for(cast.staff2).post("/api/v1/requests/", batch(org.shenzhen), format="json")
    assert filed.status_code == 201, filed.data
    (step,) = DeletionRequest.objects.get(pk=filed.data["id"]).steps.all()
    assert (step.role, step.department, step.because) == ("admin", None, NO_MANAGER_ABOVE)


def test_a_repeated_idempotency_key_files_once(regulars, org, chats):
    client = api_for(regulars.staff)
    headers = {"HTTP_IDEMPOTENCY_KEY": "form-7f3a"}
    first = client.post("/api/v1/requests/", batch(org.hangzhou), format="json", **headers)
    again = client.post("/api/v1/requests/", batch(org.hangzhou), format="json", **headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.data["id"] == again.data["id"]
    assert DeletionRequest.objects.count() == 1
    assert AuditEvent.objects.filter(event_type=EventType.REQUEST_FILED).count() == 1


def test_a_reused_idempotency_key_with_a_different_body_conflicts(regulars, org, chats):
    client = api_for(regulars.staff)
    headers = {"HTTP_IDEMPOTENCY_KEY": "form-9c1e"}
    first = client.post("/api/v1/requests/", batch(org.hangzhou), format="json", **headers)
    assert first.status_code == 201, first.data
    other_scope = batch(org.hangzhou, include_subdepartments=False)
    other_reason = {**batch(org.hangzhou), "reason": "另一个原因"}
    for body in (other_scope, other_reason):
        response = client.post("/api/v1/requests/", body, format="json", **headers)
        assert response.status_code == 409, response.data
        assert "already used for a different request" in response.data["detail"]
    same = client.post("/api/v1/requests/", batch(org.hangzhou), format="json", **headers)
    assert (same.status_code, same.data["id"]) == (200, first.data["id"])
    assert DeletionRequest.objects.count() == 1
    assert AuditEvent.objects.filter(event_type=EventType.REQUEST_FILED).count() == 1


def test_an_overlong_idempotency_key_is_refused(regulars, org, chats):
    response = api_for(regulars.staff).post(
        "/api/v1/requests/", batch(org.hangzhou), format="json", HTTP_IDEMPOTENCY_KEY="k" * 101
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.data
    assert not DeletionRequest.objects.exists()


def test_the_preview_is_what_filing_stores(regulars, org, chats):
    client = api_for(regulars.manager)
    body = batch(org.hangzhou, include_subdepartments=False)
    preview = client.post("/api/v1/requests/preview/", body, format="json")
    assert preview.status_code == 200, preview.data
    assert not DeletionRequest.objects.exists()
    filed = client.post("/api/v1/requests/", body, format="json")
    stored = DeletionRequest.objects.get(pk=filed.data["id"]).preview

    def without_time(p: dict) -> dict:
        return {k: v for k, v in p.items() if k != "computed_at"}

    assert without_time(preview.data) == without_time(stored) == without_time(filed.data["preview"])
    assert preview.data["messages"] == 2
    assert preview.data["excluded"]["subdepartments"][0]["department"] == org.warehouse.pk


def test_the_preview_checks_authority_like_filing(regulars, org, chats):
    refused = api_for(regulars.auditor).post(
        "/api/v1/requests/preview/", batch(org.hangzhou), format="json"
    )
    assert refused.status_code == 403
    assert refused.data["detail"]
    # A department outside what staff may see is unknown to them, like a missing one.
    unknown = api_for(regulars.staff).post(
        "/api/v1/requests/preview/", batch(org.east), format="json"
    )
    missing = api_for(regulars.staff).post(
        "/api/v1/requests/preview/",
        {**batch(org.east), "scope": {"departments": [999_999]}},
        format="json",
    )
    assert unknown.status_code == missing.status_code == 400
    assert unknown.data == missing.data


def test_deciding_a_rejected_request_conflicts(regulars, org, chats):
    request = file_request(regulars.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    url = f"/api/v1/requests/{request.pk}/"
    manager = api_for(regulars.manager)
    assert manager.post(url + "reject/", {}, format="json").status_code == 400  # no reason
    rejected = manager.post(url + "reject/", {"reason": "还在处理售后"}, format="json")
    assert rejected.status_code == 200
    assert rejected.data["status"] == "rejected"
    again = api_for(regulars.director).post(url + "approve/", format="json")
    assert again.status_code == 409
    assert "rejected" in again.data["detail"]
    assert api_for(regulars.staff).post(url + "cancel/").status_code == 409


def test_a_decision_for_a_step_already_decided_conflicts_and_changes_nothing(regulars, org, chats):
    # An admin who is also a security officer approved step 2 (security); a stale page
    # still shows step 2 and its approve button must not approve step 3 (admin).
    from retention.models.roles import Role
    from tests.conftest import make_member

    both = make_member("sec_admin", org.company, Role.SECURITY, Role.ADMIN)
    request = file_request(regulars.manager, RequestMethod.SERVER, departments=[org.east.pk])
    url = f"/api/v1/requests/{request.pk}/"
    director, security = api_for(regulars.director), api_for(regulars.security)
    assert director.post(url + "approve/", {"step": 1}, format="json").status_code == 200
    assert security.post(url + "approve/", {"step": 2}, format="json").status_code == 200
    both_client = api_for(both)  # its token's issue is audited: before the count
    events = AuditEvent.objects.count()
    for action, body in (("approve/", {"step": 2}), ("reject/", {"step": 2, "reason": "不同意"})):
        stale = both_client.post(url + action, body, format="json")
        assert stale.status_code == 409, stale.data
        assert "step 3" in stale.data["detail"]
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    assert list(request.steps.order_by("order").values_list("status", flat=True)) == [
        "approved",
        "approved",
        "pending",
    ]
    assert AuditEvent.objects.count() == events
    # Naming the step that waits now works (leaving ``step`` out is tested above).
    assert api_for(both).post(url + "approve/", {"step": 3}, format="json").status_code == 200
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED


def test_a_decisions_step_is_a_positive_whole_number(regulars, org, chats):
    request = file_request(regulars.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    url = f"/api/v1/requests/{request.pk}/approve/"
    for step in (0, "first"):
        response = api_for(regulars.manager).post(url, {"step": step}, format="json")
        assert response.status_code == 400 and "step" in response.data
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING


BAD_BODIES = {
    "unknown key": (
        lambda o, c: {**batch(o.hangzhou), "colour": "red"},
        ("colour",),
    ),
    "unknown scope key": (
        lambda o, c: {"method": "batch", "reason": REASON, "scope": {"department": [o.east.pk]}},
        ("scope", "department"),
    ),
    "wrong types": (
        lambda o, c: {"method": "batch", "reason": REASON, "scope": {"departments": "east"}},
        ("scope", "departments"),
    ),
    "unknown method": (lambda o, c: {**batch(o.hangzhou), "method": "shred"}, ("method",)),
    "inverted dates": (
        lambda o, c: batch(o.hangzhou, sent_after="2024-03-02", sent_before="2024-03-01"),
        ("sent_before",),
    ),
    "no scope": (lambda o, c: {"method": "batch", "reason": REASON, "scope": {}}, ("scope",)),
    "scope left out": (lambda o, c: {"method": "batch", "reason": REASON}, ("scope",)),
    "personal naming two things": (
        lambda o, c: {
            "method": "personal",
            "reason": REASON,
            "scope": {"conversations": [c["hangzhou"].pk, c["warehouse"].pk]},
        },
        ("scope",),
    ),
    "unknown department": (
        lambda o, c: {"method": "batch", "reason": REASON, "scope": {"departments": [99999]}},
        ("departments",),
    ),
    "blank reason": (lambda o, c: {**batch(o.hangzhou), "reason": " "}, ("reason",)),
}


@pytest.mark.parametrize("case", BAD_BODIES)
def test_bad_bodies_get_field_messages(regulars, org, chats, case):
    make_body, path = BAD_BODIES[case]
    # The preview files nothing, so it asks for no reason; the rest it checks alike.
    urls = ["/api/v1/requests/"] + ([] if path == ("reason",) else ["/api/v1/requests/preview/"])
    for url in urls:
        response = api_for(regulars.staff).post(url, make_body(org, chats), format="json")
        assert response.status_code == 400, response.data
        errors = response.data
        for key in path:
            errors = errors[key]
        assert errors and all(isinstance(m, str) and m for m in errors)
    assert not DeletionRequest.objects.exists()


def test_requests_outside_the_callers_view_are_a_plain_404(regulars, org, chats):
    request = file_request(regulars.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    url = f"/api/v1/requests/{request.pk}/"
    missing = api_for(regulars.staff2).get("/api/v1/requests/999999/")
    assert missing.status_code == 404
    assert missing.data["detail"].code == "not_found"
    assert "DeletionRequest" not in missing.content.decode()
    for outsider in (regulars.staff2, regulars.manager2):
        client = api_for(outsider)
        for response in (client.get(url), client.post(url + "approve/", format="json")):
            assert (response.status_code, response.data) == (404, missing.data)
        listed = client.get("/api/v1/requests/").data["results"]
        assert request.pk not in [r["id"] for r in listed]


def test_the_list_filters_by_status_and_method(regulars, org, chats):
    pending = file_request(regulars.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    personal = file_request(
        regulars.staff, RequestMethod.PERSONAL, conversations=[chats["hangzhou"].pk]
    )
    client = api_for(regulars.staff)

    def ids(query: str) -> list[int]:
        response = client.get(f"/api/v1/requests/{query}")
        assert response.status_code == 200
        return [r["id"] for r in response.data["results"]]

    assert ids("") == [personal.pk, pending.pk]
    assert ids("?status=pending") == [pending.pk]
    assert ids("?method=personal&status=completed") == [personal.pk]
    assert client.get("/api/v1/requests/?status=nonsense").status_code == 400


def test_a_personal_deletion_is_restored_by_its_requester_once(regulars, chats):
    body = {
        "method": "personal",
        "reason": "私人对话",
        "scope": {"conversations": [chats["hangzhou"].pk]},
    }
    filed = api_for(regulars.staff).post("/api/v1/requests/", body, format="json")
    assert filed.status_code == 201, filed.data
    assert filed.data["status"] == "completed" and filed.data["steps"] == []
    url = f"/api/v1/requests/{filed.data['id']}/restore/"
    assert api_for(regulars.manager).post(url).status_code == 403
    restored = api_for(regulars.staff).post(url)
    assert restored.status_code == 200
    assert actions_of(restored)[-1] == EventType.PERSONAL_RESTORED
    assert api_for(regulars.staff).post(url).status_code == 409


# --- holds -------------------------------------------------------------------------------


def hold_body(*conversations, departments=()) -> dict:
    return {
        "conversations": [c.pk for c in conversations],
        "departments": [d.pk for d in departments],
        "kind": "legal",
        "reason": "诉讼保全",
    }


def test_security_places_and_releases_a_hold(cast, org, chats):
    security = api_for(cast.security)
    placed = security.post(
        "/api/v1/holds/", hold_body(chats["warehouse"], departments=[org.south]), format="json"
    )
    assert placed.status_code == 201, placed.data
    assert placed.data["conversations"] == [chats["warehouse"].pk]
    assert placed.data["departments"] == [org.south.pk]
    assert (placed.data["placed_by"], placed.data["is_active"]) == ("security", True)
    assert AuditEvent.objects.filter(event_type=EventType.HOLD_PLACED).count() == 1
    listed = api_for(cast.manager).get("/api/v1/holds/").data["results"]
    assert [h["id"] for h in listed] == [placed.data["id"]]  # it touches the manager's region
    assert api_for(cast.staff).get("/api/v1/holds/").data["results"] == []

    url = f"/api/v1/holds/{placed.data['id']}/release/"
    assert api_for(cast.manager).post(url, format="json").status_code == 403
    released = security.post(url, {"reason": "结案"}, format="json")
    assert released.status_code == 200
    assert (released.data["is_active"], released.data["released_by"]) == (False, "security")
    assert released.data["release_reason"] == "结案"
    again = security.post(url, format="json")
    assert again.status_code == 409 and again.data["detail"]


def test_only_security_officers_place_holds(cast, chats):
    response = api_for(cast.manager).post(
        "/api/v1/holds/", hold_body(chats["hangzhou"]), format="json"
    )
    assert response.status_code == 403
    assert not Hold.objects.exists()


def test_unknown_ids_in_a_hold_are_refused_by_field(cast, chats):
    security = api_for(cast.security)
    body = {**hold_body(chats["hangzhou"]), "departments": [99999]}
    response = security.post("/api/v1/holds/", body, format="json")
    assert response.status_code == 400
    assert list(response.data) == ["departments"]
    body = {**hold_body(), "conversations": [chats["hangzhou"].pk, 99999]}
    assert list(security.post("/api/v1/holds/", body, format="json").data) == ["conversations"]
    bad_kind = security.post(
        "/api/v1/holds/", {**hold_body(chats["hangzhou"]), "kind": "forever"}, format="json"
    )
    assert list(bad_kind.data) == ["kind"]
    assert not Hold.objects.exists()


# --- hide --------------------------------------------------------------------------------


def test_members_hide_and_unhide_their_conversations(cast, chats):
    conversation = chats["hangzhou"]
    url = f"/api/v1/conversations/{conversation.pk}/"
    staff = api_for(cast.staff)
    hidden = staff.post(url + "hide/")
    assert hidden.status_code == 200
    assert hidden.data == {"conversation": conversation.pk, "hidden": True, "changed": True}
    assert ConversationHide.objects.filter(member=cast.staff, conversation=conversation).exists()
    assert staff.post(url + "hide/").data["changed"] is False
    shown = staff.post(url + "unhide/")
    assert shown.data == {"conversation": conversation.pk, "hidden": False, "changed": True}
    assert not ConversationHide.objects.exists()
    # (The token of api_for was issued before: its event comes first.)
    assert [
        e.event_type
        for e in AuditEvent.objects.exclude(event_type=EventType.TOKEN_ISSUED).order_by("id")
    ] == [
        EventType.CONVERSATION_HIDDEN,
        EventType.CONVERSATION_UNHIDDEN,
    ]
    # Managers see the store's chats but do not take part in them; others do not see them.
    assert api_for(cast.manager).post(url + "hide/").status_code == 403
    outside = api_for(cast.staff2).post(url + "hide/")
    missing = api_for(cast.staff2).post("/api/v1/conversations/999999/hide/")
    assert (outside.status_code, outside.data) == (404, missing.data)
    assert conversation.title not in outside.content.decode()


# --- notifications -----------------------------------------------------------------------


def test_the_approver_is_notified_of_a_filing_and_marks_it_read(regulars, org, chats):
    filed = api_for(regulars.staff).post("/api/v1/requests/", batch(org.hangzhou), format="json")
    manager = api_for(regulars.manager)
    (notice,) = manager.get("/api/v1/notifications/").data["results"]
    assert notice["request"] == filed.data["id"]
    assert notice["verb"] == "step_awaits" and notice["read"] is False
    assert notice["text"] == f"Deletion request #{filed.data['id']} awaits your decision."
    assert api_for(regulars.staff2).get("/api/v1/notifications/").data["results"] == []

    assert manager.post("/api/v1/notifications/read/", {"ids": [999999]}, format="json").data == {
        "marked": 0
    }
    assert manager.post("/api/v1/notifications/read/", format="json").data == {"marked": 1}
    assert manager.get("/api/v1/notifications/").data["results"][0]["read"] is True


# --- policies and quota ------------------------------------------------------------------


def test_every_member_reads_every_policy(cast):
    response = api_for(cast.staff).get("/api/v1/policies/")
    assert response.status_code == 200
    assert response.data == DEFAULTS


def test_admins_change_policies_and_the_change_is_audited(cast):
    admin = api_for(cast.admin)
    changed = admin.patch("/api/v1/policies/", {"recycle_bin_days": 14}, format="json")
    assert changed.status_code == 200
    assert changed.data["recycle_bin_days"] == 14
    assert changed.data["batch_delay_hours"] == DEFAULTS["batch_delay_hours"]
    event = AuditEvent.objects.get(event_type=EventType.POLICY_CHANGED)
    assert event.details == {"key": "recycle_bin_days", "old": 7, "new": 14}
    assert event.actor == cast.admin

    refused = api_for(cast.manager).patch("/api/v1/policies/", {"recycle_bin_days": 1}, "json")
    assert refused.status_code == 403
    bad = admin.patch(
        "/api/v1/policies/",
        {"recycle_bin_days": -1, "execution_window": {"start": "25:00", "end": "06:00"}},
        format="json",
    )
    assert bad.status_code == 400
    assert set(bad.data) == {"recycle_bin_days", "execution_window"}
    unknown = admin.patch("/api/v1/policies/", {"coffee_breaks": 3}, format="json")
    assert unknown.status_code == 400 and "coffee_breaks" in unknown.data
    assert Policy.objects.get().value == {"v": 14}


def test_admins_grant_extra_personal_deletions(cast):
    body = {"username": "staff", "extra": 5, "reason": "年底清理"}
    granted = api_for(cast.admin).post("/api/v1/quota-grants/", body, format="json")
    assert granted.status_code == 201, granted.data
    assert (granted.data["username"], granted.data["extra"]) == ("staff", 5)
    assert granted.data["granted_by"] == "admin"
    assert QuotaGrant.objects.get().member == cast.staff
    assert AuditEvent.objects.filter(event_type=EventType.QUOTA_GRANTED).count() == 1

    unknown = api_for(cast.admin).post(
        "/api/v1/quota-grants/", {**body, "username": "nobody"}, format="json"
    )
    assert unknown.status_code == 400 and list(unknown.data) == ["username"]
    too_many = api_for(cast.admin).post(
        "/api/v1/quota-grants/", {**body, "extra": 5000}, format="json"
    )
    assert too_many.status_code == 400 and list(too_many.data) == ["extra"]
    assert QuotaGrant.objects.count() == 1


def test_non_admins_cannot_probe_usernames_through_quota_grants(cast):
    client = api_for(cast.manager)
    real = client.post(
        "/api/v1/quota-grants/", {"username": "staff", "extra": 1, "reason": "x"}, format="json"
    )
    unknown = client.post(
        "/api/v1/quota-grants/", {"username": "nobody", "extra": 1, "reason": "x"}, format="json"
    )
    assert real.status_code == unknown.status_code == 403
    assert real.data == unknown.data


# --- who may call what -------------------------------------------------------------------

ROLES = ("anonymous", "staff", "manager", "security", "auditor", "admin")
MEMBERS = ROLES[1:]

# endpoint → (HTTP method, path, body), given the world below.
ENDPOINTS = {
    "list requests": ("get", lambda w: "/api/v1/requests/", None),
    "file request": ("post", lambda w: "/api/v1/requests/", lambda w: batch(w.org.hangzhou)),
    "preview request": (
        "post",
        lambda w: "/api/v1/requests/preview/",
        lambda w: batch(w.org.hangzhou),
    ),
    "request detail": ("get", lambda w: f"/api/v1/requests/{w.pending.pk}/", None),
    "approve": ("post", lambda w: f"/api/v1/requests/{w.pending.pk}/approve/", lambda w: {}),
    "reject": (
        "post",
        lambda w: f"/api/v1/requests/{w.pending.pk}/reject/",
        lambda w: {"reason": "范围太大"},
    ),
    "cancel": ("post", lambda w: f"/api/v1/requests/{w.pending.pk}/cancel/", None),
    "restore": ("post", lambda w: f"/api/v1/requests/{w.personal.pk}/restore/", None),
    "list holds": ("get", lambda w: "/api/v1/holds/", None),
    "place hold": ("post", lambda w: "/api/v1/holds/", lambda w: hold_body(w.chats["hangzhou"])),
    "release hold": ("post", lambda w: f"/api/v1/holds/{w.hold.pk}/release/", None),
    "hide": ("post", lambda w: f"/api/v1/conversations/{w.chats['hangzhou'].pk}/hide/", None),
    "unhide": ("post", lambda w: f"/api/v1/conversations/{w.chats['hangzhou'].pk}/unhide/", None),
    "notifications": ("get", lambda w: "/api/v1/notifications/", None),
    "read notifications": ("post", lambda w: "/api/v1/notifications/read/", None),
    "policies": ("get", lambda w: "/api/v1/policies/", None),
    "change policies": ("patch", lambda w: "/api/v1/policies/", lambda w: {"recycle_bin_days": 9}),
    "grant quota": (
        "post",
        lambda w: "/api/v1/quota-grants/",
        lambda w: {"username": "staff", "extra": 2, "reason": "年底清理"},
    ),
}

# The only cells that succeed, with their status. The pending request is a batch the
# staff member filed for the Hangzhou store (a manager step, East region); the personal
# deletion is the staff member's; the hold is on the warehouse chat, in East.
ALLOWED = {
    "list requests": dict.fromkeys(MEMBERS, 200),
    "file request": {"staff": 201, "manager": 201},  # batch filers: staff and managers
    "preview request": {"staff": 200, "manager": 200},
    "request detail": dict.fromkeys(MEMBERS, 200),  # requester, manager, oversight roles
    "approve": {"manager": 200},
    "reject": {"manager": 200},
    "cancel": {"staff": 200, "admin": 200},  # the requester, or an admin
    "restore": {"staff": 200},
    "list holds": dict.fromkeys(MEMBERS, 200),  # staff get an empty list
    "place hold": {"security": 201},
    "release hold": {"security": 200},
    "hide": {"staff": 200},  # participants only
    # Unhiding removes only the caller's own hide: harmless (a no-op) for anyone who sees it.
    "unhide": dict.fromkeys(MEMBERS, 200),
    "notifications": dict.fromkeys(MEMBERS, 200),
    "read notifications": dict.fromkeys(MEMBERS, 200),
    "policies": dict.fromkeys(MEMBERS, 200),
    "change policies": {"admin": 200},
    "grant quota": {"admin": 201},
}
# Refused cells where the object is outside the caller's view: indistinguishable from absent.
NOT_FOUND = {("staff", "release hold")}


def expected_status(role: str, endpoint: str) -> int:
    if role in ALLOWED[endpoint]:
        return ALLOWED[endpoint][role]
    if role == "anonymous":
        return 401
    return 404 if (role, endpoint) in NOT_FOUND else 403


@pytest.fixture
def world(regulars, org, chats):
    cast = regulars
    pending = file_request(cast.staff, RequestMethod.BATCH, departments=[org.hangzhou.pk])
    personal = file_request(
        cast.staff, RequestMethod.PERSONAL, conversations=[chats["hangzhou"].pk]
    )
    assert (pending.status, personal.status) == (RequestStatus.PENDING, RequestStatus.COMPLETED)
    hold = warehouse_hold(cast, chats)
    return SimpleNamespace(
        cast=cast, org=org, chats=chats, pending=pending, personal=personal, hold=hold
    )


def call(client: APIClient, endpoint: str, world: SimpleNamespace):
    method, path, body = ENDPOINTS[endpoint]
    if method == "get":
        return client.get(path(world))
    return getattr(client, method)(path(world), body(world) if body else None, format="json")


@pytest.mark.parametrize("role", ROLES)
def test_who_may_call_which_endpoint(world, role):
    assert set(ALLOWED) == set(ENDPOINTS)
    client = api_for(None if role == "anonymous" else getattr(world.cast, role))
    actual = {}
    for endpoint in ENDPOINTS:
        with transaction.atomic():  # every cell starts from the same world
            actual[endpoint] = call(client, endpoint, world).status_code
            transaction.set_rollback(True)
    assert actual == {endpoint: expected_status(role, endpoint) for endpoint in ENDPOINTS}
    unexpected = {e: code for e, code in actual.items() if code < 300 and role not in ALLOWED[e]}
    assert unexpected == {}
    assert all(code in (401, 403, 404) for e, code in actual.items() if role not in ALLOWED[e])
