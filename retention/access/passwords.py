"""Password changes. A member's API tokens were taken with their password (or vouched for
by a session that was): when the password changes, or password sign-in is turned off,
every token of theirs is revoked with it."""

from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest
from django.utils.translation import gettext as _

from retention.access.predicates import may_oversee_authenticators
from retention.access.tokens import RevokedBecause, revoke_every_token
from retention.models import Member


def do_change_password(
    member: Member,
    *,
    password: str | None,
    acting_user: Member | None,
    request: HttpRequest | None,
) -> list[int]:
    """Set ``member``'s password (None: password sign-in turned off) and revoke every API
    token of theirs, audited per token. By the member, an admin, or an operator at the
    server's shell (``acting_user`` None). The password must pass the password validators
    (ValidationError, nothing changed). Returns the revoked tokens' ids; ``member`` carries
    the new password hash afterwards."""
    if (
        acting_user is not None
        and acting_user.pk != member.pk
        and not may_oversee_authenticators(acting_user)
    ):
        raise PermissionDenied(_("Only the member or an admin may change a password."))
    if password is not None:
        validate_password(password, member)
    with transaction.atomic():
        locked = Member.objects.select_for_update().get(pk=member.pk)
        if password is None:
            locked.set_unusable_password()
        else:
            locked.set_password(password)
        locked.save(update_fields=["password"])
        member.password = locked.password
        return revoke_every_token(
            locked,
            acting_user=acting_user,
            request=request,
            reason=RevokedBecause.PASSWORD_CHANGED,
        )
