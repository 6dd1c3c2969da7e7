"""What happens to a request's records once it runs: tombstones and executions.

A batch deletion does not touch message rows. It writes one :class:`Tombstone` per
conversation range, and every read of messages leaves out the rows a live tombstone
covers (see ``LiveMessageManager``). That makes moving to the recycle bin and restoring
it cost one row per conversation, not one per message. Rows are removed for real only
when the tombstone is purged.

An :class:`Execution` is the truth about one run of a request (its lease, checkpoint
and counts), kept in the database so that a killed worker loses nothing.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from retention.models.fields import BoundDateTimeField
from retention.models.records import Conversation, Member
from retention.models.requests import DeletionRequest


class TombstoneState(models.TextChoices):
    BINNED = "binned", _("in the recycle bin")
    RESTORED = "restored", _("restored")
    # Permanent: awaiting removal of its rows (recycle-bin purge or server-side wipe).
    PURGING = "purging", _("being purged")
    PURGED = "purged", _("purged")


# Tombstones in these states hide their rows from every read.
HIDING_STATES = (TombstoneState.BINNED, TombstoneState.PURGING)


class TombstoneQuerySet(models.QuerySet):
    def hiding(self) -> TombstoneQuerySet:
        """The tombstones whose rows every read leaves out."""
        return self.filter(state__in=HIDING_STATES)


class Tombstone(models.Model):
    """Messages of one conversation with ``after_id < id <= up_to_id`` (and, when set,
    ``sent_after <= sent_at < sent_before``), taken out by one request."""

    request = models.ForeignKey(
        DeletionRequest, on_delete=models.PROTECT, related_name="tombstones"
    )
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="+")
    after_id = models.BigIntegerField()
    up_to_id = models.BigIntegerField()
    sent_after = BoundDateTimeField(null=True, blank=True)
    sent_before = BoundDateTimeField(null=True, blank=True)
    # What the range held when it was taken: the recycle bin's "how much".
    messages = models.PositiveIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    state = models.CharField(max_length=16, choices=TombstoneState.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    purge_after = models.DateTimeField()
    restored_at = models.DateTimeField(null=True, blank=True)
    restored_by = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    purged_at = models.DateTimeField(null=True, blank=True)

    objects = TombstoneQuerySet.as_manager()

    class Meta:
        verbose_name = _("recycle-bin entry")
        verbose_name_plural = _("recycle-bin entries")
        constraints = [
            models.UniqueConstraint(
                fields=["request", "conversation", "after_id"], name="tombstone_range_once"
            ),
            models.CheckConstraint(
                condition=models.Q(up_to_id__gt=models.F("after_id")),
                name="tombstone_range_not_empty",
            ),
        ]
        indexes = [
            # The read filter: live tombstones of a conversation.
            models.Index(
                fields=["conversation", "after_id"],
                condition=models.Q(state__in=["binned", "purging"]),
                name="tombstone_hiding",
            ),
            models.Index(fields=["state", "purge_after"]),
            models.Index(fields=["request", "state"]),
        ]

    def __str__(self) -> str:
        return f"{self.conversation_id} ({self.after_id}, {self.up_to_id}] of {self.request_id}"


class ExecutionKind(models.TextChoices):
    MOVE = "move", _("move to the recycle bin")
    RESTORE = "restore", _("restore")
    PURGE = "purge", _("purge")
    WIPE = "wipe", _("server-side wipe")


class ExecutionStatus(models.TextChoices):
    QUEUED = "queued", _("queued")
    RUNNING = "running", _("running")
    COMPLETED = "completed", _("completed")
    FAILED = "failed", _("failed")
    CANCELLED = "cancelled", _("cancelled")


class Execution(models.Model):
    """One run over a request's records, resumable from its checkpoint.

    The checkpoint is ``(cursor_conversation, cursor_id)``: every unit of work before it
    (conversations in id order, then message ids) is done and counted. Each batch commits
    its work and its checkpoint together, and only while its worker holds the lease.
    """

    request = models.ForeignKey(
        DeletionRequest, on_delete=models.PROTECT, related_name="executions"
    )
    kind = models.CharField(max_length=16, choices=ExecutionKind.choices)
    # Server-side wipes run in two phases: "shred" (keys), then "purge" (rows).
    phase = models.CharField(max_length=16, blank=True)
    status = models.CharField(
        max_length=16, choices=ExecutionStatus.choices, default=ExecutionStatus.QUEUED
    )
    total_messages = models.PositiveBigIntegerField(default=0)
    done_messages = models.PositiveBigIntegerField(default=0)
    done_conversations = models.PositiveIntegerField(default=0)
    held_messages = models.PositiveBigIntegerField(default=0)
    # In the frozen scope but gone before the run reached them (another request took them).
    vanished_messages = models.PositiveBigIntegerField(default=0)
    # Conversations skipped because a hold covered them when their batch ran.
    held_conversation_ids = models.JSONField(default=list, blank=True)
    # Skipped because they were marked protected after filing and the request did not
    # confirm them by name (a retention rule's run never does).
    protected_messages = models.PositiveBigIntegerField(default=0)
    protected_conversation_ids = models.JSONField(default=list, blank=True)
    attachments_removed = models.PositiveIntegerField(default=0)
    keys_destroyed = models.PositiveIntegerField(default=0)
    cursor_conversation = models.BigIntegerField(default=0)
    cursor_id = models.BigIntegerField(default=0)
    batches = models.PositiveIntegerField(default=0)
    longest_batch_ms = models.PositiveIntegerField(default=0)
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    resumes = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Server-side wipes: when the last data key of the scope was destroyed.
    unreadable_at = models.DateTimeField(null=True, blank=True)
    # Restores: who asked, and which conversations (null: the whole request).
    acting_member = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    conversation_ids = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            # A request has at most one unfinished run of each kind.
            models.UniqueConstraint(
                fields=["request", "kind"],
                condition=models.Q(status__in=["queued", "running"]),
                name="execution_active_once",
            ),
        ]
        indexes = [models.Index(fields=["status", "lease_expires_at"])]

    def __str__(self) -> str:
        return f"{self.kind} of request {self.request_id}"

    @property
    def held_conversations(self) -> int:
        return len(self.held_conversation_ids)

    @property
    def protected_conversations(self) -> int:
        return len(self.protected_conversation_ids)

    @property
    def skipped_messages(self) -> int:
        """Messages of the frozen scope the run left: held, or protected meanwhile."""
        return self.held_messages + self.protected_messages

    @property
    def percent(self) -> int:
        if not self.total_messages:
            return 100 if self.status == ExecutionStatus.COMPLETED else 0
        settled = self.done_messages + self.skipped_messages + self.vanished_messages
        return min(100, settled * 100 // self.total_messages)
