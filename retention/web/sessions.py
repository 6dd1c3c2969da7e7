"""Browser sessions end when they should.

- Signing in rotates the session key (Django's ``login()``) and starts the session's clock.
- Signing out flushes the session (Django's ``logout()``). A password change, by the member
  or by an admin, ends the member's other sessions: Django compares each session's copy of
  the password hash on every request.
- A session unused for the policy ``session_idle_minutes`` ends at its next request
  (use is counted to the half-minute). Background polls — the navigation badges, a
  progress bar — are not use: an open, forgotten tab does not keep a session alive.
- However busy, a session ends ``SESSION_COOKIE_AGE`` after sign-in: its expiry is set
  once, as a moment, so later saves of the session do not push it back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, resolve_url
from django.utils import timezone
from django.utils.translation import gettext as _

from retention.access.activity import do_record_session_expired
from retention.policies import get_policy

SIGNED_IN_AT = "qingli_signed_in_at"
LAST_USED = "qingli_last_used"
TOUCH_EVERY_SECONDS = 30
BACKGROUND_URL_NAMES = frozenset({"nav-counts", "request-progress"})


def start_session_clock(request: HttpRequest) -> None:
    now = time.time()
    request.session[SIGNED_IN_AT] = now
    request.session[LAST_USED] = now
    request.session.set_expiry(timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE))


def on_sign_in(sender, request: HttpRequest | None, user, **kwargs) -> None:
    """``user_logged_in`` receiver: every way of signing in starts the clock."""
    if request is not None and hasattr(request, "session"):
        start_session_clock(request)


class IdleSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None  # anonymous, or an API token (no session)
        session = request.session
        if LAST_USED not in session:  # a session from before this middleware
            start_session_clock(request)
            return None
        now = time.time()
        idle = now - session[LAST_USED]
        # The policy is read only past its smallest value (a minute): most requests of a
        # session in use come sooner, and skip the query.
        if idle > 60:
            limit_minutes = get_policy("session_idle_minutes")
            if idle > limit_minutes * 60:
                return self.expire(request, idle_minutes=int(idle // 60), limit=limit_minutes)
        match = request.resolver_match
        background = match is not None and match.url_name in BACKGROUND_URL_NAMES
        if not background and idle >= TOUCH_EVERY_SECONDS:
            session[LAST_USED] = now
        return None

    def expire(self, request: HttpRequest, *, idle_minutes: int, limit: int):
        do_record_session_expired(member=request.user, request=request, idle_minutes=idle_minutes)
        logout(request)
        if request.path.startswith("/api/"):
            return None  # carries on signed out: the API answers 403 as to anyone
        messages.info(
            request,
            _("You were signed out after %(minutes)d minutes without activity.")
            % {"minutes": limit},
        )
        back_to = request.get_full_path() if request.method == "GET" else "/"
        if request.headers.get("HX-Request"):
            # A fragment request (e.g. the badges' poll): send the whole page to sign-in.
            back_to = request.headers.get("HX-Current-URL") or "/"
        sign_in = f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'next': back_to})}"
        if request.headers.get("HX-Request"):
            response = HttpResponse(status=200)
            response["HX-Redirect"] = sign_in
            return response
        return redirect(sign_in)
