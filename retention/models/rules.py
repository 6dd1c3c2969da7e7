"""Retention rules: keep N days, then move to the recycle bin, purge, or archive."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from retention.models.records import Conversation, ConversationKind, Department, Member


class RuleAction(models.TextChoices):
    # Gentlest first: where two rules keep equally long, the gentler one wins.
    BIN = "bin", _("move to the recycle bin")
    ARCHIVE = "archive", _("archive (export, then purge)")
    PURGE = "purge", _("purge")


class RuleStatus(models.TextChoices):
    DRAFT = "draft", _("draft")
    PENDING = "pending", _("awaiting a second admin")
    SCHEDULED = "scheduled", _("approved, in its grace period")
    ACTIVE = "active", _("active")
    DISABLED = "disabled", _("disabled")


# Rules that count for precedence: approved ones, in force or about to be.
APPROVED_STATUSES = (RuleStatus.SCHEDULED, RuleStatus.ACTIVE)


class RetentionRule(models.Model):
    """Messages older than ``keep_days`` in the conversations the rule covers (a
    department subtree and/or a conversation kind, minus its exclusions) are taken by
    the rule's daily run. Holds beat every rule; where rules overlap, the longest keep
    wins (see ``retention.rules.matching``)."""

    name = models.CharField(_("name"), max_length=120)
    department = models.ForeignKey(
        Department,
        verbose_name=_("department (with everything below it)"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("Empty: the whole company."),
    )
    kind = models.CharField(
        _("conversation kind"),
        max_length=16,
        choices=ConversationKind.choices,
        blank=True,
        help_text=_("Empty: every kind."),
    )
    excluded_conversations = models.ManyToManyField(
        Conversation, blank=True, related_name="+", verbose_name=_("excluded conversations")
    )
    keep_days = models.PositiveIntegerField(_("keep for (days)"))
    action = models.CharField(_("then"), max_length=16, choices=RuleAction.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=RuleStatus.choices, default=RuleStatus.DRAFT
    )
    created_by = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # A change that deletes more (enabling, a shorter keep) waits here for a second admin.
    proposed_by = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    proposed_keep_days = models.PositiveIntegerField(null=True, blank=True)
    proposed_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    # The rule bites from here: its approval + the grace period.
    effective_from = models.DateTimeField(null=True, blank=True)
    # An approved shorter keep, in force from ``next_keep_from`` (after its own grace).
    next_keep_days = models.PositiveIntegerField(null=True, blank=True)
    next_keep_from = models.DateTimeField(null=True, blank=True)
    # The last dry run shown before enabling: the run must not surprise anyone.
    last_preview = models.JSONField(default=dict, blank=True)
    last_preview_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_run_ok = models.BooleanField(null=True, blank=True)
    last_run_error = models.TextField(blank=True)

    class Meta:
        verbose_name = _("retention rule")
        verbose_name_plural = _("retention rules")
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name
