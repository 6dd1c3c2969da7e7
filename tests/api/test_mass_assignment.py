"""Mass assignment: no body lets a client set what the server decides.

Every API operation that takes a body gets a valid body plus the fields a hostile client
would try to slip in — status, requester, approver, steps, scope, roles, another
department, ids, who placed or created what — and must refuse them with a 400 naming each
one, with nothing changed. Operations without a body (cancel, hide, ...) ignore what is
sent: the call with the extra fields changes exactly what the plain call changes. The
list comes from the OpenAPI schema, so a new operation cannot slip by untested.
"""

from __future__ import annotations

import pytest
from django.db import transaction
from drf_spectacular.generators import SchemaGenerator

from tests.conftest import PASSWORD
from tests.records.test_ingest import conversation as ingest_conversation
from tests.world import build_world, state

pytestmark = pytest.mark.django_db


def forbidden(w) -> dict:
    return {
        "status": "approved",
        "requester": w.cast.admin.pk,
        "approver": w.cast.staff.pk,
        "steps": [{"role": "manager", "status": "approved", "approver": "staff"}],
        "scope": {"whole_company": True},
        "roles": ["admin"],
        "is_staff": True,
        "department": w.org.shenzhen.pk,
        "id": 1,
        "requested_by": "admin",
        "placed_by": "admin",
        "created_by": "admin",
        "approved_by": "admin_b",
        "granted_by": "admin",
    }


def batch(w) -> dict:
    return {"method": "batch", "reason": "清理", "scope": {"departments": [w.org.hangzhou.pk]}}


# (method, schema path) → (role, path, valid body)
WITH_BODY = {
    ("post", "/api/v1/auth/token/"): (
        None,
        "/api/v1/auth/token/",
        # A member without an authenticator: the password alone issues a token.
        lambda w: {"username": "warehouse", "password": PASSWORD},
    ),
    ("post", "/api/v1/reviews/recycle-bin/"): (
        "auditor",
        "/api/v1/reviews/recycle-bin/",
        lambda w: {"quarter": w.review.period},
    ),
    ("post", "/api/v1/reviews/{review_id}/sign-off/"): (
        "auditor",
        "/api/v1/reviews/{w.review.pk}/sign-off/",
        lambda w: {"finding": "核对无误"},
    ),
    ("post", "/api/v1/reviews/{review_id}/flag/"): (
        "auditor",
        "/api/v1/reviews/{w.review.pk}/flag/",
        lambda w: {"finding": "提前清除"},
    ),
    ("post", "/api/v1/lockouts/lift/"): (
        "admin",
        "/api/v1/lockouts/lift/",
        lambda w: {"username": w.locked_out},
    ),
    ("post", "/api/v1/conversations/{conversation_id}/export/"): (
        "staff",
        "/api/v1/conversations/{w.chats[hangzhou].pk}/export/",
        lambda w: {"format": "csv"},
    ),
    ("post", "/api/v1/ingest/messages/"): (
        "admin",
        "/api/v1/ingest/messages/",
        lambda w: {"source": "mass", "records": [ingest_conversation()]},
    ),
    ("post", "/api/v1/requests/"): ("staff", "/api/v1/requests/", batch),
    ("post", "/api/v1/requests/preview/"): ("staff", "/api/v1/requests/preview/", batch),
    ("post", "/api/v1/requests/{request_id}/approve/"): (
        "manager",
        "/api/v1/requests/{w.pending.pk}/approve/",
        lambda w: {"comment": "同意"},
    ),
    ("post", "/api/v1/requests/{request_id}/reject/"): (
        "manager",
        "/api/v1/requests/{w.pending.pk}/reject/",
        lambda w: {"reason": "范围太大"},
    ),
    ("post", "/api/v1/requests/{request_id}/export/"): (
        "staff",
        "/api/v1/requests/{w.binned.pk}/export/",
        lambda w: {"format": "csv"},
    ),
    ("post", "/api/v1/retention-rules/"): (
        "admin",
        "/api/v1/retention-rules/",
        # An admin's rule may govern any department: the one field here that names one.
        lambda w: {"name": "保留一年", "keep_days": 365, "action": "bin", "department": None},
    ),
    ("post", "/api/v1/retention-rules/{rule_id}/propose/"): (
        "admin",
        "/api/v1/retention-rules/{w.rule.pk}/propose/",
        lambda w: {},
    ),
    ("post", "/api/v1/retention-rules/{rule_id}/relax/"): (
        "admin",
        "/api/v1/retention-rules/{w.rule.pk}/relax/",
        lambda w: {"disable": True},
    ),
    ("post", "/api/v1/recycle-bin/{request_id}/restore/"): (
        "manager",
        "/api/v1/recycle-bin/{w.binned.pk}/restore/",
        lambda w: {},
    ),
    ("post", "/api/v1/holds/"): (
        "security",
        "/api/v1/holds/",
        lambda w: {"conversations": [w.chats["hangzhou"].pk], "kind": "legal", "reason": "诉讼"},
    ),
    ("post", "/api/v1/holds/{hold_id}/release/"): (
        "security",
        "/api/v1/holds/{w.hold.pk}/release/",
        lambda w: {"reason": "结案"},
    ),
    ("post", "/api/v1/notifications/read/"): (
        "manager",
        "/api/v1/notifications/read/",
        lambda w: {},
    ),
    ("patch", "/api/v1/policies/"): (
        "admin",
        "/api/v1/policies/",
        lambda w: {"recycle_bin_days": 9},
    ),
    ("post", "/api/v1/quota-grants/"): (
        "admin",
        "/api/v1/quota-grants/",
        lambda w: {"username": "staff", "extra": 2, "reason": "年底清理"},
    ),
}
# Operations that take no body: whatever is sent is ignored.
WITHOUT_BODY = {
    ("post", "/api/v1/requests/{request_id}/cancel/"): (
        "staff",
        "/api/v1/requests/{w.pending.pk}/cancel/",
    ),
    ("post", "/api/v1/requests/{request_id}/restore/"): (
        "staff",
        "/api/v1/requests/{w.personal.pk}/restore/",
    ),
    ("post", "/api/v1/conversations/{conversation_id}/hide/"): (
        "staff",
        "/api/v1/conversations/{w.chats[hangzhou].pk}/hide/",
    ),
    ("post", "/api/v1/conversations/{conversation_id}/unhide/"): (
        "staff",
        "/api/v1/conversations/{w.chats[hangzhou].pk}/unhide/",
    ),
    ("post", "/api/v1/retention-rules/{rule_id}/preview/"): (
        "admin",
        "/api/v1/retention-rules/{w.rule.pk}/preview/",
    ),
    ("post", "/api/v1/retention-rules/{rule_id}/approve/"): (
        "admin",
        "/api/v1/retention-rules/{w.proposed_rule.pk}/approve/",
    ),
    ("post", "/api/v1/auth/tokens/{token_id}/revoke/"): (
        "staff",
        "/api/v1/auth/tokens/{w.token.pk}/revoke/",
    ),
    ("post", "/api/v1/audit/verify/"): ("auditor", "/api/v1/audit/verify/"),
}


