"""Bounds: no client makes the server read, list, search or write without end.

Each bound is met with a 4xx whose message says what is wrong, and nothing changes:
request bodies (413 naming the bound), pages, search terms, id lists, rule terms,
exports (size and how many one member has waiting).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from retention.models import Export, ExportStatus
from tests.conftest import ROOT, services_or_skip, worker_env
from tests.world import build_world, state

pytestmark = pytest.mark.django_db

TOO_MANY = list(range(1, 1002))  # 1001 ids; the bound is 1000


@pytest.fixture
def world(org, cast, chats):
    return build_world(org, cast, chats)


def test_a_body_over_the_api_bound_is_refused_before_it_is_read(world, api_as, settings):
    settings.QINGLI_MAX_API_BODY_BYTES = 1000
    body = {"method": "batch", "reason": "清" * 2000, "scope": {"departments": [1]}}
    client = api_as(world.cast.staff)
    before = state()
    response = client.post("/api/v1/requests/", json.dumps(body), content_type="application/json")
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large: send at most 1000 bytes."}
    assert state() == before


def test_the_default_api_bound_is_a_mebibyte(world, api_as):
    big = json.dumps({"comment": "x" * (1024 * 1024)})
    response = api_as(world.cast.manager).post(
        f"/api/v1/requests/{world.pending.pk}/approve/", big, content_type="application/json"
    )
    assert response.status_code == 413
    assert "1048576 bytes" in response.json()["detail"]


def test_json_nested_too_deeply_is_a_400_not_a_crash(world, api_as):
    client = api_as(world.cast.staff)
    before = state()
    response = client.post(
        "/api/v1/requests/", "[" * 100_000 + "]" * 100_000, content_type="application/json"
    )
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]
    assert state() == before


def test_a_body_that_is_not_json_is_a_415(world, api_as):
    response = api_as(world.cast.staff).post(
        "/api/v1/requests/", {"method": "batch"}, format="multipart"
    )
    assert response.status_code == 415


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("page_size=201", "page_size", "Give a whole number from 1 to 200."),
        ("page=0", "page", "Give a whole number from 1 to 1000000000."),
        ("page=1&page=2", "page", "Give this parameter once."),
        ("q=" + "买" * 101, "q", "Ensure this value has at most 100 characters (it has 101)."),
        ("kind=", "kind", "Leave the parameter out, or give it a value."),
        ("include_subdepartments=maybe", "include_subdepartments", "Give true or false."),
    ],
)
def test_lists_and_searches_are_bounded_with_a_clear_400(world, api_as, query, field, message):
    response = api_as(world.cast.manager).get(f"/api/v1/conversations/?{query}")
    assert response.status_code == 400
    assert response.json() == {field: [message]}


@pytest.mark.parametrize(
    ("path", "query", "field", "message"),
    [
        ("audit/events", "until=", "until", "Leave the parameter out, or give it a value."),
        ("audit/events", "page_size=null", "page_size", "Give a whole number from 1 to 200."),
        (
            "audit/events",
            "cursor=Conversations",
            "cursor",
            "That page link is not valid; start from the newest.",
        ),
        ("audit/events", "actor=a&actor=b", "actor", "Give this parameter once."),
        (
            "audit/events",
            "include_subdepartments=1",
            "include_subdepartments",
            "Give true or false.",
        ),
        ("reviews", "overdue=null", "overdue", "Give true or false."),
        ("reviews", "status=open&status=flagged", "status", "Give this parameter once."),
        ("auth/tokens", "member=", "member", "Leave the parameter out, or give it a value."),
    ],
)
def test_filters_of_the_audit_log_reviews_and_tokens_are_checked(
    world, api_as, path, query, field, message
):
    response = api_as(world.cast.admin).get(f"/api/v1/{path}/?{query}")
    assert response.status_code == 400
    assert response.json() == {field: [message]}


def test_a_page_past_the_last_is_a_404(world, api_as):
    response = api_as(world.cast.manager).get("/api/v1/conversations/?page=999")
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/api/v1/requests/",
            lambda w: {"method": "batch", "scope": {"conversations": TOO_MANY}},
            "scope",
        ),
        (
            "/api/v1/requests/preview/",
            lambda w: {"method": "batch", "scope": {"departments": TOO_MANY}},
            "scope",
        ),
        (
            "/api/v1/requests/",
            lambda w: {"method": "batch", "scope": {}, "confirm_protected": TOO_MANY},
            "confirm_protected",
        ),
        ("/api/v1/notifications/read/", lambda w: {"ids": TOO_MANY}, "ids"),
        (
            "/api/v1/recycle-bin/{w.binned.pk}/restore/",
            lambda w: {"conversations": TOO_MANY},
            "conversations",
        ),
    ],
)
def test_id_lists_are_bounded(world, api_as, path, body, field):
    client = api_as(world.cast.manager)
    before = state()
    response = client.post(path.format(w=world), body(world), format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert "1000" in json.dumps(response.json(), ensure_ascii=False)
    assert state() == before


def test_holds_and_rule_terms_are_bounded(world, api_as):
    security, admin = api_as(world.cast.security), api_as(world.cast.admin)
    before = state()
    hold = {"conversations": TOO_MANY, "kind": "legal", "reason": "诉讼"}
    response = security.post("/api/v1/holds/", hold, format="json")
    assert response.status_code == 400
    assert "1000" in response.json()["conversations"][0]
    rule = {
        "name": "名" * 121,
        "keep_days": 36501,
        "action": "bin",
        "excluded_conversations": TOO_MANY,
    }
    response = admin.post("/api/v1/retention-rules/", rule, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"name", "keep_days", "excluded_conversations"}
    assert state() == before


def test_reasons_and_idempotency_keys_are_bounded(world, api_as):
    client = api_as(world.cast.staff)
    before = state()
    body = {
        "method": "batch",
        "reason": "清" * 2001,
        "scope": {"departments": [world.org.hangzhou.pk]},
    }
    assert list(client.post("/api/v1/requests/", body, format="json").json()) == ["reason"]
    body["reason"] = "清理"
    long_key = client.post("/api/v1/requests/", body, format="json", HTTP_IDEMPOTENCY_KEY="k" * 201)
    assert long_key.status_code == 400
    assert list(long_key.json()) == ["Idempotency-Key"]
    assert state() == before


def test_one_member_has_a_bounded_number_of_exports_waiting(world, api_as, settings):
    settings.QINGLI_MAX_OPEN_EXPORTS = 2
    client = api_as(world.cast.staff)
    url = f"/api/v1/conversations/{world.chats['hangzhou'].pk}/export/"
    waiting = Export.objects.filter(requested_by=world.cast.staff, status=ExportStatus.QUEUED)
    assert waiting.count() == 1  # the world's chat export, never built
    assert client.post(url, {"format": "csv"}, format="json").status_code == 202
    before = state()

    response = client.post(url, {"format": "csv"}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "export": ["2 of your exports are still being written; ask for another once one is ready."]
    }
    assert state() == before
    # Another member is not held back by them.
    manager = api_as(world.cast.manager).post(url, {"format": "csv"}, format="json")
    assert manager.status_code == 202


def test_an_export_larger_than_the_bound_is_refused(world, api_as, settings):
    settings.QINGLI_MAX_EXPORT_MESSAGES = 1
    client = api_as(world.cast.staff)
    before = state()
    response = client.post(
        f"/api/v1/requests/{world.binned.pk}/export/", {"format": "csv"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {
        "export": ["This export would hold 2 messages; one export holds at most 1."]
    }
    assert state() == before


def test_the_browser_refuses_an_oversized_export_on_the_page(world, client, settings):
    settings.QINGLI_MAX_EXPORT_MESSAGES = 1
    client.force_login(world.cast.staff)
    before = state()
    response = client.post(f"/requests/{world.binned.pk}/exports/", {"format": "csv"})
    assert response.status_code in (302, 400)
    assert state() == before


def test_the_token_endpoint_is_throttled_per_address(db, api_as, settings):
    """The throttle holds whatever the answers are; with the default sign-in lockout the
    address is locked out first (tests/access/test_signin_lockout.py), so it is raised
    here to see the throttle behind it."""
    settings.AXES_FAILURE_LIMIT = 1000
    client = api_as(None)
    codes = [
        client.post("/api/v1/auth/token/", {"username": "x", "password": "y"}, format="json")
        for _ in range(21)
    ]
    assert [c.status_code for c in codes[:20]] == [400] * 20
    assert codes[20].status_code == 429


@pytest.mark.parametrize(
    "path", ["/api/v1/requests/%0A/reject/", "/api/v1/requests/abc/", "/api/v1/nothing/"]
)
def test_paths_that_name_no_operation_are_a_json_404(db, api_as, path):
    response = api_as(None).post(path, {}, format="json")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@contextmanager
def web_server(port: int) -> Iterator[str]:
    """A real gunicorn (one worker) on the test database, at the returned base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "retention.wsgi", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while post_json(f"{base}/api/v1/nothing/", {}) is None:
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not answer within 60 s"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def post_json(url: str, body: dict) -> int | None:
    """The status of a JSON POST to ``url``; None while nothing listens there."""
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as answer:
        return answer.code
    except OSError:
        return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_server_processes_share_one_token_throttle(db):
    """Each gunicorn worker is a process of its own: with REDIS_URL they count in one
    cache, so spreading calls over processes does not multiply the limit. (A body without
    a password is a 400 before any sign-in is tried, but the throttle counts it.)"""
    services_or_skip()
    with web_server(free_port()) as first, web_server(free_port()) as second:
        codes = [
            post_json(f"{(first, second)[i % 2]}/api/v1/auth/token/", {"username": "x"})
            for i in range(22)
        ]
    assert codes[:20] == [400] * 20
    # The 21st call went to the first process, the 22nd to the second: both refuse.
    assert codes[20:] == [429, 429]
