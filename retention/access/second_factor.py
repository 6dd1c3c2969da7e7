"""The second factor: TOTP authenticators (django-otp), and the rule that sensitive
actions need one.

Who must have one: admins, security officers and managers (everyone who may approve,
hold, change policies or restore). What needs it: every action that calls
:func:`enforce` — approving or rejecting a step, placing or releasing a hold, changing
policies or granting quota, restoring from the recycle bin, approving or relaxing a
retention rule, protecting conversations, resetting someone's authenticator. While the
``require_second_factor`` policy is on (the default), those actions refuse an actor whose
session (or API token) has not passed a TOTP check.

The verification state reaches the services explicitly, as the required keyword
``verified_second_factor``: pages compute it with :func:`verified`, from the session
(``request.user.is_verified()``) or from the API token that authenticated the request.
"""

from __future__ import annotations

import base64
import time
from binascii import unhexlify

import segno
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp.util import random_hex

from audit import log as audit
from audit.events import EventType
from retention.access.predicates import is_approver, may_oversee_authenticators
from retention.errors import Conflict
from retention.models import ApiToken, Member
from retention.policies import get_policy

DIGITS = 6
STEP_SECONDS = 30
DEVICE_NAME = "authenticator"


class SecondFactorRequired(PermissionDenied):
    """A sensitive action by an actor whose session or token has no verified second
    factor (HTTP 403)."""


# --- who and what ------------------------------------------------------------------------------


def is_required() -> bool:
    return bool(get_policy("require_second_factor"))


def must_enrol(member: Member) -> bool:
    """Whether the member's roles let them take actions that need a second factor."""
    return member.is_authenticated and is_approver(member)


def confirmed_device(member: Member) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=member, confirmed=True).order_by("pk").first()


def has_device(member: Member) -> bool:
    return TOTPDevice.objects.filter(user=member, confirmed=True).exists()


def verified(request: HttpRequest) -> bool:
    """Whether this request's credentials passed a second-factor check: the API token it
    authenticated with was issued after one, or the session was verified with a code."""
    token = getattr(request, "auth", None)
    if isinstance(token, ApiToken):
        return token.second_factor_verified
    if token is not None:  # some other credential: never verified
        return False
    is_verified = getattr(request.user, "is_verified", None)
    return bool(is_verified and is_verified())


def enforce(member: Member, *, verified_second_factor: bool, action: str) -> None:
    """Refuse a sensitive ``action`` without a verified second factor while the policy
    requires one; the refusal is audited in a transaction of its own."""
    if verified_second_factor is True or not is_required():
        return
    with transaction.atomic():
        audit.record(
            EventType.SECOND_FACTOR_MISSING,
            actor=member,
            target=member,
            department_id=member.department_id,
            details={"action": action, "enrolled": has_device(member)},
        )
    raise SecondFactorRequired(
        _(
            "This action needs your second factor. In the browser, confirm it with the "
            "code from your authenticator app (or set one up first); through the API, use "
            "a token issued with an authenticator code (the otp field)."
        )
    )


# --- codes -------------------------------------------------------------------------------------


def clean_code(code: object) -> str:
    """The code as six digits (spaces allowed between them), or a form error."""
    text = "".join(str(code or "").split())
    if len(text) != DIGITS or not text.isdigit():
        raise ValidationError(_("Enter the 6-digit code from your authenticator app."))
    return text


def _record_failure(member: Member, request: HttpRequest | None, **details: object) -> None:
    with transaction.atomic():
        audit.record(
            EventType.SECOND_FACTOR_FAILED,
            actor=member,
            target=member,
            department_id=member.department_id,
            ip_address=audit.client_ip(request) if request else None,
            details=details,
        )


def check_code(
    member: Member, code: object, *, request: HttpRequest | None, via: str
) -> TOTPDevice:
    """The member's confirmed authenticator if ``code`` is its current code. A wrong,
    reused or throttled code is audited and raises ValidationError; so does a member
    without an authenticator. Each code works once (django-otp keeps the last time step),
    and wrong codes slow further tries down exponentially (django-otp's throttling)."""
    text = clean_code(code)
    device = confirmed_device(member)
    if device is None:
        raise ValidationError(_("You have no authenticator set up."))
    # Committed whatever the outcome: a wrong code's throttling must outlive the refusal.
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        allowed, throttle = device.verify_is_allowed()
        accepted = allowed and device.verify_token(text)
    if accepted:
        return device
    _record_failure(member, request, via=via, throttled=not allowed)
    if not allowed and throttle and throttle.get("locked_until"):
        wait = max(1, int((throttle["locked_until"] - timezone.now()).total_seconds()) + 1)
        raise ValidationError(
            _("Too many wrong codes. Wait %(seconds)d seconds, then try again.") % {"seconds": wait}
        )
    raise ValidationError(_("That code is not correct (or was already used). Try the next one."))


