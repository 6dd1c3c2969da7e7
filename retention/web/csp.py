"""Content-Security-Policy on every response, read from Django 6's settings.

Django 5.2 has no CSP of its own. Django 6.0's ``ContentSecurityPolicyMiddleware`` reads
``SECURE_CSP`` / ``SECURE_CSP_REPORT_ONLY`` (a dict of directive → list of sources) and sets
the headers unless a view set them already. This middleware does the same with the same
settings, so moving to Django 6 swaps one line of MIDDLEWARE and deletes this module.
No nonces: nothing of ours is inline (templates and static/js/qingli.js).
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

# Fixed inline blocks in the templates of pinned third-party packages, allowed by hash so
# that their pages work without 'unsafe-inline'. tests/web/test_security_headers.py recomputes
# them from the installed templates, so an upgrade that changes one fails a test.
THIRD_PARTY_SCRIPT_HASHES = [
    # django-rq job lists: $("tr input.action-select").actions();
    "'sha256-1kZe1KRxelr3ptMPsod17Z6BDvbtm4WcufgsZGvsErM='",
]
THIRD_PARTY_STYLE_HASHES = [
    # drf-spectacular's swagger_ui.html: the page's box-sizing and background
    "'sha256-MMpT0iDxyjALd9PdfepImGX3DBfJPXZ4IlDWdPAgtn0='",
    # django-rq: the dashboard's first column; the .data columns of its other pages
    "'sha256-v5MY146GJAjl1QbCe2MklIw9r0xCNOWCEWSPd53tlgQ='",
    "'sha256-KKjBAGERxCMkpnyRzzx30Ft5uJyWEE4TggCMJ9MJhMw='",
    "'sha256-3HT4TFoCN6UZR/IBz5IGZ/l8VEv+BIOqCR558/XA3Jg='",
    # django-rq: two style="" attributes ('unsafe-hashes' allows exactly these, no others)
    "'unsafe-hashes'",
    "'sha256-k21rurKGtu5SGB1OFBbco10qy802mANKUYnLClIu1eQ='",
    "'sha256-BSTKIYoPCaklkJ9YS/ZVYuKW8e+DG8jZJCXznBzHjgg='",
]

HEADERS = {
    "SECURE_CSP": "Content-Security-Policy",
    "SECURE_CSP_REPORT_ONLY": "Content-Security-Policy-Report-Only",
}


def policy_header(policy: dict[str, list[str] | bool]) -> str:
    """``{"default-src": ["'self'"], "upgrade-insecure-requests": True}`` →
    ``default-src 'self'; upgrade-insecure-requests`` (empty or false directives dropped)."""
    parts = []
    for directive, sources in policy.items():
        if sources is True:
            parts.append(directive)
        elif sources:
            parts.append(" ".join([directive, *sources]))
    return "; ".join(parts)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        for setting, header in HEADERS.items():
            policy = getattr(settings, setting, None)
            if policy and header not in response:
                response.headers[header] = policy_header(policy)
        return response
