"""API tokens: issue (the key is shown once), authenticate by the key's SHA-256, list and
revoke. Owners manage their own tokens; admins see and revoke everyone's. A member's
tokens all go when their password changes or they are deactivated."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import log as audit
from audit.events import EventType
from retention.access.predicates import may_oversee_authenticators
from retention.errors import Conflict
from retention.models import ApiToken, Member, SignInDay

KEY_BYTES = 32
PREFIX_CHARS = 8
NAME_MAX = 100
# last_used_at is written at most this often per token, not on every request.
TOUCH_EVERY = timedelta(minutes=1)


def hash_key(key: str) -> str:
    """Keys are 256 random bits: a plain SHA-256 is enough to make a stolen table useless
    (a slow password hash would only slow every API request down)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    key: str  # shown to its owner once, never stored


def do_issue_token(
    *,
    member: Member,
    name: str,
    second_factor_verified: bool,
    request: HttpRequest | None,
    via: str,
) -> IssuedToken:
    """A new token for ``member``. ``second_factor_verified`` must be True only when the
    caller has just checked a TOTP code of the member's (the token endpoint's ``otp``)
    or the member's session is verified (the security page)."""
    name = (name or "").strip() or _("API token")
    if len(name) > NAME_MAX:
        raise ValidationError({"name": [_("Keep the name under 100 characters.")]})
    key = secrets.token_urlsafe(KEY_BYTES)
    with transaction.atomic():
        token = ApiToken.objects.create(
            member=member,
            name=name,
            key_hash=hash_key(key),
            prefix=key[:PREFIX_CHARS],
            second_factor_verified=bool(second_factor_verified),
        )
        # Taking a token counts as signing in that day (as it always has).
        SignInDay.objects.get_or_create(member=member, day=timezone.localdate())
        audit.record(
            EventType.TOKEN_ISSUED,
            actor=member,
            target=token,
            department_id=member.department_id,
            ip_address=audit.client_ip(request) if request else None,
            details={
                "via": via,
                "member": member.pk,
                "name": name,
                "prefix": token.prefix,
                "second_factor": token.second_factor_verified,
            },
        )
    return IssuedToken(token=token, key=key)


def authenticate_key(key: str) -> ApiToken | None:
    """The live token with this key, its member active; None otherwise."""
    if not key or len(key) > 200:
        return None
    token = (
        ApiToken.objects.select_related("member")
        .filter(key_hash=hash_key(key), revoked_at__isnull=True)
        .first()
    )
    if token is None or not token.member.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or token.last_used_at < now - TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def tokens_for(viewer: Member) -> QuerySet[ApiToken]:
    """The tokens ``viewer`` may see and revoke: their own; an admin's: everyone's."""
    qs = ApiToken.objects.select_related("member", "revoked_by")
    if may_oversee_authenticators(viewer) and viewer.is_active:
        return qs
    return qs.filter(member=viewer)


def do_revoke_token(
    token: ApiToken, *, acting_user: Member, request: HttpRequest | None
) -> ApiToken:
    """Revoke a token at once. Its owner may, and any admin (audited either way).
    Revoking only takes access away, so it needs no second factor: an owner who suspects
    a leak must be able to act at once."""
    if token.member_id != acting_user.pk and not may_oversee_authenticators(acting_user):
        raise PermissionDenied(_("Only the token's owner or an admin may revoke it."))
    with transaction.atomic():
        locked = ApiToken.objects.select_for_update().get(pk=token.pk)
        if locked.revoked_at is not None:
            raise Conflict(_("This token has already been revoked."))
        locked.revoked_at, locked.revoked_by = timezone.now(), acting_user
        locked.save(update_fields=["revoked_at", "revoked_by"])
        audit.record(
            EventType.TOKEN_REVOKED,
            actor=acting_user,
            target=locked,
            department_id=locked.member.department_id,
            ip_address=audit.client_ip(request) if request else None,
            details={
                "member": locked.member_id,
                "name": locked.name,
                "prefix": locked.prefix,
                "by_owner": locked.member_id == acting_user.pk,
            },
        )
    return locked


class RevokedBecause:
    """Why every token of a member was revoked at once (the audit event's ``reason``)."""

    PASSWORD_CHANGED = "password-changed"
    DEACTIVATED = "deactivated"


def revoke_every_token(
    member: Member, *, acting_user: Member | None, request: HttpRequest | None, reason: str
) -> list[int]:
    """Inside the caller's transaction: revoke every live token of ``member``, one audit
    event each (``acting_user`` None: an operator at the server's shell). Returns their
    ids."""
    tokens = list(
        ApiToken.objects.select_for_update()
        .filter(member=member, revoked_at__isnull=True)
        .order_by("pk")
    )
    now = timezone.now()
    for token in tokens:
        token.revoked_at, token.revoked_by = now, acting_user
        token.save(update_fields=["revoked_at", "revoked_by"])
        audit.record(
            EventType.TOKEN_REVOKED,
            actor=acting_user,
            target=token,
            department_id=member.department_id,
            ip_address=audit.client_ip(request) if request else None,
            details={
                "member": member.pk,
                "name": token.name,
                "prefix": token.prefix,
                "by_owner": acting_user is not None and acting_user.pk == member.pk,
                "reason": reason,
            },
        )
    return [token.pk for token in tokens]


def do_revoke_tokens_of_deactivated(
    member: Member, *, acting_user: Member | None, request: HttpRequest | None
) -> list[int]:
    """A member who has just been deactivated loses every API token, for good: made
    active again, they take new ones. By an admin (or an operator: ``acting_user``
    None); audited per token. Returns the revoked tokens' ids."""
    if acting_user is not None and not may_oversee_authenticators(acting_user):
        raise PermissionDenied(_("Only an admin may revoke a member's tokens."))
    with transaction.atomic():
        locked = Member.objects.select_for_update().get(pk=member.pk)
        if locked.is_active:
            raise Conflict(_("This member is active: their tokens stay."))
        return revoke_every_token(
            locked, acting_user=acting_user, request=request, reason=RevokedBecause.DEACTIVATED
        )
