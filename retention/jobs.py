"""Queue jobs of the retention domain: thin, taking ids or nothing, calling a service."""

from __future__ import annotations

from retention.deletion.actions import do_expire_stale_requests


def expire_stale_requests() -> int:
    """Pending requests nobody decided in time expire (safe to run at any moment)."""
    return do_expire_stale_requests()
