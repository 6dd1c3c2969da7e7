"""Error pages (DEBUG off): ours, in the visitor's language or in both, never a traceback
or the internals of what went wrong."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import include, path

pytestmark = pytest.mark.django_db

SECRET = "internal detail: do not show"


def boom(request):
    raise RuntimeError(SECRET)


# This module is the URLconf of the 500 test: the product's URLs plus one that fails.
urlpatterns = [path("boom/", boom), path("", include("retention.urls"))]


@pytest.fixture(autouse=True)
def _production_like(settings):
    settings.DEBUG = False


def browser(language: str | None = None, **kwargs) -> Client:
    client = Client(raise_request_exception=False, **kwargs)
    if language:
        client.cookies["django_language"] = language
    return client


def assert_no_internals(body: str) -> None:
    for leak in ("Traceback", SECRET, "DisallowedHost", "Invalid HTTP_HOST", "CSRF token"):
        assert leak not in body, leak


@pytest.mark.parametrize(
    ("language", "words"),
    [(None, "页面不存在"), ("zh-hans", "页面不存在"), ("en", "Not found")],
)
def test_404_speaks_the_chosen_language(cast, language, words):
    client = browser(language)
    client.force_login(cast.staff)
    response = client.get("/conversations/999999/")
    assert response.status_code == 404
    body = response.content.decode()
    assert words in body
    assert 'data-testid="whoami"' in body  # the product's page, navigation and all
    assert_no_internals(body)


@pytest.mark.parametrize(("language", "words"), [("zh-hans", "无权访问"), ("en", "Not allowed")])
def test_403_speaks_the_chosen_language(cast, language, words):
    client = browser(language)
    client.force_login(cast.staff)
    response = client.get("/lockouts/")
    assert response.status_code == 403
    assert words in response.content.decode()
    assert_no_internals(response.content.decode())


def assert_bilingual_page(response, status: int, page: str, chinese: str, english: str):
    """Pages Django renders without a request, so without a chosen language: both."""
    assert response.status_code == status
    body = response.content.decode()
    assert f'data-testid="{page}"' in body
    assert chinese in body and english in body
    assert_no_internals(body)


def test_400_for_a_host_we_do_not_serve_in_both_languages():
    response = browser(HTTP_HOST="evil.example").get("/")
    assert_bilingual_page(response, 400, "error-400", "请求无效", "Bad request")


@pytest.mark.urls(__name__)
def test_500_in_both_languages_without_the_error(cast):
    client = browser("en")
    client.force_login(cast.staff)
    response = client.get("/boom/")
    assert_bilingual_page(response, 500, "error-500", "服务器错误", "Server error")


def test_a_csrf_refusal_says_to_reload_in_both_languages(cast):
    client = Client(enforce_csrf_checks=True)
    client.force_login(cast.staff)
    response = client.post("/notifications/read/")
    assert_bilingual_page(response, 403, "error-csrf", "请刷新页面", "Reload the page")
