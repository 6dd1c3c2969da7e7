"""Admin-editable policies: their keys, defaults (from the platform Qingli replaces),
validation, and the run-time arithmetic they drive (quota, eligibility, schedule, cost).

Every package reads policies, so this module imports only the models; changing them is
``retention.governance.policy_changes``."""

from __future__ import annotations

import copy
from datetime import date, datetime, time, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from retention.models import Member, Policy, QuotaGrant, SignInDay
from retention.models.roles import APPROVER_ROLES

DEFAULTS: dict[str, Any] = {
    "personal_monthly_quota": 10,
    "batch_min_consecutive_signin_days": 3,
    "batch_delay_hours": 24,
    "server_delay_hours": 72,
    # Local time; start after end means the window crosses midnight. None: any time.
    "execution_window": {"start": "22:00", "end": "06:00"},
    "recycle_bin_days": 7,
    # Ascending by volume; the last tier has no upper bound.
    "server_cost_tiers": [
        {"up_to_messages": 100_000, "cny": 500},
        {"up_to_messages": 1_000_000, "cny": 1000},
        {"up_to_messages": None, "cny": 2000},
    ],
    "approval_chains": {"batch": ["manager"], "server": ["manager", "security", "admin"]},
    "retention_grace_days": 7,
    "approval_expiry_days": 14,
    # Days an export's file is kept before it is deleted and its key destroyed.
    "export_keep_days": 30,
    # Days an auditor has to sign off or flag a permanent deletion's compliance review.
    "review_due_days": 14,
    # Approving, holds, policy changes, restores and rule changes need a verified TOTP
    # second factor (see retention.access.second_factor). Only the demo switches it off.
    "require_second_factor": True,
    # A browser session unused this long ends (SESSION_COOKIE_AGE caps it regardless).
    "session_idle_minutes": 30,
    # A member whose personal deletions within the window reach the threshold has further
    # personal deletions held for their manager to approve. Threshold 0: no such check.
    "frequent_deletion_threshold": 20,
    "frequent_deletion_window_hours": 24,
    # The quarterly report's anomalies: a person with more deletions than this in the
    # quarter, an approval decided within these seconds of its step becoming due, a
    # restore within these hours of the records' purge.
    "report_person_deletions_threshold": 20,
    "report_fast_approval_seconds": 60,
    "report_near_purge_hours": 24,
}


# Stored as {"v": value}: a policy may be null ("any time"), which a bare JSON column
# could not tell apart from "never set".
def get_policy(key: str) -> Any:
    if key not in DEFAULTS:
        raise KeyError(key)
    row = Policy.objects.filter(key=key).values_list("value", flat=True).first()
    return copy.deepcopy(DEFAULTS[key] if row is None else row["v"])


def all_policies() -> dict[str, Any]:
    stored = {key: value["v"] for key, value in Policy.objects.values_list("key", "value")}
    return {key: copy.deepcopy(stored.get(key, default)) for key, default in DEFAULTS.items()}


# --- validation -------------------------------------------------------------------------


def _non_negative_int(value: Any, *, maximum: int, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        if minimum:
            raise ValidationError(
                _("Must be a whole number from %(min)d to %(max)d.")
                % {"min": minimum, "max": maximum}
            )
        raise ValidationError(_("Must be a whole number from 0 to %(max)d.") % {"max": maximum})
    return value


def _clock(value: Any) -> str:
    try:
        parsed = datetime.strptime(value, "%H:%M")
    except (TypeError, ValueError) as exc:
        raise ValidationError(_("Times are written HH:MM, e.g. 22:00.")) from exc
    return parsed.strftime("%H:%M")


def _window(value: Any) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"start", "end"}:
        raise ValidationError(_('Give {"start": "HH:MM", "end": "HH:MM"}, or null for any time.'))
    start, end = _clock(value["start"]), _clock(value["end"])
    if start == end:
        raise ValidationError(_("The window's start and end must differ."))
    return {"start": start, "end": end}


def _tiers(value: Any) -> list:
    if not isinstance(value, list) or not value:
        raise ValidationError(_("Give a list of tiers."))
    previous = 0
    for i, tier in enumerate(value):
        if not isinstance(tier, dict) or set(tier) != {"up_to_messages", "cny"}:
            raise ValidationError(_('Each tier is {"up_to_messages": N or null, "cny": N}.'))
        _non_negative_int(tier["cny"], maximum=10_000_000)
        last = i == len(value) - 1
        bound = tier["up_to_messages"]
        if last and bound is not None:
            raise ValidationError(_("The last tier has no upper bound (null)."))
        if not last:
            _non_negative_int(bound, maximum=10**12)
            if bound <= previous:
                raise ValidationError(_("Tiers must be in ascending order of volume."))
            previous = bound
    return value


