"""Exports: a copy of a request's frozen scope or of a conversation, as a file.

A backup before deletion and the evidence of what a deletion took. The row is the truth
about the job that writes the file (status, times, counts, error); the file lives in the
default storage under a name that says nothing about it, and its SHA-256 checksum is
recorded here and in the audit log. The file is encrypted under a data key of its own,
kept here wrapped by the master key (``retention.exports.sealed``); an export expires after
the ``export_keep_days`` policy: its file is deleted and its key destroyed.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from retention.models.records import Conversation, Member
from retention.models.requests import DeletionRequest


class ExportFormat(models.TextChoices):
    JSONL = "jsonl", _("JSON Lines")
    CSV = "csv", _("CSV")
    HTML = "html", _("HTML transcript")


class ExportStatus(models.TextChoices):
    QUEUED = "queued", _("queued")
    RUNNING = "running", _("running")
    READY = "ready", _("ready")
    FAILED = "failed", _("failed")
    EXPIRED = "expired", _("expired")


class Export(models.Model):
    """One export of exactly one target: a deletion request or a conversation."""

    request = models.ForeignKey(
        DeletionRequest,
        verbose_name=_("deletion request"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="exports",
    )
    conversation = models.ForeignKey(
        Conversation,
        verbose_name=_("conversation"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="exports",
    )
    format = models.CharField(_("format"), max_length=8, choices=ExportFormat.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=ExportStatus.choices, default=ExportStatus.QUEUED
    )
    requested_by = models.ForeignKey(
        Member, verbose_name=_("requested by"), on_delete=models.PROTECT, related_name="+"
    )
    # The transcript's language: the one the member used when asking.
    language = models.CharField(max_length=16, blank=True)
    # The newest message the export may hold: the request's frozen high-water mark, or
    # the conversation's newest message when the export was asked for.
    max_message_id = models.BigIntegerField(default=0)
    # Made by the run engine (an archiving rule's evidence): it holds every body of the
    # scope. An export a member asks for holds only the bodies that member may read.
    system = models.BooleanField(default=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Touched by the writing job every few seconds: a running export whose heartbeat
    # stops was left by a dead worker, and is started again.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Runs started: each restart starts from scratch, and a run that is no longer the
    # latest may not write to the row.
    attempts = models.PositiveSmallIntegerField(default=0)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    expired_at = models.DateTimeField(_("expired"), null=True, blank=True)
    file = models.FileField(max_length=255, blank=True)
    # The file's AES-256-GCM data key, wrapped by the master key and bound to this export;
    # null before the file is written, after a failure, and once the export expired.
    wrapped_key = models.BinaryField(null=True, editable=False)
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True)
    size = models.PositiveBigIntegerField(_("size"), default=0)
    messages = models.PositiveIntegerField(_("messages"), default=0)
    # Messages written without a body: their key is destroyed, or the ciphertext is bad.
    unreadable = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        verbose_name = _("export")
        verbose_name_plural = _("exports")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(request__isnull=False, conversation__isnull=True)
                    | models.Q(request__isnull=True, conversation__isnull=False)
                ),
                name="export_exactly_one_target",
            ),
        ]
        indexes = [
            models.Index(fields=["request", "status"]),
            models.Index(fields=["conversation", "created_at"]),
            models.Index(fields=["status", "finished_at"]),
        ]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.format})"

    @property
    def target(self) -> DeletionRequest | Conversation:
        return self.request if self.request_id else self.conversation

    @property
    def download_name(self) -> str:
        """The file name a download is offered under (the stored name is random)."""
        what = (
            f"request-{self.request_id}"
            if self.request_id
            else f"conversation-{self.conversation_id}"
        )
        return f"qingli-{what}-export-{self.pk}.{self.format}"