# --- enrolment -------------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh TOTP secret (hex, 20 bytes), held in the session until it is confirmed."""
    return random_hex(20)


def secret_for_humans(key_hex: str) -> str:
    """The secret as authenticator apps take it by hand: base32, in groups of four."""
    b32 = base64.b32encode(unhexlify(key_hex)).decode().rstrip("=")
    return " ".join(b32[i : i + 4] for i in range(0, len(b32), 4))


def provisioning_uri(member: Member, key_hex: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    device = TOTPDevice(user=member, key=key_hex, digits=DIGITS, step=STEP_SECONDS)
    return device.config_url


def qr_svg(uri: str) -> str:
    """The QR code of ``uri`` as an inline SVG element (drawn here, nothing fetched)."""
    return segno.make(uri, error="m").svg_inline(scale=5, border=2, dark="#1d2330")


def do_enrol(
    member: Member, *, key_hex: str, code: object, request: HttpRequest | None
) -> TOTPDevice:
    """Confirm an authenticator: ``code`` must be its current code for ``key_hex``. One
    authenticator per member; replacing it means removing the old one first."""
    text = clean_code(code)
    try:
        key = unhexlify(key_hex.encode())
    except (ValueError, AttributeError) as exc:
        raise ValidationError(_("The set-up expired; start again.")) from exc
    totp = TOTP(key, STEP_SECONDS, 0, DIGITS, 0)
    totp.time = time.time()
    if not totp.verify(int(text), tolerance=1):
        _record_failure(member, request, via="enrolment")
        raise ValidationError(
            _("That code does not match. Check the time on your phone and try the next code.")
        )
    with transaction.atomic():
        Member.objects.select_for_update().get(pk=member.pk)
        if has_device(member):
            raise Conflict(_("You already have an authenticator. Remove it first to replace it."))
        TOTPDevice.objects.filter(user=member).delete()  # leftovers that were never confirmed
        device = TOTPDevice.objects.create(
            user=member,
            name=DEVICE_NAME,
            key=key_hex,
            digits=DIGITS,
            step=STEP_SECONDS,
            confirmed=True,
            # The code just used may not be used again (to sign in, say).
            last_t=totp.t(),
            drift=totp.drift,
        )
        audit.record(
            EventType.SECOND_FACTOR_ENROLLED,
            actor=member,
            target=member,
            department_id=member.department_id,
            ip_address=audit.client_ip(request) if request else None,
            details={"device": device.pk, "issuer": settings.OTP_TOTP_ISSUER},
        )
    return device


def _revoke_second_factor_tokens(member: Member, *, by: Member | None) -> list[int]:
    """Tokens vouched for by an authenticator that is going away go with it."""
    tokens = ApiToken.objects.filter(
        member=member, second_factor_verified=True, revoked_at__isnull=True
    )
    ids = sorted(tokens.values_list("pk", flat=True))
    tokens.update(revoked_at=timezone.now(), revoked_by=by)
    return ids


def do_remove_device(member: Member, *, code: object, request: HttpRequest | None) -> None:
    """The member removes their own authenticator, proving they hold it with a current
    code. The API tokens issued with it are revoked too."""
    device = check_code(member, code, request=request, via="removal")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=member).delete()
        revoked = _revoke_second_factor_tokens(member, by=member)
        audit.record(
            EventType.SECOND_FACTOR_REMOVED,
            actor=member,
            target=member,
            department_id=member.department_id,
            ip_address=audit.client_ip(request) if request else None,
            details={"device": device.pk, "tokens_revoked": revoked},
        )


def do_reset_device(
    member: Member,
    *,
    acting_user: Member | None,
    verified_second_factor: bool,
    reason: str,
) -> list[int]:
    """An admin removes another member's authenticator (a lost phone), so that the member
    can set up a new one; ``acting_user=None`` is an operator at the server's shell
    (``manage.py reset_second_factor``). Their second-factor API tokens are revoked.
    Returns the revoked tokens' ids."""
    if acting_user is not None:
        if not may_oversee_authenticators(acting_user):
            raise PermissionDenied(_("Only an admin may reset a member's authenticator."))
        if acting_user.pk == member.pk:
            raise PermissionDenied(
                _("Remove your own authenticator on your security page, with a current code.")
            )
        enforce(acting_user, verified_second_factor=verified_second_factor, action="reset-device")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": [_("Say why the authenticator is reset.")]})
    with transaction.atomic():
        deleted, _rows = TOTPDevice.objects.filter(user=member).delete()
        if not deleted:
            raise Conflict(_("This member has no authenticator to reset."))
        revoked = _revoke_second_factor_tokens(member, by=acting_user)
        audit.record(
            EventType.SECOND_FACTOR_RESET,
            actor=acting_user,
            target=member,
            department_id=member.department_id,
            details={"reason": reason[:500], "tokens_revoked": revoked},
        )
    return revoked
