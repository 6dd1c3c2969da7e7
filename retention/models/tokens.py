"""API tokens: several named tokens per member, stored only as a SHA-256 of the key."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from retention.models.records import Member


class ApiToken(models.Model):
    """A bearer credential for the API (``Authorization: Token <key>``).

    The key itself is shown once, when the token is issued; only its SHA-256 is kept, so a
    copy of the database authenticates nobody. ``second_factor_verified`` says whether the
    token was issued after a TOTP check: only such tokens may take the sensitive actions
    (approve, holds, policies, restore) while the ``require_second_factor`` policy is on.
    """

    member = models.ForeignKey(
        Member, verbose_name=_("member"), on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(_("name"), max_length=100)
    key_hash = models.CharField(max_length=64, unique=True)
    # The key's first characters, so that its owner can tell tokens apart in a list.
    prefix = models.CharField(_("starts with"), max_length=8)
    second_factor_verified = models.BooleanField(_("issued after a second-factor check"))
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    revoked_by = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["member", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
