"""Who sees which conversation, and whose bodies they may read — API and browser alike.

B = sees it and reads bodies, M = sees metadata only, - = 404 (indistinguishable from absent).
"""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from tests.conftest import sign_in_verified

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
        "/api/v1/reviews/",
        "/api/v1/reviews/1/",
    ],
)
def test_anonymous_api_calls_are_refused(url):
    assert APIClient().get(url).status_code == 401


@pytest.mark.parametrize(
    "url", ["/", "/conversations/", "/conversations/1/", "/reviews/", "/reviews/1/"]
)
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


@pytest.mark.parametrize(
    "query", ["until=9999-12-31", "since=0001-01-01", "since=2101-01-01", "until=1989-12-31"]
)
def test_far_dates_are_a_400_not_a_crash(cast, client, query):
    response = api_for(cast.manager).get(
        f"/api/v1/conversations/?{query}", HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 400
    field = query.partition("=")[0]
    assert response.json() == {field: ["Must be a date between 1990-01-01 and 2100-12-31."]}
    client.force_login(cast.manager)
    page = client.get(f"/conversations/?{query}")
    assert page.status_code == 200
    assert 'role="alert"' in page.content.decode()


# --- every endpoint × every role -----------------------------------------------------------
#
# Each cell is one call by one role into the populated company of tests/world.py, rolled
# back afterwards. Objects in paths are East's (the Hangzhou store and its warehouse):
# staff2 and manager2 (South) try them as members of another department. A cell is either
# allowed, with its exact status, or refused: 401 (API) or a redirect to sign in (pages)
# for the anonymous, 404 where the object is outside the caller's view (indistinguishable
# from a missing one, and naming nothing of it), 403 where the role forbids it, 400 where
# ids in the body are outside the caller's view. Routes come from the URLconf: a route
# without a row here fails the test, so no new endpoint slips by untested.

MATRIX_ROLES = (
    "anonymous",
    "staff",
    "staff2",
    "manager",
    "manager2",
    "security",
    "auditor",
    "admin",
)
MEMBER_ROLES = MATRIX_ROLES[1:]
OVERSIGHT = ("security", "auditor", "admin")
EAST = ("staff", "manager", *OVERSIGHT)  # who sees the Hangzhou store's chat and requests
SOUTH = ("staff2", "manager2")
FILERS = ("staff", "staff2", "manager", "manager2", "admin")  # security and auditors do not
APPROVERS = ("manager", "manager2", "security", "admin")
HOLD_READERS = ("manager", "manager2", *OVERSIGHT)
READERS = ("auditor", "admin")  # the audit log, compliance reviews and the reports
NOT_STAFF_OWNER = ("staff2", "manager", "manager2", "security", "auditor")  # staff's token


def policy_form() -> dict:
    """The policies page's form as the page fills it in."""
    from retention.policies import all_policies
    from retention.web.request_forms import PolicyForm

    form = PolicyForm(current=all_policies())
    return {name: form[name].value() for name in form.fields}


def every(code: int, roles=MEMBER_ROLES) -> dict[str, int]:
    return dict.fromkeys(roles, code)


def _matrix_rows():
    """(name, kind, method, path(world), body(world) or None, allowed {role: status},
    hidden: roles that get 404, refused_400: roles that get 400)."""
    from tests.conftest import PASSWORD
    from tests.records.test_ingest import conversation as ingest_conversation

    hz = "{w.chats[hangzhou].pk}"
    req = "{w.pending.pk}"
    batch_body = lambda w: {  # noqa: E731
        "method": "batch",
        "reason": "清理",
        "scope": {"departments": [w.org.hangzhou.pk]},
    }
    form_batch = lambda w: {"method": "batch", "departments": [w.org.hangzhou.pk], "reason": "清理"}  # noqa: E731
    return [
        # --- API ---
        (
            "api token",
            "api",
            "post",
            "/api/v1/auth/token/",
            # A member without an authenticator: the password alone is enough for them.
            lambda w: {"username": "warehouse", "password": PASSWORD},
            every(200, MATRIX_ROLES),
            (),
            (),
        ),
        ("api tokens", "api", "get", "/api/v1/auth/tokens/", None, every(200), (), ()),
        (
            "api revoke token",
            "api",
            "post",
            "/api/v1/auth/tokens/{w.token.pk}/revoke/",
            None,
            {"staff": 200, "admin": 200},  # its owner, and admins
            NOT_STAFF_OWNER,
            (),
        ),
        ("api reviews", "api", "get", "/api/v1/reviews/", None, every(200, READERS), (), ()),
        (
            "api review",
            "api",
            "get",
            "/api/v1/reviews/{w.review.pk}/",
            None,
            every(200, READERS),
            (),
            (),
        ),
        (
            "api recycle bin review",
            "api",
            "post",
            "/api/v1/reviews/recycle-bin/",
            lambda w: {"quarter": w.review.period},
            {"auditor": 200},  # admins read reviews; only auditors open and decide them
            (),
            (),
        ),
        (
            "api review sign-off",
            "api",
            "post",
            "/api/v1/reviews/{w.review.pk}/sign-off/",
            lambda w: {"finding": "核对无误"},
            {"auditor": 200},
            (),
            (),
        ),
        (
            "api review flag",
            "api",
            "post",
            "/api/v1/reviews/{w.review.pk}/flag/",
            lambda w: {"finding": "提前清除"},
            {"auditor": 200},
            (),
            (),
        ),
        (
            "api audit events",
            "api",
            "get",
            "/api/v1/audit/events/",
            None,
            every(200, READERS),
            (),
            (),
        ),
        (
            "api audit verification",
            "api",
            "get",
            "/api/v1/audit/verify/",
            None,
            every(200, READERS),
            (),
            (),
        ),
        (
            "api audit verify",
            "api",
            "post",
            "/api/v1/audit/verify/",
            None,
            every(202, READERS),
            (),
            (),
        ),
        (
            "api audit digests",
            "api",
            "get",
            "/api/v1/audit/digests/",
            None,
            every(200, READERS),
            (),
            (),
        ),
        ("api lockouts", "api", "get", "/api/v1/lockouts/", None, {"admin": 200}, (), ()),
        (
            "api lift lockout",
            "api",
            "post",
            "/api/v1/lockouts/lift/",
            lambda w: {"username": w.locked_out},
            {"admin": 200},
            (),
            (),
        ),
        (
            "api quarterly report",
            "api",
            "get",
            "/api/v1/reports/quarterly/{w.review.period}/",
            None,
            every(200, READERS),
            (),
            (),
        ),
        (
            "api annual assessment",
            "api",
            "get",
            lambda w: f"/api/v1/reports/annual/{w.review.period[:4]}/",
            None,
            every(200, READERS),
            (),
            (),
        ),
        ("api me", "api", "get", "/api/v1/me/", None, every(200), (), ()),
        ("api departments", "api", "get", "/api/v1/departments/", None, every(200), (), ()),
        ("api conversations", "api", "get", "/api/v1/conversations/", None, every(200), (), ()),
        (
            "api conversation",
            "api",
            "get",
            f"/api/v1/conversations/{hz}/",
            None,
            every(200, EAST),
            SOUTH,
            (),
        ),
        (
            "api conversation messages",
            "api",
            "get",
            f"/api/v1/conversations/{hz}/messages/",
            None,
            every(200, EAST),
            SOUTH,
            (),
        ),
        (
            "api hide",
            "api",
            "post",
            f"/api/v1/conversations/{hz}/hide/",
            None,
            {"staff": 200},
            SOUTH,
            (),
        ),
        (
            "api unhide",
            "api",
            "post",
            f"/api/v1/conversations/{hz}/unhide/",
            None,
            every(200, EAST),
            SOUTH,
            (),
        ),
        (
            "api conversation export",
            "api",
            "post",
            f"/api/v1/conversations/{hz}/export/",
            lambda w: {"format": "jsonl"},
            {"staff": 202, "manager": 202},
            SOUTH,
            (),
        ),
        (
            "api effective policy",
            "api",
            "get",
            f"/api/v1/conversations/{hz}/effective-policy/",
            None,
            every(200, EAST),
            SOUTH,
            (),
        ),
        (
            "api ingest",
            "api",
            "post",
            "/api/v1/ingest/messages/",
            lambda w: {"source": "matrix", "records": [ingest_conversation()]},
            {"admin": 201},
            (),
            (),
        ),
        ("api requests", "api", "get", "/api/v1/requests/", None, every(200), (), ()),
        (
            "api file request",
            "api",
            "post",
            "/api/v1/requests/",
            batch_body,
            {"staff": 201, "manager": 201},
            (),
            SOUTH,
        ),
        (
            "api preview request",
            "api",
            "post",
            "/api/v1/requests/preview/",
            batch_body,
            {"staff": 200, "manager": 200},
            (),
            SOUTH,
        ),
        (
            "api request",
            "api",
            "get",
            f"/api/v1/requests/{req}/",
            None,
            every(200, EAST),
            SOUTH,
            (),
        ),
        (
            "api approve",
            "api",
            "post",
            f"/api/v1/requests/{req}/approve/",
            lambda w: {},
            {"manager": 200},
            SOUTH,
            (),
        ),
        (
            "api reject",
            "api",
            "post",
            f"/api/v1/requests/{req}/reject/",
            lambda w: {"reason": "范围太大"},
            {"manager": 200},
            SOUTH,
            (),
        ),
        (
            "api cancel",
            "api",
            "post",
            f"/api/v1/requests/{req}/cancel/",
            None,
            {"staff": 200, "admin": 200},
            SOUTH,
            (),
        ),
        (
            "api restore personal",
            "api",
            "post",
            "/api/v1/requests/{w.personal.pk}/restore/",
            None,
            {"staff": 200},
            SOUTH,
            (),
        ),
        (
            "api request export",
            "api",
            "post",
            "/api/v1/requests/{w.binned.pk}/export/",
            lambda w: {"format": "csv"},
            {"staff": 202, "manager": 202, "auditor": 202, "admin": 202},
            SOUTH,
            (),
        ),
        (
            "api export",
            "api",
            "get",
            "/api/v1/exports/{w.export.pk}/",
            None,
            {"staff": 200, "manager": 200, "auditor": 200, "admin": 200},
            SOUTH,
            (),
        ),
        (
            "api export download",
            "api",
            "get",
            "/api/v1/exports/{w.export.pk}/download/",
            None,
            {"staff": 200, "manager": 200, "auditor": 200, "admin": 200},
            SOUTH,
            (),
        ),
        (
            "api rules",
            "api",
            "get",
            "/api/v1/retention-rules/",
            None,
            every(200, OVERSIGHT),
            (),
            (),
        ),
        (
            "api create rule",
            "api",
            "post",
            "/api/v1/retention-rules/",
            lambda w: {"name": "群聊保留一年", "keep_days": 365, "action": "bin"},
            {"admin": 201},
            (),
            (),
        ),
        (
            "api rule",
            "api",
            "get",
            "/api/v1/retention-rules/{w.rule.pk}/",
            None,
            every(200, OVERSIGHT),
            (),
            (),
        ),
        (
            "api rule preview",
            "api",
            "post",
            "/api/v1/retention-rules/{w.rule.pk}/preview/",
            None,
            {"admin": 200},
            (),
            (),
        ),
        (
            "api rule propose",
            "api",
            "post",
            "/api/v1/retention-rules/{w.rule.pk}/propose/",
            lambda w: {},
            {"admin": 200},
            (),
            (),
        ),
        (
            "api rule approve",
            "api",
            "post",
            "/api/v1/retention-rules/{w.proposed_rule.pk}/approve/",
            None,
            {"admin": 200},
            (),
            (),
        ),
        (
            "api rule relax",
            "api",
            "post",
            "/api/v1/retention-rules/{w.rule.pk}/relax/",
            lambda w: {"disable": True},
            {"admin": 200},
            (),
            (),
        ),
        ("api recycle bin", "api", "get", "/api/v1/recycle-bin/", None, every(200), (), ()),
        (
            "api recycle restore",
            "api",
            "post",
            "/api/v1/recycle-bin/{w.binned.pk}/restore/",
            lambda w: {},
            {"manager": 200, "admin": 200},
            ("staff", *SOUTH),
            (),
        ),
        ("api holds", "api", "get", "/api/v1/holds/", None, every(200), (), ()),
        (
            "api place hold",
            "api",
            "post",
            "/api/v1/holds/",
            lambda w: {
                "conversations": [w.chats["hangzhou"].pk],
                "kind": "legal",
                "reason": "诉讼",
            },
            {"security": 201},
            (),
            (),
        ),
        (
            "api release hold",
            "api",
            "post",
            "/api/v1/holds/{w.hold.pk}/release/",
            None,
            {"security": 200},
            ("staff", *SOUTH),
            (),
        ),
        ("api notifications", "api", "get", "/api/v1/notifications/", None, every(200), (), ()),
        (
            "api read notifications",
            "api",
            "post",
            "/api/v1/notifications/read/",
            lambda w: {},
            every(200),
            (),
            (),
        ),
        ("api policies", "api", "get", "/api/v1/policies/", None, every(200), (), ()),
        (
            "api change policies",
            "api",
            "patch",
            "/api/v1/policies/",
            lambda w: {"recycle_bin_days": 9},
            {"admin": 200},
            (),
            (),
        ),
        (
            "api grant quota",
            "api",
            "post",
            "/api/v1/quota-grants/",
            lambda w: {"username": "staff", "extra": 2, "reason": "年底清理"},
            {"admin": 201},
            (),
            (),
        ),
        ("api schema", "api", "get", "/api/schema/", None, every(200, MATRIX_ROLES), (), ()),
        ("api docs", "api", "get", "/api/docs/", None, every(200, MATRIX_ROLES), (), ()),
        # --- pages ---
        ("dashboard", "web", "get", "/", None, every(200), (), ()),
        # Signed-in members are sent on to the dashboard.
        ("signin", "web", "get", "/signin/", None, {"anonymous": 200, **every(302)}, (), ()),
        (
            "sign in",
            "web",
            "post",
            "/signin/",
            lambda w: {"username": "staff", "password": "wrong"},
            {"anonymous": 200, **every(302)},  # the form again, with its error
            (),
            (),
        ),
        ("signout", "web", "post", "/signout/", None, every(302, MATRIX_ROLES), (), ()),
        # The code step: without a password checked first, back to sign in; a verified
        # session is sent on to where it was going.
        ("sign-in code", "web", "get", "/signin/code/", None, every(302), (), ()),
        (
            "sign-in code post",
            "web",
            "post",
            "/signin/code/",
            lambda w: {"code": "000000"},
            every(302),
            (),
            (),
        ),
        ("security", "web", "get", "/security/", None, every(200), (), ()),
        # Everyone in the matrix has an authenticator (approvers must): one is enough.
        ("enrol", "web", "get", "/security/authenticator/", None, every(302), (), ()),
        (
            "enrol post",
            "web",
            "post",
            "/security/authenticator/",
            lambda w: {"code": "000000"},
            every(302),
            (),
            (),
        ),
        (
            "remove authenticator",
            "web",
            "post",
            "/security/authenticator/remove/",
            lambda w: {"code": "000000"},  # a wrong code: the page again, with its error
            every(400),
            (),
            (),
        ),
        (
            "create token page",
            "web",
            "post",
            "/security/tokens/",
            lambda w: {"name": "夜间清理"},
            every(200),  # the page, showing the new key once
            (),
            (),
        ),
        (
            "revoke token page",
            "web",
            "post",
            "/security/tokens/{w.token.pk}/revoke/",
            None,
            {"staff": 302, "admin": 302},
            NOT_STAFF_OWNER,
            (),
        ),
        (
            "members' security",
            "web",
            "get",
            "/security/members/",
            None,
            {"admin": 200},
            (),
            (),
        ),
        (
            "reset authenticator page",
            "web",
            "post",
            "/security/members/{w.cast.staff.pk}/reset/",
            lambda w: {"reason": "手机丢失"},
            {"admin": 302},
            (),
            (),
        ),
        (
            "set language",
            "web",
            "post",
            "/i18n/setlang/",
            lambda w: {"language": "en"},
            every(302, MATRIX_ROLES),
            (),
            (),
        ),
        ("conversations", "web", "get", "/conversations/", None, every(200), (), ()),
        ("conversation", "web", "get", f"/conversations/{hz}/", None, every(200, EAST), SOUTH, ()),
        (
            "conversation controls",
            "web",
            "get",
            f"/conversations/{hz}/mine/",
            None,
            every(200, EAST),  # the participant's panel; empty for those who oversee
            SOUTH,
            (),
        ),
        ("hide", "web", "post", f"/conversations/{hz}/hide/", None, {"staff": 302}, SOUTH, ()),
        ("unhide", "web", "post", f"/conversations/{hz}/unhide/", None, {"staff": 302}, SOUTH, ()),
        (
            "delete mine",
            "web",
            "post",
            f"/conversations/{hz}/delete-mine/",
            lambda w: {},
            {"staff": 302},
            SOUTH,
            (),
        ),
        (
            "delete my message",
            "web",
            "post",
            lambda w: (
                f"/conversations/{w.chats['hangzhou'].pk}/messages/"
                f"{w.chats['hangzhou'].messages.first().pk}/delete-mine/"
            ),
            lambda w: {},
            {"staff": 302},
            SOUTH,
            (),
        ),
        ("requests", "web", "get", "/requests/", None, every(200), (), ()),
        (
            "new request",
            "web",
            "get",
            "/requests/new/",
            None,
            every(200, FILERS),
            (),
            (),
        ),
        (
            "file request page",
            "web",
            "post",
            "/requests/new/",
            form_batch,
            {"staff": 302, "manager": 302},
            (),
            (*SOUTH, "admin"),  # a department outside their view; admins file wipes only
        ),
        (
            "request preview page",
            "web",
            "post",
            "/requests/preview/",
            form_batch,
            # The wizard's live panel: for those it refuses it shows the refusal (htmx swaps
            # 2xx only), and no numbers (test_the_preview_panel_shows_no_other_scope).
            every(200, FILERS),
            (),
            (),
        ),
        ("request", "web", "get", f"/requests/{req}/", None, every(200, EAST), SOUTH, ()),
        (
            "request progress",
            "web",
            "get",
            "/requests/{w.binned.pk}/progress/",
            None,
            every(200, EAST),
            SOUTH,
            (),
        ),
        (
            "approve page",
            "web",
            "post",
            f"/requests/{req}/approve/",
            lambda w: {},
            {"manager": 302},
            SOUTH,
            (),
        ),
        (
            "reject page",
            "web",
            "post",
            f"/requests/{req}/reject/",
            lambda w: {"reason": "范围太大"},
            {"manager": 302},
            SOUTH,
            (),
        ),
        (
            "cancel page",
            "web",
            "post",
            f"/requests/{req}/cancel/",
            None,
            {"staff": 302, "admin": 302},
            SOUTH,
            (),
        ),
        (
            "restore page",
            "web",
            "post",
            "/requests/{w.personal.pk}/restore/",
            None,
            {"staff": 302},
            SOUTH,
            (),
        ),
        ("approvals", "web", "get", "/approvals/", None, every(200, APPROVERS), (), ()),
        (
            "request exports",
            "web",
            "get",
            "/requests/{w.binned.pk}/exports/",
            None,
            every(200, EAST),
            SOUTH,
            (),
        ),
        (
            "request export page",
            "web",
            "post",
            "/requests/{w.binned.pk}/exports/",
            lambda w: {"format": "csv"},
            {"staff": 302, "manager": 302, "auditor": 302, "admin": 302},
            SOUTH,
            (),
        ),
        (
            "conversation exports",
            "web",
            "get",
            f"/conversations/{hz}/exports/",
            None,
            every(200, EAST),
            SOUTH,
            (),
        ),
        (
            "conversation export page",
            "web",
            "post",
            f"/conversations/{hz}/exports/",
            lambda w: {"format": "csv"},
            {"staff": 302, "manager": 302},
            SOUTH,
            (),
        ),
        (
            "export download page",
            "web",
            "get",
            "/exports/{w.export.pk}/download/",
            None,
            {"staff": 200, "manager": 200, "auditor": 200, "admin": 200},
            SOUTH,
            (),
        ),
        ("rules", "web", "get", "/rules/", None, every(200, OVERSIGHT), (), ()),
        (
            "create rule page",
            "web",
            "post",
            "/rules/new/",
            lambda w: {"name": "群聊保留一年", "keep_days": 365, "action": "bin"},
            {"admin": 302},
            (),
            (),
        ),
        ("rule", "web", "get", "/rules/{w.rule.pk}/", None, every(200, OVERSIGHT), (), ()),
        (
            "rule preview page",
            "web",
            "post",
            "/rules/{w.rule.pk}/preview/",
            None,
            {"admin": 302},
            (),
            (),
        ),
        (
            "rule propose page",
            "web",
            "post",
            "/rules/{w.rule.pk}/propose/",
            lambda w: {},
            {"admin": 302},
            (),
            (),
        ),
        (
            "rule approve page",
            "web",
            "post",
            "/rules/{w.proposed_rule.pk}/approve/",
            None,
            {"admin": 302},
            (),
            (),
        ),
        (
            "rule relax page",
            "web",
            "post",
            "/rules/{w.rule.pk}/relax/",
            lambda w: {"keep_days": 60},
            {"admin": 302},
            (),
            (),
        ),
        (
            "rule disable page",
            "web",
            "post",
            "/rules/{w.rule.pk}/disable/",
            None,
            {"admin": 302},
            (),
            (),
        ),
        ("recycle bin", "web", "get", "/recycle-bin/", None, every(200), (), ()),
        (
            "recycle bin request",
            "web",
            "get",
            "/recycle-bin/{w.binned.pk}/",
            None,
            every(200, ("manager", *OVERSIGHT)),
            ("staff", *SOUTH),
            (),
        ),
        (
            "recycle restore page",
            "web",
            "post",
            "/recycle-bin/{w.binned.pk}/restore/",
            lambda w: {},
            {"manager": 302, "admin": 302},
            ("staff", *SOUTH),
            (),
        ),
        ("holds", "web", "get", "/holds/", None, every(200, HOLD_READERS), (), ()),
        (
            "place hold page",
            "web",
            "post",
            "/holds/place/",
            lambda w: {
                "conversations": [w.chats["hangzhou"].pk],
                "kind": "legal",
                "reason": "诉讼",
            },
            {"security": 302},
            (),
            (),
        ),
        (
            "release hold page",
            "web",
            "post",
            "/holds/{w.hold.pk}/release/",
            lambda w: {},
            {"security": 302},
            ("staff", *SOUTH),
            (),
        ),
        ("policies page", "web", "get", "/policies/", None, every(200), (), ()),
        (
            "change policies page",
            "web",
            "post",
            "/policies/",
            lambda w: {**policy_form(), "recycle_bin_days": 9},
            {"admin": 302},
            (),
            (),
        ),
        ("notifications page", "web", "get", "/notifications/", None, every(200), (), ()),
        ("mark read page", "web", "post", "/notifications/read/", None, every(302), (), ()),
        ("nav counts", "web", "get", "/nav/counts/", None, every(200), (), ()),
        ("reviews", "web", "get", "/reviews/", None, every(200, READERS), (), ()),
        ("review", "web", "get", "/reviews/{w.review.pk}/", None, every(200, READERS), (), ()),
        (
            "recycle bin review page",
            "web",
            "post",
            "/reviews/recycle-bin/",
            lambda w: {"quarter": w.review.period},
            {"auditor": 302},
            (),
            (),
        ),
        (
            "review decision page",
            "web",
            "post",
            "/reviews/{w.review.pk}/flag/",
            lambda w: {"finding": "提前清除"},
            {"auditor": 302},
            (),
            (),
        ),
        ("audit log", "web", "get", "/audit/", None, every(200, READERS), (), ()),
        (
            "audit export page",
            "web",
            "post",
            "/audit/export/",
            None,
            every(200, READERS),  # small enough to stream at once
            (),
            (),
        ),
        ("audit exports", "web", "get", "/audit/exports/", None, every(200, READERS), (), ()),
        (
            "audit export download",
            "web",
            "get",
            "/audit/exports/{w.audit_export.pk}/download/",
            None,
            {"auditor": 200},  # its requester's: another reader's is a 404
            ("admin",),
            (),
        ),
        ("audit verify", "web", "get", "/audit/verify/", None, every(200, READERS), (), ()),
        (
            "audit verify status",
            "web",
            "get",
            "/audit/verify/status/",
            None,
            every(200, READERS),
            (),
            (),
        ),
        (
            "audit verify run",
            "web",
            "post",
            "/audit/verify/run/",
            None,
            every(302, READERS),
            (),
            (),
        ),
        ("lockouts", "web", "get", "/lockouts/", None, {"admin": 200}, (), ()),
        (
            "lift lockout page",
            "web",
            "post",
            "/lockouts/lift/",
            lambda w: {"username": w.locked_out},
            {"admin": 302},
            (),
            (),
        ),
        ("reports", "web", "get", "/reports/", None, every(302, READERS), (), ()),
        (
            "quarterly report",
            "web",
            "get",
            "/reports/{w.review.period}/",
            None,
            every(200, READERS),
            (),
            (),
        ),
        (
            "quarterly report download",
            "web",
            "get",
            "/reports/{w.review.period}/csv/",
            None,
            every(200, READERS),
            (),
            (),
        ),
        (
            "annual assessment download",
            "web",
            "get",
            lambda w: f"/reports/annual/{w.review.period[:4]}/csv/",
            None,
            every(200, READERS),
            (),
            (),
        ),
    ]


ROWS = _matrix_rows()
EAST_ONLY = ("Hangzhou store", "Hangzhou warehouse", "诉讼保全")
SECRETS = ("Hangzhou store chat", "清理过期聊天记录", "诉讼保全", "客服会话保留 30 天", "tb_88231")
# Routes the matrix leaves to their own tests: Django's admin and the RQ dashboard inside
# it (tests/access/test_auth.py), and the API's catch-all JSON 404.
UNMATRIXED = ("admin/", "api/v1/^[\\s\\S]*/$")
FIGURES: dict[str, int] = {}


def _path(row, world) -> str:
    path = row[3]
    return path(world) if callable(path) else path.format(w=world)


def _routes(patterns=None, prefix: str = "") -> list[tuple[str, str]]:
    """Every (route, name) of the URLconf."""
    from django.urls import URLPattern, URLResolver, get_resolver

    found = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found += _routes(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            found.append((route, entry.name))
    return found


@pytest.fixture
def matrix_world(org, cast, chats):
    from tests.world import build_world

    return build_world(org, cast, chats)


def test_every_route_and_api_operation_has_a_row_in_the_matrix(matrix_world):
    from django.urls import resolve
    from drf_spectacular.generators import SchemaGenerator

    covered = {(resolve(_path(row, matrix_world)).url_name, row[2]) for row in ROWS}
    names = {name for name, _method in covered}
    routes = [(r, n) for r, n in _routes() if not r.startswith(UNMATRIXED)]
    assert [r for r, n in routes if n not in names] == []
    paths = SchemaGenerator().get_schema(public=True)["paths"]
    operations = {
        (resolve(re.sub(r"{[^}]+}", "1", path)).url_name, method)
        for path, methods in paths.items()
        for method in methods
    }
    assert operations - covered == set()


@pytest.mark.parametrize("role", MATRIX_ROLES)
def test_role_endpoint_matrix(matrix_world, role, api_as, client):
    from django.db import transaction

    member = None if role == "anonymous" else getattr(matrix_world.cast, role)
    api = api_as(member)
    wrong, unexpected_2xx = [], []
    for name, kind, method, _p, body, allowed, hidden, refused_400 in ROWS:
        row = (name, kind, method, _p)
        path = _path(row, matrix_world)
        data = body(matrix_world) if body else None
        with transaction.atomic():
            if kind == "api":
                call = getattr(api, method)
                response = call(path) if method == "get" else call(path, data, format="json")
            else:
                client.logout()  # a row may have signed out or changed the cookies
                if member is not None:
                    sign_in_verified(client, member)  # as approvers must to act
                call = getattr(client, method)
                response = call(path) if method == "get" else call(path, data or {})
            transaction.set_rollback(True)
        code = response.status_code
        if role in allowed:
            expected = allowed[role]
        elif role == "anonymous":
            expected = 401 if kind == "api" else 302
        elif role in hidden:
            expected = 404
        elif role in refused_400:
            expected = 400
        else:
            expected = 403
        if code != expected:
            wrong.append(f"{name}: {code} (expected {expected})")
        if role not in allowed and code < 300:
            unexpected_2xx.append(name)
        if role not in allowed and role == "anonymous" and kind == "web" and code == 302:
            assert response["Location"].startswith("/signin/"), name
        text = b"".join(response) if response.streaming else response.content
        if expected == 404:
            leaked = [secret for secret in SECRETS if secret.encode() in text]
            assert leaked == [], (name, leaked)
            if kind == "api":
                assert response.json() == {"detail": "Not found."}, name
        if role in SOUTH:  # lists, searches and pages of another department show none of East
            leaked = [secret for secret in EAST_ONLY if secret.encode() in text]
            assert leaked == [], (name, leaked)
    FIGURES[role] = len(ROWS)
    FIGURES[f"{role} wrong"] = len(wrong)
    FIGURES[f"{role} unexpected 2xx"] = len(unexpected_2xx)
    assert wrong == [], "\n".join(wrong)
    assert unexpected_2xx == []


def test_methods_without_a_row_are_refused_with_405(matrix_world, api_as, client):
    """Every other method on every matrix route is a 405, for an admin too: a route cannot
    quietly accept a method nobody tested."""
    from django.db import transaction
    from django.urls import resolve

    admin = matrix_world.cast.admin
    api = api_as(admin)
    declared: dict[str, set[str]] = {}
    paths: dict[str, tuple[str, str]] = {}
    for row in ROWS:
        path = _path(row, matrix_world)
        name = resolve(path).url_name
        declared.setdefault(name, set()).add(row[2])
        paths[name] = (row[1], path)
    # Django's own set_language answers every method with a redirect (only a POST sets
    # the language cookie): nothing to refuse.
    del paths["set_language"]
    wrong = []
    for name, (kind, path) in paths.items():
        for method in {"get", "post", "put", "patch", "delete"} - declared[name]:
            with transaction.atomic():
                if kind == "api":
                    response = getattr(api, method)(path)
                else:
                    client.logout()
                    if name != "login":  # signed in, the sign-in page redirects whatever
                        sign_in_verified(client, admin)
                    response = getattr(client, method)(path)
                transaction.set_rollback(True)
            if response.status_code != 405:
                wrong.append(f"{method.upper()} {path}: {response.status_code}")
    assert wrong == [], "\n".join(wrong)


def test_the_preview_panel_shows_no_numbers_of_another_departments_scope(matrix_world, client):
    world = matrix_world
    client.force_login(world.cast.staff2)
    body = {"method": "batch", "departments": [world.org.hangzhou.pk], "reason": "清理"}
    panel = client.post("/requests/preview/", body).content.decode()
    client.force_login(world.cast.staff)
    own = client.post("/requests/preview/", body).content.decode()
    assert 'data-testid="planned-steps"' in own  # the store's own staff see the preview
    assert 'data-testid="preview-errors"' in panel
    assert 'data-testid="planned-steps"' not in panel
    assert not [secret for secret in SECRETS if secret in panel]
