"""Who sees which conversation, and whose bodies they may read — API and browser alike.

B = sees it and reads bodies, M = sees metadata only, - = 404 (indistinguishable from absent).
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

# fmt: off
#                      hangzhou warehouse shenzhen company
MATRIX = {
    "staff":           ("B",     "-",      "-",     "-"),
    "warehouse_staff": ("-",     "B",      "-",     "-"),
    "staff2":          ("-",     "-",      "B",     "-"),
    "manager":         ("B",     "B",      "-",     "-"),
    "manager2":        ("-",     "-",      "B",     "-"),
    "director":        ("B",     "B",      "B",     "B"),
    "admin":           ("M",     "M",      "M",     "B"),
    "security":        ("M",     "M",      "M",     "M"),
    "auditor":         ("M",     "M",      "M",     "M"),
}
# fmt: on
CHATS = ("hangzhou", "warehouse", "shenzhen", "company")
CASES = [(who, chat, MATRIX[who][i]) for who in MATRIX for i, chat in enumerate(CHATS)]


def api_for(member) -> APIClient:
    client = APIClient()
    client.force_authenticate(member)
    return client


@pytest.mark.parametrize(("who", "chat", "expected"), CASES)
def test_api_conversation_access(cast, chats, who, chat, expected):
    client = api_for(getattr(cast, who))
    conversation = chats[chat]
    detail = client.get(f"/api/v1/conversations/{conversation.pk}/")
    messages = client.get(f"/api/v1/conversations/{conversation.pk}/messages/")
    listed = {c["id"] for c in client.get("/api/v1/conversations/?page_size=200").data["results"]}
    if expected == "-":
        assert detail.status_code == 404
        assert messages.status_code == 404
        assert conversation.pk not in listed
        assert conversation.title not in detail.content.decode()
        return
    assert detail.status_code == 200
    assert conversation.pk in listed
    bodies = [m["body"] for m in messages.data["results"]]
    assert detail.data["can_read_bodies"] is (expected == "B")
    if expected == "B":
        assert all(isinstance(b, str) and b for b in bodies)
    else:
        assert bodies and all(b is None for b in bodies)


@pytest.mark.parametrize(("who", "chat", "expected"), CASES)
def test_browser_conversation_access(client, cast, chats, who, chat, expected):
    client.force_login(getattr(cast, who))
    conversation = chats[chat]
    first_body = "亲，在的" if chat == "hangzhou" else None
    response = client.get(f"/conversations/{conversation.pk}/")
    if expected == "-":
        assert response.status_code == 404
        assert conversation.title not in response.content.decode()
        return
    assert response.status_code == 200
    if first_body:
        assert (first_body in response.content.decode()) is (expected == "B")


def test_a_missing_and_a_forbidden_conversation_look_the_same(cast, chats):
    client = api_for(cast.staff)
    forbidden = client.get(f"/api/v1/conversations/{chats['shenzhen'].pk}/")
    missing = client.get("/api/v1/conversations/999999/")
    assert forbidden.status_code == missing.status_code == 404
    assert forbidden.json() == missing.json()


def test_departments_are_scoped(cast, org):
    def names(member):
        return {d["name"] for d in api_for(member).get("/api/v1/departments/").data["results"]}

    assert names(cast.manager) == {"East region", "Hangzhou store", "Hangzhou warehouse"}
    assert names(cast.staff) == {"Hangzhou store", "Hangzhou warehouse"}
    assert len(names(cast.admin)) == 6
    assert names(cast.manager2) == {"South region", "Shenzhen store"}


def test_me_describes_the_caller(cast):
    data = api_for(cast.manager).get("/api/v1/me/").data
    assert data["username"] == "manager"
    assert data["roles"] == ["manager"]
    assert data["department"]["name"] == "East region"


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/me/",
        "/api/v1/departments/",
        "/api/v1/conversations/",
        "/api/v1/conversations/1/",
        "/api/v1/conversations/1/messages/",
    ],
)
def test_anonymous_api_calls_are_refused(url):
    assert APIClient().get(url).status_code == 401


@pytest.mark.parametrize("url", ["/", "/conversations/", "/conversations/1/"])
def test_anonymous_pages_redirect_to_sign_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/signin/")


def test_filtering_by_a_department_outside_the_scope_is_a_clear_400(cast, org):
    response = api_for(cast.manager).get(f"/api/v1/conversations/?department={org.shenzhen.pk}")
    assert response.status_code == 400
    assert "department" in response.json()


def test_subdepartments_are_included_unless_excluded(cast, org, chats):
    client = api_for(cast.manager)
    with_sub = client.get(f"/api/v1/conversations/?department={org.hangzhou.pk}").data
    without = client.get(
        f"/api/v1/conversations/?department={org.hangzhou.pk}&include_subdepartments=false"
    ).data
    assert {c["id"] for c in with_sub["results"]} == {chats["hangzhou"].pk, chats["warehouse"].pk}
    assert {c["id"] for c in without["results"]} == {chats["hangzhou"].pk}


def test_filters_by_kind_sensitivity_and_text(cast, org, chats):
    from tests.conftest import make_chat

    risky = make_chat(org.hangzhou, [cast.staff], ["我的手机号 13912345678"], title="退款-买家小王")
    client = api_for(cast.manager)

    def ids(query):
        response = client.get(f"/api/v1/conversations/?{query}")
        assert response.status_code == 200, response.content
        return {c["id"] for c in response.data["results"]}

    assert ids("kind=customer") == {chats["hangzhou"].pk}
    assert ids("sensitivity=2") == {risky.pk}
    assert ids("q=买家小王") == {risky.pk}
    assert ids("q=staff") == {chats["hangzhou"].pk, risky.pk}  # a participant's username


@pytest.mark.parametrize(
    "query", ["kind=bogus", "sensitivity=7", "since=yesterday", "since=2026-02-01&until=2026-01-01"]
)
def test_bad_filters_get_a_400_that_says_what_is_wrong(cast, query):
    response = api_for(cast.manager).get(f"/api/v1/conversations/?{query}")
    assert response.status_code == 400
    assert response.json()


def test_page_size_is_bounded_with_a_clear_400(cast, chats):
    client = api_for(cast.director)
    client.credentials(HTTP_ACCEPT_LANGUAGE="en")
    assert len(client.get("/api/v1/conversations/?page_size=200").data["results"]) == 4
    for size in ("100000", "0", "-1", "ten", "9" * 5000):
        response = client.get(f"/api/v1/conversations/?page_size={size}")
        assert response.status_code == 400, size
        assert response.json() == {"page_size": ["Give a whole number from 1 to 200."]}


def test_browser_filter_errors_show_on_the_form(client, cast):
    client.force_login(cast.manager)
    response = client.get("/conversations/?since=2026-02-01&until=2026-01-01")
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()


@pytest.mark.parametrize("query", ["until=9999-12-31", "since=0001-01-01"])
def test_far_dates_are_a_400_not_a_crash(cast, client, query):
    assert api_for(cast.manager).get(f"/api/v1/conversations/?{query}").status_code == 400
    client.force_login(cast.manager)
    page = client.get(f"/conversations/?{query}")
    assert page.status_code == 200
    assert 'role="alert"' in page.content.decode()
