"""Policies, holds, quota grants, personal removals, hides and notifications."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from retention.models.records import Conversation, Department, Member, Message


class Policy(models.Model):
    """One admin-editable policy value; keys and defaults live in ``retention.policies``."""

    key = models.CharField(_("key"), max_length=64, unique=True)
    value = models.JSONField(_("value"))
    updated_by = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("policy")
        verbose_name_plural = _("policies")

    def __str__(self) -> str:
        return self.key


class HoldKind(models.TextChoices):
    LEGAL = "legal", _("legal hold")
    SENSITIVE = "sensitive", _("sensitive-transaction hold")


class Hold(models.Model):
    """Keeps conversations (or whole department subtrees) from every deletion path."""

    kind = models.CharField(_("kind"), max_length=16, choices=HoldKind.choices)
    reason = models.TextField(_("reason"))
    conversations = models.ManyToManyField(Conversation, blank=True, related_name="holds")
    departments = models.ManyToManyField(Department, blank=True, related_name="holds")
    placed_by = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    placed_at = models.DateTimeField(auto_now_add=True)
    released_by = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    released_at = models.DateTimeField(null=True, blank=True, db_index=True)
    release_reason = models.TextField(blank=True)

    class Meta:
        verbose_name = _("hold")
        verbose_name_plural = _("holds")
        ordering = ["-placed_at", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_kind_display()}"

    @property
    def is_active(self) -> bool:
        return self.released_at is None


class QuotaGrant(models.Model):
    """Extra personal deletions an admin granted a member for one calendar month."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="quota_grants")
    month = models.DateField(help_text="first day of the month the grant is for")
    extra = models.PositiveSmallIntegerField()
    reason = models.TextField()
    granted_by = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["member", "month"])]

    def __str__(self) -> str:
        return f"+{self.extra} for {self.member_id} in {self.month:%Y-%m}"


class PersonalRemoval(models.Model):
    """A message or whole conversation removed from one member's view (the others keep
    theirs). Restorable from the member's personal recycle bin until it expires."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    # Null: the whole conversation, as far as it went when removed.
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    up_to_message_id = models.BigIntegerField(default=0)
    request = models.ForeignKey(
        "retention.DeletionRequest", on_delete=models.CASCADE, related_name="removals"
    )
    removed_at = models.DateTimeField(auto_now_add=True)
    restorable_until = models.DateTimeField()
    restored_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["member", "conversation"]),
            models.Index(fields=["message"]),
        ]

    def __str__(self) -> str:
        return f"removal {self.pk} for {self.member_id}"


class ConversationHide(models.Model):
    """A conversation folded away for one member: nothing is deleted."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    hidden_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["member", "conversation"], name="hide_once"),
        ]

    def __str__(self) -> str:
        return f"{self.conversation_id} hidden for {self.member_id}"


class Notification(models.Model):
    """An in-app notice; the text is rendered at display time in the reader's language."""

    recipient = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="notifications")
    verb = models.CharField(max_length=32)
    request = models.ForeignKey(
        "retention.DeletionRequest",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notifications",
    )
    params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "read_at"])]

    def __str__(self) -> str:
        return f"{self.verb} for {self.recipient_id}"
