"""Changing policies and granting extra personal-deletion quota: admin actions, each
checked (role and second factor), stored and audited in one transaction. The values and
their validation live in ``retention.policies``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import log as audit
from audit.events import EventType
from retention.access import predicates
from retention.access.second_factor import enforce
from retention.models import Member, Policy, QuotaGrant
from retention.policies import all_policies, get_policy, month_start, validate_changes


def do_update_policies(
    *, actor: Member, changes: dict[str, Any], verified_second_factor: bool
) -> dict[str, Any]:
    """Admins change policies; each change is audited with its old and new value."""

    if not predicates.may_change_policies(actor):
        raise PermissionDenied(_("Only an admin may change policies."))
    enforce(actor, verified_second_factor=verified_second_factor, action="update-policies")
    cleaned = validate_changes(changes)
    with transaction.atomic():
        _store(cleaned, actor=actor, details={})
    return all_policies()


def do_operator_set_policies(*, changes: dict[str, Any], via: str) -> dict[str, Any]:
    """Policies set by an operator at the server's shell through a management command
    (``via`` names it), not by a member: no role or second factor applies, and the audit
    event has no actor. Never call this from a page or the API."""
    cleaned = validate_changes(changes)
    with transaction.atomic():
        _store(cleaned, actor=None, details={"via": via})
    return all_policies()


def _store(cleaned: dict[str, Any], *, actor: Member | None, details: dict[str, Any]) -> None:
    for key, new in cleaned.items():
        old = get_policy(key)
        if old == new:
            continue
        Policy.objects.update_or_create(
            key=key, defaults={"value": {"v": new}, "updated_by": actor}
        )
        audit.record(
            EventType.POLICY_CHANGED,
            actor=actor,
            target_type="retention.policy",
            target_id=key,
            details={"key": key, "old": old, "new": new, **details},
        )


def do_grant_quota(
    *, actor: Member, member: Member, extra: int, reason: str, verified_second_factor: bool
) -> QuotaGrant:

    if not predicates.may_grant_quota(actor):
        raise PermissionDenied(_("Only an admin may grant more personal deletions."))
    enforce(actor, verified_second_factor=verified_second_factor, action="grant-quota")
    errors = {}
    if isinstance(extra, bool) or not isinstance(extra, int) or not 1 <= extra <= 1000:
        errors["extra"] = [_("Must be a whole number from 1 to 1000.")]
    if not (reason or "").strip():
        errors["reason"] = [_("Say why the member needs more.")]
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        grant = QuotaGrant.objects.create(
            member=member,
            month=month_start(timezone.localdate()),
            extra=extra,
            reason=reason.strip(),
            granted_by=actor,
        )
        audit.record(
            EventType.QUOTA_GRANTED,
            actor=actor,
            target=member,
            department_id=member.department_id,
            details={"extra": extra, "reason": grant.reason, "month": grant.month.isoformat()},
        )
    return grant