def _chains(value: Any) -> dict:
    if not isinstance(value, dict) or set(value) != {"batch", "server"}:
        raise ValidationError(_('Give {"batch": [roles], "server": [roles]}.'))
    for method, roles in value.items():
        if not isinstance(roles, list) or not roles:
            raise ValidationError(
                _("The %(method)s chain needs at least one step.") % {"method": method}
            )
        unknown = [r for r in roles if not isinstance(r, str) or r not in APPROVER_ROLES]
        if unknown:
            raise ValidationError(
                _("Unknown approver role %(role)s; use manager, security or admin.")
                % {"role": unknown[0]}
            )
    if len(value["server"]) < 2:
        raise ValidationError(_("A server-side wipe needs at least two approval steps."))
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(_("Must be true or false."))
    return value


VALIDATORS = {
    "personal_monthly_quota": lambda v: _non_negative_int(v, maximum=1000),
    "batch_min_consecutive_signin_days": lambda v: _non_negative_int(v, maximum=365),
    "batch_delay_hours": lambda v: _non_negative_int(v, maximum=24 * 90),
    "server_delay_hours": lambda v: _non_negative_int(v, maximum=24 * 90),
    "execution_window": _window,
    "recycle_bin_days": lambda v: _non_negative_int(v, maximum=365),
    "server_cost_tiers": _tiers,
    "approval_chains": _chains,
    "retention_grace_days": lambda v: _non_negative_int(v, maximum=365),
    "approval_expiry_days": lambda v: _non_negative_int(v, maximum=365),
    "export_keep_days": lambda v: _non_negative_int(v, minimum=1, maximum=3650),
    "review_due_days": lambda v: _non_negative_int(v, minimum=1, maximum=365),
    "require_second_factor": _boolean,
    "session_idle_minutes": lambda v: _non_negative_int(v, minimum=1, maximum=24 * 60),
    "frequent_deletion_threshold": lambda v: _non_negative_int(v, maximum=1000),
    "frequent_deletion_window_hours": lambda v: _non_negative_int(v, minimum=1, maximum=24 * 90),
    "report_person_deletions_threshold": lambda v: _non_negative_int(v, maximum=100_000),
    "report_fast_approval_seconds": lambda v: _non_negative_int(v, maximum=24 * 3600),
    "report_near_purge_hours": lambda v: _non_negative_int(v, maximum=24 * 365),
}


def validate_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Every change checked; all problems reported together, keyed by policy."""
    if not isinstance(changes, dict) or not changes:
        raise ValidationError({"policies": [_("Send at least one policy to change.")]})
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, Any] = {}
    for key, value in changes.items():
        if key not in VALIDATORS:
            errors[key] = [_("Unknown policy.")]
            continue
        try:
            cleaned[key] = VALIDATORS[key](value)
        except ValidationError as exc:
            errors[key] = exc.messages
    if errors:
        raise ValidationError(errors)
    return cleaned


# --- quota and eligibility --------------------------------------------------------------


def month_start(day: date) -> date:
    return day.replace(day=1)


def personal_quota(member: Member, *, today: date | None = None) -> int:
    today = today or timezone.localdate()
    extra = (
        QuotaGrant.objects.filter(member=member, month=month_start(today)).aggregate(
            n=Sum("extra")
        )["n"]
        or 0
    )
    return get_policy("personal_monthly_quota") + extra


def consecutive_signin_days(member: Member, *, today: date | None = None) -> int:
    """Length of the streak of sign-in days ending today (or yesterday, if not yet today)."""
    today = today or timezone.localdate()
    days = set(
        SignInDay.objects.filter(member=member, day__gte=today - timedelta(days=400)).values_list(
            "day", flat=True
        )
    )
    day = today if today in days else today - timedelta(days=1)
    streak = 0
    while day in days:
        streak += 1
        day -= timedelta(days=1)
    return streak


# --- schedule and cost ------------------------------------------------------------------


def first_run_time(earliest: datetime, window: dict | None) -> datetime:
    """The first moment at or after ``earliest`` inside the execution window (local time)."""
    if window is None:
        return earliest
    tz = timezone.get_current_timezone()
    local = timezone.localtime(earliest, tz)
    start = time.fromisoformat(window["start"])
    end = time.fromisoformat(window["end"])
    now_t = local.time()
    inside = (start <= now_t < end) if start < end else (now_t >= start or now_t < end)
    if inside:
        return earliest
    candidate = datetime.combine(local.date(), start, tzinfo=tz)
    if candidate < local:
        candidate += timedelta(days=1)
    return candidate


def scheduled_run_time(method: str, approved_at: datetime) -> datetime:
    delay_key = "server_delay_hours" if method == "server" else "batch_delay_hours"
    earliest = approved_at + timedelta(hours=get_policy(delay_key))
    return first_run_time(earliest, get_policy("execution_window"))


def server_cost_cny(messages: int) -> int:
    for tier in get_policy("server_cost_tiers"):
        if tier["up_to_messages"] is None or messages <= tier["up_to_messages"]:
            return tier["cny"]
    return get_policy("server_cost_tiers")[-1]["cny"]
