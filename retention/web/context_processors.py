from __future__ import annotations

from django.http import HttpRequest
from django.utils.text import capfirst

from audit.verification import latest_verification
from retention.access import second_factor
from retention.access.predicates import may_read_audit_log
from retention.models.roles import Role


def navigation(request: HttpRequest) -> dict:
    """Which sections the signed-in member's roles open, for the navigation bar."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav": {}}
    reads_audit_log = may_read_audit_log(user)
    return {
        "nav": {
            "reads_audit_log": reads_audit_log,
            # The chain-status badge of the auditor's and admin's pages: one query.
            "chain": latest_verification() if reads_audit_log else None,
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
