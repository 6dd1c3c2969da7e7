from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from audit.events import EventType, label_of


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
        # Each filter of the explorer pairs with the id, so "newest first, 50 at a time"
        # walks one index backwards at any depth. The full-text index over the details
        # (pg_trgm on PostgreSQL) is made by migration 0012: it is not a model index.
        indexes = [
            models.Index(fields=["event_type", "created_at"]),
            models.Index(fields=["actor", "created_at"]),
            models.Index(fields=["event_type", "id"], name="audit_event_type_id"),
            models.Index(fields=["actor_name", "id"], name="audit_event_actor_name_id"),
            models.Index(fields=["department_id", "id"], name="audit_event_department_id"),
            models.Index(fields=["target_type", "target_id", "id"], name="audit_event_target_id"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.label} {self.actor_name}"

    @property
    def label(self) -> str:
        return label_of(self.event_type)


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


class VerificationStatus(models.TextChoices):
    QUEUED = "queued", _("queued")
    RUNNING = "running", _("running")
    INTACT = "intact", _("intact")
    BROKEN = "broken", _("broken")
    FAILED = "failed", _("failed")


class ChainVerification(models.Model):
    """One run of the chain verification: the row is the truth about the job.

    ``up_to_id`` is the head when the run started (events appended during the run are
    left to the next one); ``last_good_id`` the last event whose link and hash held.
    """

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    requested_at = models.DateTimeField(_("requested"), auto_now_add=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    # Touched by the running job every few seconds; runs started. A run whose heartbeat
    # stops was left by a dead worker: it is queued again, or failed after a few runs.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=VerificationStatus.choices,
        default=VerificationStatus.QUEUED,
    )
    up_to_id = models.BigIntegerField(null=True, blank=True)
    events_checked = models.PositiveBigIntegerField(default=0)
    digests_checked = models.PositiveIntegerField(default=0)
    last_good_id = models.BigIntegerField(null=True, blank=True)
    broken_id = models.BigIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        verbose_name = _("chain verification")
        verbose_name_plural = _("chain verifications")
        ordering = ["-id"]
        indexes = [models.Index(fields=["status", "id"])]

    def __str__(self) -> str:
        return f"verification {self.pk} ({self.status})"

    @property
    def done(self) -> bool:
        return self.status in (
            VerificationStatus.INTACT,
            VerificationStatus.BROKEN,
            VerificationStatus.FAILED,
        )


class ChainDigest(models.Model):
    """The chain's head at the end of one finished day (local time).

    Anyone holding a copy of ``(head_event_id, head_hash)`` can later prove that no event
    up to that one changed: recompute the chain from the start up to it. The table is
    append-only in the database, like the log.
    """

    day = models.DateField(_("day"), unique=True)
    head_event_id = models.BigIntegerField(_("head event"))
    head_hash = models.CharField(_("head hash"), max_length=64)
    recorded_at = models.DateTimeField(_("recorded"), auto_now_add=True)

    class Meta:
        verbose_name = _("chain digest")
        verbose_name_plural = _("chain digests")
        default_permissions = ("view",)
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"{self.day}: #{self.head_event_id} {self.head_hash[:12]}…"


class AuditExportStatus(models.TextChoices):
    QUEUED = "queued", _("queued")
    RUNNING = "running", _("running")
    READY = "ready", _("ready")
    FAILED = "failed", _("failed")
    EXPIRED = "expired", _("expired")


class AuditExport(models.Model):
    """A CSV of a filtered view of the log, too large to stream at once: written by a job.

    ``filters`` are the explorer's filters as JSON; ``max_event_id`` freezes the view at
    the head when it was asked for, so the file holds exactly what the requester saw.

    The file is sealed under a data key of its own, kept here wrapped by the master key
    (``wrapped_key``); ``sha256`` and ``size`` are those of the CSV a download gives back.
    After the ``export_keep_days`` policy the export expires: file deleted, key destroyed
    (None), the row and its checksum kept.
    """

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        on_delete=models.PROTECT,
        related_name="+",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    filters = models.JSONField(default=dict)
    max_event_id = models.BigIntegerField(default=0)
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=AuditExportStatus.choices,
        default=AuditExportStatus.QUEUED,
    )
    started_at = models.DateTimeField(null=True, blank=True)
    # As for a verification run: the job's heartbeat, and the runs started.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    file = models.FileField(max_length=255, blank=True)
    rows = models.PositiveBigIntegerField(_("events"), default=0)
    size = models.PositiveBigIntegerField(_("size"), default=0)
    sha256 = models.CharField(_("SHA-256"), max_length=64, blank=True)
    error = models.TextField(blank=True)
    wrapped_key = models.BinaryField(null=True, blank=True, editable=False)
    expired_at = models.DateTimeField(_("expired"), null=True, blank=True)

    class Meta:
        verbose_name = _("audit log export")
        verbose_name_plural = _("audit log exports")
        ordering = ["-id"]
        indexes = [models.Index(fields=["requested_by", "id"])]

    def __str__(self) -> str:
        return f"audit export {self.pk} ({self.status})"

    @property
    def download_name(self) -> str:
        return f"audit-log-{self.pk}.csv"
