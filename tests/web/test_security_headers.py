"""The Content-Security-Policy: on every page, strict, and truthful about what the pages
contain (tests/browser/test_csp.py watches a real browser enforce it)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
from pathlib import Path

import pytest
from django.conf import settings

from retention.web.csp import (
    THIRD_PARTY_SCRIPT_HASHES,
    THIRD_PARTY_STYLE_HASHES,
    policy_header,
)
from tests.conftest import sign_in_verified

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
POLICY = policy_header(settings.SECURE_CSP)


def test_the_policy_is_strict():
    assert POLICY.startswith("default-src 'self'; script-src 'self' 'sha256-")
    for directive in [
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "img-src 'self' data:",
    ]:
        assert directive in POLICY
    assert "'unsafe-inline'" not in POLICY
    assert "'unsafe-eval'" not in POLICY
    assert "*" not in POLICY


def test_the_policy_is_written_like_django_6s():
    assert (
        policy_header({"default-src": ["'self'"], "upgrade-insecure-requests": True, "x": []})
        == "default-src 'self'; upgrade-insecure-requests"
    )


@pytest.mark.parametrize(
    ("url", "status"),
    [("/signin/", 200), ("/", 302), ("/api/docs/", 200), ("/static/js/qingli.js", 200)],
)
def test_every_response_carries_the_policy_signed_out(client, url, status):
    response = client.get(url)
    assert response.status_code == status
    assert response["Content-Security-Policy"] == POLICY


@pytest.mark.parametrize(
    "url", ["/", "/conversations/", "/policies/", "/lockouts/", "/api/v1/me/", "/admin/"]
)
def test_every_response_carries_the_policy_signed_in(client, cast, url):
    cast.admin.is_staff = True
    cast.admin.save()
    sign_in_verified(client, cast.admin)  # the admin site needs the second factor
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == POLICY


def test_the_api_docs_load_their_start_up_script_from_a_file(client):
    page = client.get("/api/docs/").content.decode()
    assert '<script src="/api/docs/?script="></script>' in page
    assert not re.search(r"<script>", page)  # nothing inline
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def inline_blocks(html: str, tag: str) -> list[str]:
    return [
        body
        for attrs, body in re.findall(rf"<{tag}(\s[^>]*)?>(.*?)</{tag}>", html, re.S)
        if "src=" not in (attrs or "")
    ]


def package_templates(package: str, pattern: str) -> list[Path]:
    root = Path(importlib.util.find_spec(package).origin).parent / "templates"
    return sorted(root.glob(pattern))


def test_the_hashes_allow_exactly_the_inline_blocks_of_the_pinned_packages():
    """An upgrade of django-rq or drf-spectacular that changes an inline block fails here
    rather than on an operator's screen; a hash nothing uses any more fails too."""
    scripts, styles = set(), set()
    for template in package_templates("django_rq", "django_rq/*.html") + package_templates(
        "drf_spectacular", "drf_spectacular/swagger_ui.html"
    ):
        html = template.read_text()
        for body in inline_blocks(html, "script"):
            if "{% include template_name_js %}" in body:
                continue  # swagger_ui.html without a script_url: the split view never is
            assert "{%" not in body and "{{" not in body, f"{template}: a templated script"
            scripts.add(sha256(body))
        for body in inline_blocks(html, "style"):
            assert "{%" not in body and "{{" not in body, f"{template}: a templated style"
            styles.add(sha256(body))
        for value in re.findall(r'\sstyle="([^"]*)"', html):
            assert "{" not in value, f"{template}: a templated style attribute"
            styles.add(sha256(value))
    assert scripts == set(THIRD_PARTY_SCRIPT_HASHES)
    assert styles == set(THIRD_PARTY_STYLE_HASHES) - {"'unsafe-hashes'"}


# A downloaded HTML transcript is a file the member opens from disk, not a page we serve:
# its stylesheet has to travel inside it. The report PDF's source is never served either:
# WeasyPrint renders it on the server (retention/report_formats.to_pdf), where no CSP
# applies, and its bars are sized by inline widths.
OUR_FILES_EXCEPT = {"retention/exports/transcript.html", "retention/reports/pdf.html"}


def our_templates() -> list[tuple[str, str]]:
    root = ROOT / "templates"
    return [
        (str(path.relative_to(root)), path.read_text())
        for path in sorted(root.rglob("*.html"))
        if str(path.relative_to(root)) not in OUR_FILES_EXCEPT
    ]


@pytest.mark.parametrize(("name", "html"), our_templates(), ids=lambda v: v[:60])
def test_our_templates_have_nothing_inline_that_the_policy_would_block(name, html):
    assert inline_blocks(html, "script") == [], name
    assert inline_blocks(html, "style") == [], name
    assert not re.search(r"\sstyle=", html), name
    assert not re.search(r"\son[a-z]+\s*=", html), name  # onclick= and friends
    assert "javascript:" not in html, name
    assert "hx-on" not in html, name  # htmx would need eval for these


def test_our_script_needs_no_eval():
    script = (ROOT / "static/js/qingli.js").read_text()
    for forbidden in ("eval(", "new Function", 'setTimeout("', "innerHTML", ".style."):
        assert forbidden not in script
