"""Deletion requests, their frozen scope and their approval steps."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from retention.models.fields import BoundDateTimeField
from retention.models.records import Conversation, Department, Member


class RequestMethod(models.TextChoices):
    PERSONAL = "personal", _("personal deletion")
    BATCH = "batch", _("batch deletion")
    SERVER = "server", _("server-side wipe")
    # Filed by a retention rule's daily run, approved by the rule's own approval.
    RETENTION = "retention", _("retention rule run")


class RequestStatus(models.TextChoices):
    DRAFT = "draft", _("draft")
    PENDING = "pending", _("pending approval")
    APPROVED = "approved", _("approved (scheduled)")
    RUNNING = "running", _("running")
    COMPLETED = "completed", _("completed")
    REJECTED = "rejected", _("rejected")
    CANCELLED = "cancelled", _("cancelled")
    EXPIRED = "expired", _("expired")
    FAILED = "failed", _("failed")


# States from which nothing more happens to a request.
FINAL_STATUSES = frozenset(
    {
        RequestStatus.COMPLETED,
        RequestStatus.REJECTED,
        RequestStatus.CANCELLED,
        RequestStatus.EXPIRED,
        RequestStatus.FAILED,
    }
)


class DeletionRequest(models.Model):
    """One request to delete, for all three methods.

    The scope is frozen at filing: ``RequestConversation`` rows list the conversations,
    ``max_message_id`` is the newest message that existed then, and ``preview`` is what
    the requester and every approver were shown. A run deletes messages of those
    conversations with ``id <= max_message_id`` inside the date range, minus whatever is
    on hold at run time, and nothing else.
    """

    requester = models.ForeignKey(
        Member, verbose_name=_("requester"), on_delete=models.PROTECT, related_name="requests"
    )
    method = models.CharField(_("method"), max_length=16, choices=RequestMethod.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=RequestStatus.choices, default=RequestStatus.PENDING
    )
    reason = models.TextField(_("reason"))
    # The validated request body's scope, as filed (ids, flags, dates in ISO form).
    scope = models.JSONField(_("scope"), default=dict)
    # The lowest department whose subtree holds the whole scope: whose managers approve.
    scope_root = models.ForeignKey(
        Department,
        verbose_name=_("scope department"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    # Read clamped into Python's range, so no stored bound can break a page (the field's
    # docstring); the range a run accepts is checked where it runs (retention.dates).
    sent_after = BoundDateTimeField(null=True, blank=True)
    sent_before = BoundDateTimeField(null=True, blank=True)
    max_message_id = models.BigIntegerField(default=0)
    preview = models.JSONField(_("preview"), default=dict)
    confirmed_protected = models.JSONField(default=list, blank=True)
    cost_estimate_cny = models.PositiveIntegerField(null=True, blank=True)
    filed_at = models.DateTimeField(_("filed"), auto_now_add=True)
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    scheduled_for = models.DateTimeField(_("scheduled for"), null=True, blank=True)
    idempotency_key = models.CharField(max_length=100, blank=True)

    class Meta:
        verbose_name = _("deletion request")
        verbose_name_plural = _("deletion requests")
        ordering = ["-filed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["requester", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="request_idempotency_key_once",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "method"]),
            models.Index(fields=["requester", "method", "filed_at"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_method_display()}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class RequestConversation(models.Model):
    """A conversation in a request's frozen scope, with what the preview counted in it."""

    request = models.ForeignKey(DeletionRequest, on_delete=models.CASCADE, related_name="targets")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    department = models.ForeignKey(Department, on_delete=models.PROTECT, related_name="+")
    messages = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["request", "conversation"], name="request_conversation_once"
            ),
        ]
        indexes = [models.Index(fields=["conversation"])]

    def __str__(self) -> str:
        return f"{self.conversation_id} in request {self.request_id}"


class StepStatus(models.TextChoices):
    WAITING = "waiting", _("waiting for an earlier step")
    PENDING = "pending", _("awaiting decision")
    APPROVED = "approved", _("approved")
    REJECTED = "rejected", _("rejected")
    CANCELLED = "cancelled", _("cancelled")


class ApprovalStep(models.Model):
    request = models.ForeignKey(DeletionRequest, on_delete=models.CASCADE, related_name="steps")
    order = models.PositiveSmallIntegerField()
    role = models.CharField(_("role"), max_length=16)
    # For manager steps: approvers manage this department or one above it.
    department = models.ForeignKey(
        Department, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.WAITING)
    approver = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    comment = models.TextField(blank=True)
    # Why this step exists, e.g. "high-sensitivity records in scope".
    because = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["order"]
        constraints = [
            models.UniqueConstraint(fields=["request", "order"], name="step_order_once"),
        ]
        indexes = [models.Index(fields=["status", "role"])]

    def __str__(self) -> str:
        return f"step {self.order} ({self.role}) of request {self.request_id}"
