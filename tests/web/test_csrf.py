"""Every URL refuses a POST without a CSRF token from a signed-in browser, and takes one with
it. The URLs come from the URLconf itself, so a view added later cannot slip by."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLResolver, get_resolver, resolve

from retention.models.roles import Role
from tests.conftest import make_member

pytestmark = pytest.mark.django_db

# Sample values for the URLs' parameters. Objects need not exist: the CSRF check comes
# before the view.
SAMPLES = {
    "int": "0",
    "str": "x",
    "path": "x",
    "rule_action": "approve",
    "review_decision": "sign-off",
    "report_format": "csv",
}
# Not protected by CSRF, on purpose: it takes credentials, not a cookie, and sets none.
EXEMPT = {"/api/v1/auth/token/"}


def all_routes(resolver: URLResolver | None = None, prefix: str = ""):
    for pattern in (resolver or get_resolver()).url_patterns:
        if isinstance(pattern, URLResolver):
            yield from all_routes(pattern, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern)


def concrete(route: str) -> str:
    path = re.sub(r"\(\?P<app_label>[^)]*\)", "retention", route)
    path = re.sub(r"\(\?P<\w+>[^)]*\)\??", "x", path)
    path = re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLES[m.group(1) or "str"], path)
    return "/" + path.replace("^", "").replace("$", "").replace("/?", "/").replace("\\", "")


ROUTES = sorted(set(all_routes()))
PATHS = {route: concrete(route) for route in ROUTES}


def test_every_route_is_covered_by_a_path_that_reaches_it():
    assert len(ROUTES) > 100
    for route, path in PATHS.items():
        assert resolve(path).route == route.replace("^", ""), (route, path)


def is_csrf_refusal(response) -> bool:
    """Django's refusal (templates/403_csrf.html) or DRF's ("CSRF Failed: ...")."""
    if response.streaming:  # a download: a refusal is never streamed
        return False
    body = response.content.decode()
    return response.status_code == 403 and (
        'data-testid="error-csrf"' in body or "CSRF Failed" in body
    )


@pytest.fixture
def browser(org):
    # Every role that may change anything (auditors are read-only: an auditor files
    # nothing), and the admin site: as few refusals for other reasons as there can be.
    member = make_member("everyone", org.company, *(r for r in Role if r != Role.AUDITOR))
    member.is_staff = True
    member.save()
    # A view that fails on the made-up ids still passed the CSRF check: a 500 is an answer.
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.force_login(member)
    page = client.get("/")
    assert page.status_code == 200
    client.csrf_token = re.search(r'"X-CSRFToken": "(\w+)"', page.content.decode()).group(1)
    return client


def post(client: Client, path: str, **headers):
    if path.startswith("/api/"):  # JSON, which is what those views parse
        return client.post(path, {}, content_type="application/json", **headers)
    return client.post(path, {"reason": "x"}, **headers)


# Refused with the token too, for reasons that are not CSRF: things nobody may do there
# (conversations come in through ingest and leave through requests; API tokens are not
# configured in the admin) and the RQ dashboard's model admin, which only links onward.
FORBIDDEN_ANYWAY = {
    "/admin/retention/conversation/add/",
    "/admin/retention/conversation/x/delete/",
    "/admin/authtoken/tokenproxy/",
    "/admin/authtoken/tokenproxy/add/",
    "/admin/authtoken/tokenproxy/x/change/",
    "/admin/authtoken/tokenproxy/x/delete/",
    "/admin/django_rq/dashboard/add/",
    "/admin/django_rq/dashboard/x/delete/",
}


@pytest.mark.parametrize("route", ROUTES)
def test_a_post_without_a_csrf_token_is_refused(browser, route):
    path = PATHS[route]
    response = post(browser, path)
    if path in EXEMPT:
        assert not is_csrf_refusal(response)
    else:
        assert is_csrf_refusal(response), (path, response.status_code)


@pytest.mark.parametrize("route", ROUTES)
def test_the_same_post_with_the_token_is_not_refused(browser, route):
    path = PATHS[route]
    response = post(browser, path, HTTP_X_CSRFTOKEN=browser.csrf_token)
    assert not is_csrf_refusal(response), path
    if path not in FORBIDDEN_ANYWAY:
        assert response.status_code != 403, (path, getattr(response, "content", b"")[:300])
