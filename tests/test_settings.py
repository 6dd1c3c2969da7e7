"""The documented production variables give settings that pass Django's deploy checks."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION_ENV = {
    "SECRET_KEY": secrets.token_urlsafe(60),
    "QINGLI_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
    "QINGLI_HTTPS": "true",
    "DEBUG": "false",
    "ALLOWED_HOSTS": "qingli.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://qingli.example.com",
}


def run_check(extra_env: dict[str, str]) -> subprocess.CompletedProcess:
    # Only what a production shell would have: no test-only switches such as the browser
    # tests' DJANGO_ALLOW_ASYNC_UNSAFE.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in PRODUCTION_ENV and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**env, **extra_env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_the_documented_production_variables():
    done = run_check(PRODUCTION_ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_check_deploy_fails_without_https():
    done = run_check({**PRODUCTION_ENV, "QINGLI_HTTPS": "false"})
    assert done.returncode != 0
    assert "SECURE_HSTS_SECONDS" in done.stdout + done.stderr


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
