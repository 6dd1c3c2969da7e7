from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from audit.events import EventType


class AuditEvent(models.Model):
    """One entry of the append-only, hash-chained audit log.

    The database refuses UPDATE and DELETE on this table (see migration 0002); rows are
    written only by :func:`audit.log.record`.
    """

    created_at = models.DateTimeField(_("time"), db_index=True)
    # No database constraint: members may be removed, their events may not.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("actor"),
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_name = models.CharField(_("actor name"), max_length=150, blank=True)
    event_type = models.PositiveSmallIntegerField(_("action"), choices=EventType.choices)
    target_type = models.CharField(_("object type"), max_length=64, blank=True)
    target_id = models.CharField(_("object id"), max_length=64, blank=True)
    department_id = models.BigIntegerField(_("department"), null=True, blank=True)
    ip_address = models.GenericIPAddressField(_("address"), null=True, blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)
    # Unique: two writers can never both extend the same head (no silent fork).
    prev_hash = models.CharField(max_length=64, unique=True)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        # Read-only to everyone, in the admin too: there is nothing to add, change or delete.
        default_permissions = ("view",)
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["event_type", "created_at"]),
            models.Index(fields=["target_type", "target_id"]),
            models.Index(fields=["actor", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_event_type_display()} {self.actor_name}"


class ReviewKind(models.TextChoices):
    SERVER_WIPE = "server_wipe", _("server-side wipe")
    RECYCLE_PURGE = "recycle_purge", _("recycle-bin purge")
    RETENTION_PURGE = "retention_purge", _("retention purge")
    # Not one deletion: a quarter of the recycle bin, reviewed by an auditor.
    RECYCLE_BIN = "recycle_bin", _("quarterly recycle-bin review")


class ReviewStatus(models.TextChoices):
    OPEN = "open", _("awaiting review")
    SIGNED_OFF = "signed_off", _("signed off")
    FLAGGED = "flagged", _("flagged with a finding")


class ComplianceReview(models.Model):
    """Opened by every permanent deletion, for an auditor to sign off or flag.

    ``summary`` is what was deleted (counts, departments, id range), the approvals and
    the holds skipped, written once when the deletion finishes.
    """

    kind = models.CharField(_("kind"), max_length=32, choices=ReviewKind.choices)
    request = models.ForeignKey(
        "retention.DeletionRequest",
        verbose_name=_("request"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reviews",
    )
    # The quarter a recycle-bin review covers ("2026-Q4"); empty for a deletion's review.
    period = models.CharField(_("period"), max_length=7, blank=True)
    opened_at = models.DateTimeField(_("opened"), auto_now_add=True)
    summary = models.JSONField(_("summary"), default=dict)
    status = models.CharField(
        _("status"), max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.OPEN
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    finding = models.TextField(_("finding"), blank=True)

    class Meta:
        verbose_name = _("compliance review")
        verbose_name_plural = _("compliance reviews")
        ordering = ["-opened_at", "-id"]
        indexes = [models.Index(fields=["status", "opened_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "period"],
                condition=models.Q(kind="recycle_bin"),
                name="one_recycle_bin_review_per_quarter",
            )
        ]

    def __str__(self) -> str:
        return f"review {self.pk} ({self.get_kind_display()})"
