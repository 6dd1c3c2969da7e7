"""Sign-in throttling: repeated failed sign-ins lock a username and an address out.

django-axes does the counting. Its backend (first in AUTHENTICATION_BACKENDS) refuses
credentials that are locked out inside ``authenticate()``, so the web sign-in, the API's
token endpoint and anything else that authenticates are covered alike; its signal handler
(``AuditingLockoutHandler`` here) counts failures in the database; its middleware turns a
locked-out request into ``lockout_response``. What is ours: the audit event when a lockout
starts, the answer the member sees, the list of lockouts and ``do_lift_lockout``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import log as audit
from audit.events import EventType
from retention.access.predicates import may_lift_lockouts
from retention.models import Member

USERNAME = "username"
ADDRESS = "ip_address"


def failure_limit() -> int:
    return settings.AXES_FAILURE_LIMIT


def cool_off() -> timedelta:
    return settings.AXES_COOLOFF_TIME


def cool_off_minutes() -> int:
    return int(cool_off().total_seconds() // 60)


def via_of(request: HttpRequest) -> str:
    return "api" if request.path.startswith("/api/") else "web"


# --- reads ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lockout:
    kind: str  # USERNAME or ADDRESS
    value: str
    failures: int
    last_failure: datetime
    ends_at: datetime


def _ends_at(attempts: list[tuple[datetime, int]]) -> datetime:
    """When the sum of failures still inside the cool-off drops below the limit."""
    remaining = sum(failures for _time, failures in attempts)
    for time, failures in sorted(attempts):
        remaining -= failures
        if remaining < failure_limit():
            return time + cool_off()
    return max(time for time, _failures in attempts) + cool_off()


def active_lockouts(*, now: datetime | None = None) -> list[Lockout]:
    """Usernames and addresses locked out now, the latest first."""
    since = (now or timezone.now()) - cool_off()
    groups: dict[tuple[str, str], list[tuple[datetime, int]]] = {}
    for row in AccessAttempt.objects.filter(attempt_time__gte=since).values(
        USERNAME, ADDRESS, "attempt_time", "failures_since_start"
    ):
        for kind in (USERNAME, ADDRESS):
            if row[kind]:
                groups.setdefault((kind, row[kind]), []).append(
                    (row["attempt_time"], row["failures_since_start"])
                )
    lockouts = [
        Lockout(
            kind=kind,
            value=value,
            failures=sum(failures for _time, failures in attempts),
            last_failure=max(time for time, _failures in attempts),
            ends_at=_ends_at(attempts),
        )
        for (kind, value), attempts in groups.items()
        if sum(failures for _time, failures in attempts) >= failure_limit()
    ]
    return sorted(lockouts, key=lambda lockout: lockout.last_failure, reverse=True)


def _failures(kind: str, value: str | None, since: datetime) -> int:
    if not value:
        return 0
    return (
        AccessAttempt.objects.filter(attempt_time__gte=since, **{kind: value}).aggregate(
            n=Sum("failures_since_start")
        )["n"]
        or 0
    )


# --- the answer a locked-out sign-in gets ---------------------------------------------------


def lockout_message() -> str:
    return _(
        "Too many failed sign-ins for this account or from this address. Signing in is "
        "paused for %(minutes)d minutes; an admin can lift the pause sooner."
    ) % {"minutes": cool_off_minutes()}


def lockout_response(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict | None = None,
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: 429 with a page in the browser, ``{"detail": ...}`` in the API.

    The same words whether or not the username exists, so it tells nobody which do."""
    retry_after = str(int(cool_off().total_seconds()))
    if via_of(request) == "api":
        response = JsonResponse({"detail": lockout_message()}, status=429)
    else:
        response = render(
            request,
            "registration/locked_out.html",
            {"message": lockout_message(), "minutes": cool_off_minutes()},
            status=429,
        )
    response["Retry-After"] = retry_after
    return response


# --- writes -------------------------------------------------------------------------------


def do_record_lockout(*, request: HttpRequest, username: str | None) -> None:
    """Audit the moment a username or an address becomes locked out (once per lockout)."""
    since = timezone.now() - cool_off()
    address = getattr(request, "axes_ip_address", None)
    by_username = _failures(USERNAME, username, since)
    by_address = _failures(ADDRESS, address, since)
    locked = [
        kind
        for kind, failures in ((USERNAME, by_username), (ADDRESS, by_address))
        if failures >= failure_limit()
    ]
    audit.record(
        EventType.SIGN_IN_LOCKED_OUT,
        target_type="retention.member",
        target_id=str(username or "")[:64],
        ip_address=address,
        details={
            "username": str(username or "")[:150],
            "locked": locked,
            "failures": {USERNAME: by_username, ADDRESS: by_address},
            "limit": failure_limit(),
            "cool_off_minutes": cool_off_minutes(),
            "via": via_of(request),
        },
    )


def do_lift_lockout(*, actor: Member, username: str = "", ip_address: str = "") -> int:
    """An admin clears the failed sign-ins of a username and/or an address, which ends their
    lockout at once. Audited with what was cleared; returns how many records went."""
    if not may_lift_lockouts(actor):
        raise PermissionDenied(_("Only an admin may lift a sign-in lockout."))
    username = (username or "").strip()
    ip_address = (ip_address or "").strip()
    errors: dict[str, list[str]] = {}
    if not username and not ip_address:
        errors[USERNAME] = [_("Name a username or an address.")]
    if ip_address:
        try:
            ip_address = str(ipaddress.ip_address(ip_address))
        except ValueError:
            errors[ADDRESS] = [_("Not an IP address.")]
    if errors:
        raise ValidationError(errors)
    since = timezone.now() - cool_off()
    match = Q()
    if username:
        match |= Q(username=username)
    if ip_address:
        match |= Q(ip_address=ip_address)
    with transaction.atomic():
        was_locked = [
            kind
            for kind, value in ((USERNAME, username), (ADDRESS, ip_address))
            if _failures(kind, value, since) >= failure_limit()
        ]
        _total, deleted = AccessAttempt.objects.filter(match).delete()
        cleared = deleted.get(AccessAttempt._meta.label, 0)
        if not cleared:
            raise ValidationError(
                {USERNAME if username else ADDRESS: [_("No failed sign-ins are recorded here.")]}
            )
        member = Member.objects.filter(username=username).first() if username else None
        audit.record(
            EventType.SIGN_IN_LOCKOUT_LIFTED,
            actor=actor,
            target=member,
            target_type="retention.member",
            target_id=username[:64],
            department_id=member.department_id if member else None,
            ip_address=ip_address or None,
            details={
                USERNAME: username[:150],
                ADDRESS: ip_address,
                "was_locked": was_locked,
                "records_cleared": cleared,
            },
        )
    return cleared


# --- the django-axes handler ----------------------------------------------------------------


class AuditingLockoutHandler(AxesDatabaseHandler):
    """Axes' database handler, plus one audit event when a sign-in attempt starts a lockout.

    ``request.axes_locked_out`` is already true when the attempt was refused because of an
    earlier lockout (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False): no new event.
    """

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs) -> None:
        was_locked = bool(getattr(request, "axes_locked_out", False))
        super().user_login_failed(sender, credentials, request, **kwargs)
        if request is not None and request.axes_locked_out and not was_locked:
            do_record_lockout(request=request, username=get_client_username(request, credentials))
