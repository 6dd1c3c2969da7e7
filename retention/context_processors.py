from __future__ import annotations

from django.http import HttpRequest
from django.utils.text import capfirst

from retention import second_factor
from retention.roles import Role


def navigation(request: HttpRequest) -> dict:
    """Which sections the signed-in member's roles open, for the navigation bar."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav": {}}
    return {
        "nav": {
            "is_admin": user.has_role(Role.ADMIN),
            "is_auditor": user.has_role(Role.AUDITOR),
            "is_manager": user.has_role(Role.MANAGER),
            "is_security": user.has_role(Role.SECURITY),
            "role_names": [capfirst(Role(r).label) for r in sorted(user.roles) if r in Role.values],
            "second_factor": _second_factor_notice(request, user),
        }
    }


def _second_factor_notice(request: HttpRequest, user) -> str:
    """ "enrol" or "verify" when the member's roles need a second factor that this session
    lacks (the banner that leads there); "" otherwise."""
    is_verified = getattr(user, "is_verified", None)
    if (is_verified and is_verified()) or not second_factor.must_enrol(user):
        return ""
    if not second_factor.is_required():
        return ""
    return "verify" if second_factor.has_device(user) else "enrol"
