from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Concat, Substr
from django.utils.functional import cached_property
from django.utils.translation import gettext_lazy as _

from retention.models.roles import Role


class Department(models.Model):
    """A node of the company tree (company → region → store/team).

    ``path`` is the materialized path of ids ("/1/4/9/"), so a whole subtree is one
    indexed prefix query at any depth.
    """

    name = models.CharField(_("name"), max_length=120)
    parent = models.ForeignKey(
        "self",
        verbose_name=_("parent department"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
    )
    path = models.CharField(_("path"), max_length=255, unique=True, editable=False)
    depth = models.PositiveSmallIntegerField(_("level"), default=0, editable=False)

    class Meta:
        verbose_name = _("department")
        verbose_name_plural = _("departments")
        ordering = ["path"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # Keeping the path right is the tree's own invariant, not business logic.
        if self.pk and self.parent_id and f"/{self.pk}/" in self.parent.path:
            raise ValueError("a department cannot be moved under its own subtree")
        old_path = ""
        if self.pk is not None:
            old_path = Department.objects.filter(pk=self.pk).values_list("path", flat=True).first()
        else:
            self.path = f"/pending-{uuid.uuid4().hex}/"
            super().save(*args, **kwargs)
            args, kwargs = (), {}
        old_depth = self.depth
        self.path = f"{self.parent.path if self.parent_id else '/'}{self.pk}/"
        self.depth = self.path.count("/") - 2
        super().save(*args, **kwargs)
        if old_path and old_path != self.path:
            # Moving a department moves its whole subtree in one statement.
            Department.objects.filter(path__startswith=old_path).exclude(pk=self.pk).update(
                path=Concat(models.Value(self.path), Substr("path", len(old_path) + 1)),
                depth=models.F("depth") + (self.depth - old_depth),
            )

    def clean(self) -> None:
        if self.pk and self.parent_id and f"/{self.pk}/" in self.parent.path:
            raise ValidationError({"parent": _("A department cannot be moved under itself.")})

    def subtree(self) -> models.QuerySet[Department]:
        return Department.objects.filter(path__startswith=self.path)

    @property
    def label(self) -> str:
        """The name with its parent's for departments below a region ("杭州西湖店 / 客服组"),
        so that the many "客服组" can be told apart."""
        if self.depth >= 2 and self.parent_id:
            return f"{self.parent.name} / {self.name}"
        return self.name

    def ancestor_ids(self) -> list[int]:
        return [int(part) for part in self.path.strip("/").split("/")]

    def contains(self, other: Department) -> bool:
        return other.path.startswith(self.path)


class Member(AbstractUser):
    """A person who signs in. Roles are Django groups named after :class:`Role`."""

    display_name = models.CharField(_("display name"), max_length=150, blank=True)
    department = models.ForeignKey(
        Department,
        verbose_name=_("department"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="members",
    )

    class Meta:
        verbose_name = _("member")
        verbose_name_plural = _("members")

    def __str__(self) -> str:
        return self.display_name or self.username

    @cached_property
    def roles(self) -> frozenset[str]:
        return frozenset(self.groups.values_list("name", flat=True))

    def has_role(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(str(role) for role in roles))


class SignInDay(models.Model):
    """One row per member per calendar day with a sign-in (batch eligibility needs streaks)."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="sign_in_days")
    day = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["member", "day"], name="sign_in_day_once"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id}@{self.day}"


class ConversationKind(models.TextChoices):
    DIRECT = "direct", _("one-to-one")
    GROUP = "group", _("group")
    CUSTOMER = "customer", _("customer")


class Conversation(models.Model):
    kind = models.CharField(_("kind"), max_length=16, choices=ConversationKind.choices)
    title = models.CharField(_("title"), max_length=200)
    department = models.ForeignKey(
        Department,
        verbose_name=_("department"),
        on_delete=models.PROTECT,
        related_name="conversations",
    )
    # Supplier groups and the like: any deletion touching them needs an explicit confirmation.
    is_protected = models.BooleanField(_("protected"), default=False)
    # The customer's name or handle for customer chats; customers are not members.
    external_party = models.CharField(_("customer name"), max_length=150, blank=True)
    participants = models.ManyToManyField(
        Member, through="Participant", related_name="conversations", verbose_name=_("participants")
    )
    source = models.CharField(_("source"), max_length=32, blank=True)
    source_id = models.CharField(_("source id"), max_length=128, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    last_message_at = models.DateTimeField(_("last message"), null=True, blank=True)

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        constraints = [
            models.UniqueConstraint(
                fields=["source", "source_id"],
                condition=~models.Q(source_id=""),
                name="conversation_source_id_once",
            ),
        ]
        indexes = [models.Index(fields=["department", "last_message_at"])]

    def __str__(self) -> str:
        return self.title


class Participant(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE)
    member = models.ForeignKey(Member, on_delete=models.CASCADE)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "member"], name="participant_once"),
        ]
        indexes = [models.Index(fields=["member", "conversation"])]

    def __str__(self) -> str:
        return f"{self.member_id} in {self.conversation_id}"


class DataKey(models.Model):
    """A conversation's data key, wrapped by the master key. Destroyed means gone:
    the wrapped bytes are overwritten with NULL and no copy exists anywhere else."""

    conversation = models.OneToOneField(
        Conversation, primary_key=True, on_delete=models.CASCADE, related_name="data_key"
    )
    wrapped_key = models.BinaryField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"key of conversation {self.conversation_id}"


class Sensitivity(models.IntegerChoices):
    LOW = 0, _("low")
    MEDIUM = 1, _("medium")
    HIGH = 2, _("high")


class LiveMessageManager(models.Manager):
    """Messages that no recycle-bin entry or pending purge hides: what every read sees.

    Deletion code that must see every stored row uses ``Message.all_rows``.
    """

    def get_queryset(self) -> models.QuerySet:
        # The recycle bin's table is named, not imported, as a foreign key would name it:
        # the record store sits below the bin and must not depend on its module.
        tombstones = self.model._meta.apps.get_model("retention", "Tombstone").objects
        covering = (
            tombstones.hiding()
            .filter(
                conversation=models.OuterRef("conversation_id"),
                after_id__lt=models.OuterRef("id"),
                up_to_id__gte=models.OuterRef("id"),
            )
            .filter(
                models.Q(sent_after__isnull=True)
                | models.Q(sent_after__lte=models.OuterRef("sent_at"))
            )
            .filter(
                models.Q(sent_before__isnull=True)
                | models.Q(sent_before__gt=models.OuterRef("sent_at"))
            )
        )
        return super().get_queryset().exclude(models.Exists(covering))


class Message(models.Model):
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    sender = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who sent it as shown in the chat: a member's name or an external customer's.
    sender_name = models.CharField(max_length=150)
    sent_at = models.DateTimeField()
    # nonce ‖ AES-256-GCM ciphertext under the conversation's data key.
    body = models.BinaryField()
    body_bytes = models.PositiveIntegerField(default=0)
    sensitivity = models.PositiveSmallIntegerField(
        choices=Sensitivity.choices, default=Sensitivity.LOW
    )
    # Which rules fired, e.g. ["mobile", "id_card"]: the reason a message is high.
    sensitivity_reasons = models.JSONField(default=list, blank=True)
    source = models.CharField(max_length=32, blank=True)
    source_id = models.CharField(max_length=128, blank=True)
    ingested_at = models.DateTimeField(auto_now_add=True)

    objects = LiveMessageManager()
    all_rows = models.Manager()  # noqa: DJ012 (a manager, not a field)

    class Meta:
        # Related lookups (an attachment's message) and deletion code see every row.
        base_manager_name = "all_rows"
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        permissions = [("ingest_messages", _("Can put chat records in through the ingest API"))]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "source_id"],
                condition=~models.Q(source_id=""),
                name="message_source_id_once",
            ),
        ]
        indexes = [
            # Deletion walks a conversation in id order, in bounded chunks.
            models.Index(fields=["conversation", "id"]),
            models.Index(fields=["conversation", "sent_at"]),
            models.Index(fields=["conversation", "sensitivity"]),
            # "Which conversations hold high-sensitivity records" without a table scan.
            models.Index(fields=["sensitivity", "conversation"]),
        ]

    def __str__(self) -> str:
        return f"message {self.pk} in {self.conversation_id}"


def attachment_path(instance: Attachment, filename: str) -> str:
    # The stored name says nothing about the file: names can be personal data too.
    return f"attachments/{instance.conversation_id}/{instance.sha256[:2]}/{instance.sha256}"


class Attachment(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="attachments"
    )
    name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100, blank=True)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    # Ciphertext, like message bodies.
    file = models.FileField(upload_to=attachment_path, max_length=255)

    class Meta:
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")

    def __str__(self) -> str:
        return self.name