@pytest.fixture
def world(org, cast, chats):
    return build_world(org, cast, chats)


def test_every_operation_that_writes_is_listed():
    paths = SchemaGenerator().get_schema(public=True)["paths"]
    writes = {
        (method, path)
        for path, operations in paths.items()
        for method in operations
        if method in ("post", "put", "patch", "delete")
    }
    assert writes == set(WITH_BODY) | set(WITHOUT_BODY)


def _client(world, role, api_as):
    return api_as(None if role is None else getattr(world.cast, role))


@pytest.mark.parametrize("operation", sorted(WITH_BODY), ids=" ".join)
def test_fields_the_server_decides_are_refused_and_change_nothing(world, api_as, operation):
    role, path, body = WITH_BODY[operation]
    client = _client(world, role, api_as)
    valid = body(world)
    extras = {k: v for k, v in forbidden(world).items() if k not in valid}
    call = getattr(client, operation[0])
    url = path.format(w=world)
    before = state()

    response = call(url, {**valid, **extras}, format="json")

    assert response.status_code == 400, response.content
    named = set(response.json())
    if "errors" in named:  # ingest reports a list of problems
        named = {error["field"] for error in response.json()["errors"]}
    assert set(extras) <= named, response.json()
    assert state() == before
    with transaction.atomic():  # the valid body alone is accepted: the refusal was the extras
        assert call(url, valid, format="json").status_code < 300
        transaction.set_rollback(True)


@pytest.mark.parametrize("operation", sorted(WITHOUT_BODY), ids=" ".join)
def test_a_body_sent_where_none_is_taken_changes_nothing_more(world, api_as, operation):
    role, path = WITHOUT_BODY[operation]
    client = _client(world, role, api_as)
    url = path.format(w=world)
    with transaction.atomic():
        plain = client.post(url, format="json").status_code
        expected = state()
        transaction.set_rollback(True)

    response = client.post(url, forbidden(world), format="json")

    assert plain in (200, 202)
    assert response.status_code == plain
    assert state() == expected


def test_a_nested_scope_refuses_fields_of_its_own(world, api_as):
    body = batch(world)
    body["scope"]["status"] = "approved"
    body["scope"]["requester"] = world.cast.admin.pk
    client = api_as(world.cast.staff)
    before = state()
    response = client.post("/api/v1/requests/", body, format="json")
    assert response.status_code == 400
    assert set(response.json()["scope"]) == {"status", "requester"}
    assert state() == before


def test_another_departments_ids_in_a_body_are_unknown_and_change_nothing(world, api_as):
    client = api_as(world.cast.staff)
    before = state()
    south = {"method": "batch", "reason": "清理", "scope": {"departments": [world.org.shenzhen.pk]}}
    response = client.post("/api/v1/requests/", south, format="json")
    assert response.status_code == 400
    assert response.json() == {"departments": ["One or more departments are unknown."]}
    # An id that exists elsewhere reads exactly like one that exists nowhere.
    missing = {**south, "scope": {"departments": [999_999]}}
    assert client.post("/api/v1/requests/", missing, format="json").json() == response.json()
    assert state() == before


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"name": 12}, "name"),
        ({"keep_days": "30"}, "keep_days"),
        ({"keep_days": True}, "keep_days"),
    ],
)
def test_values_of_another_json_type_are_refused_not_converted(world, api_as, value, field):
    body = {"name": "保留一年", "keep_days": 365, "action": "bin", **value}
    client = api_as(world.cast.admin)
    before = state()
    response = client.post("/api/v1/retention-rules/", body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert state() == before
