"""Sign-ins, sign-outs and expired sessions as the audit log and the sign-in streaks see
them. Each writes its audit event in the transaction that records the day."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from audit import log as audit
from audit.events import EventType
from retention.models import Member, SignInDay


def do_record_sign_in(*, member: Member, request: HttpRequest | None, via: str = "web") -> None:
    """Audit a successful sign-in and count the day toward sign-in streaks."""
    with transaction.atomic():
        SignInDay.objects.get_or_create(member=member, day=timezone.localdate())
        audit.record(
            EventType.SIGN_IN if via == "web" else EventType.TOKEN_ISSUED,
            actor=member,
            target=member,
            department_id=member.department_id,
            ip_address=audit.client_ip(request) if request else None,
            details={"via": via},
        )


def _record_session_end(
    event_type: EventType, *, member: Member, request: HttpRequest | None, **details
) -> None:
    audit.record(
        event_type,
        actor=member,
        target=member,
        department_id=member.department_id,
        ip_address=audit.client_ip(request) if request else None,
        details=details,
    )


def do_record_sign_out(*, member: Member, request: HttpRequest | None) -> None:
    _record_session_end(EventType.SIGN_OUT, member=member, request=request)


def do_record_session_expired(
    *, member: Member, request: HttpRequest | None, idle_minutes: int
) -> None:
    """A browser session ended because it went unused (retention/web/sessions.py)."""
    _record_session_end(
        EventType.SESSION_EXPIRED, member=member, request=request, idle_minutes=idle_minutes
    )


def do_record_failed_sign_in(
    *, username: str, request: HttpRequest | None, via: str = "web"
) -> None:
    # The attempted name is kept (truncated): it is how guessing attacks show in the log.
    # ``locked_out``: the sign-in was refused by a lockout, or this failure started one.
    audit.record(
        EventType.SIGN_IN_FAILED if via == "web" else EventType.TOKEN_REFUSED,
        target_type="retention.member",
        target_id=str(username)[:64],
        ip_address=audit.client_ip(request) if request else None,
        details={
            "username": str(username)[:150],
            "via": via,
            "locked_out": bool(getattr(request, "axes_locked_out", False)),
        },
    )
