"""The documented production variables (docs/configuration.md) give settings that pass
Django's deploy checks, and responses that carry the security headers and cookie flags."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# As docs/configuration.md lists them. Nothing here opens a connection: the database and
# Redis addresses only have to parse.
PRODUCTION_ENV = {
    "SECRET_KEY": secrets.token_urlsafe(60),
    "QINGLI_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
    "QINGLI_HTTPS": "true",
    "DEBUG": "false",
    "ALLOWED_HOSTS": "qingli.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://qingli.example.com",
    "DATABASE_URL": "postgres://qingli@127.0.0.1:5432/qingli",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}
# Only what a production shell would have: none of the test run's own variables.
TEST_ONLY = {"DJANGO_ALLOW_ASYNC_UNSAFE", "QINGLI_PROXY_COUNT", "QINGLI_SSL_REDIRECT"}


def run(args: list[str], extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV and k not in TEST_ONLY}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**env, **extra_env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_check(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    return run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], extra_env)


def test_check_deploy_passes_with_the_documented_production_variables():
    done = run_check(PRODUCTION_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_check_deploy_fails_without_https():
    done = run_check({**PRODUCTION_ENV, "QINGLI_HTTPS": "false"})
    assert done.returncode != 0
    assert "SECURE_HSTS_SECONDS" in done.stdout + done.stderr


# Runs in a production-configured process: a page and the language switch over HTTPS.
PROBE = """
import json, django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="qingli.example.com")
page = client.get("/signin/", secure=True)
switched = client.post("/i18n/setlang/", {"language": "en", "next": "/"}, secure=True)
plain = client.get("/signin/")
cookies = {**page.cookies, **switched.cookies}
print(json.dumps({
    "status": page.status_code,
    "headers": dict(page.headers),
    "cookies": {name: {"secure": bool(c["secure"]), "httponly": bool(c["httponly"]),
                       "samesite": c["samesite"]} for name, c in cookies.items()},
    "plain_http": [plain.status_code, plain.headers.get("Location")],
}))
"""


def test_production_responses_carry_the_security_headers_and_cookie_flags():
    done = run(["-c", PROBE], {**PRODUCTION_ENV, "DJANGO_SETTINGS_MODULE": "retention.settings"})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["status"] == 200
    headers = seen["headers"]
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    csp = headers["Content-Security-Policy"]
    for directive in [
        "default-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]:
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    # Every cookie we set: HTTPS only, out of reach of scripts.
    assert set(seen["cookies"]) == {"csrftoken", "django_language"}
    for name, flags in seen["cookies"].items():
        assert flags == {"secure": True, "httponly": True, "samesite": "Lax"}, name
    # Plain HTTP is sent to HTTPS.
    assert seen["plain_http"] == [301, "https://qingli.example.com/signin/"]


def test_the_openapi_schema_generates_without_warnings():
    done = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "/api/v1/ingest/messages/" in done.stdout
