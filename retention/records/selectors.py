"""Reads shared by pages and the API. Every one takes the viewer and applies their scope,
so no page can forget it."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from retention.models import (
    Conversation,
    ConversationHide,
    Department,
    Member,
    Message,
    Participant,
    PersonalRemoval,
    Sensitivity,
)
from retention.models.roles import Role
from retention.records.crypto import ConversationCipher, DecryptionError

logger = logging.getLogger(__name__)

# Roles that see every conversation's metadata (titles, participants, counts), for
# configuration, holds and audit; they read bodies only where they take part.
COMPANY_WIDE_ROLES = (Role.ADMIN, Role.SECURITY, Role.AUDITOR)


def managed_department_paths(viewer: Member) -> list[str]:
    """Subtree roots the viewer manages (a manager's authority is their department's subtree)."""
    if viewer.has_role(Role.MANAGER) and viewer.department_id:
        return [viewer.department.path]
    return []


def departments_for(viewer: Member) -> QuerySet[Department]:
    if viewer.has_role(*COMPANY_WIDE_ROLES):
        return Department.objects.all()
    paths = managed_department_paths(viewer)
    if paths:
        return Department.objects.filter(path__startswith=paths[0])
    if viewer.department_id:
        # Staff file batches for their own department's subtree, so they browse it too.
        return Department.objects.filter(path__startswith=viewer.department.path)
    return Department.objects.none()


def conversations_for(viewer: Member) -> QuerySet[Conversation]:
    """Conversations the viewer may see at all; anything else is a 404."""
    if not viewer.is_authenticated:
        return Conversation.objects.none()
    if viewer.has_role(*COMPANY_WIDE_ROLES):
        return Conversation.objects.all()
    # Semi-joins, not joins: no duplicate rows, and the planner can use each index.
    scope = Q(pk__in=Participant.objects.filter(member=viewer).values("conversation_id"))
    for path in managed_department_paths(viewer):
        scope |= Q(department__in=Department.objects.filter(path__startswith=path).values("pk"))
    return Conversation.objects.filter(scope)


def can_read_bodies(viewer: Member, conversation: Conversation) -> bool:
    """Participants and the managers of the conversation's department read message bodies;
    company-wide roles see metadata only (auditors too, unless policy allows)."""
    return conversation.pk in readable_conversation_ids(viewer, [conversation.pk])


def readable_conversation_ids(viewer: Member, conversation_ids) -> set[int]:
    """Of these conversations, those whose bodies the viewer may read (one query)."""
    if viewer.has_role(Role.AUDITOR) and settings.QINGLI_AUDITOR_READS_BODIES:
        return set(conversation_ids)
    readable = Q(pk__in=Participant.objects.filter(member=viewer).values("conversation_id"))
    for path in managed_department_paths(viewer):
        readable |= Q(department__path__startswith=path)
    return set(
        Conversation.objects.filter(readable, pk__in=list(conversation_ids)).values_list(
            "pk", flat=True
        )
    )


def conversation_list(
    viewer: Member,
    *,
    department: Department | None = None,
    include_subdepartments: bool = True,
    kind: str = "",
    since=None,
    until=None,
    sensitivity: int | None = None,
    text: str = "",
    hidden: bool = False,
) -> QuerySet[Conversation]:
    """The conversation browser's query: the viewer's scope, then the filters. Conversations
    the viewer hid are left out, or shown alone with ``hidden=True``."""
    qs = conversations_for(viewer).select_related("department", "department__parent")
    if hidden:
        qs = qs.filter(pk__in=hidden_conversation_ids(viewer))
    else:
        qs = qs.exclude(pk__in=hidden_conversation_ids(viewer))
    if department is not None:
        if include_subdepartments:
            qs = qs.filter(department__path__startswith=department.path)
        else:
            qs = qs.filter(department=department)
    if kind:
        qs = qs.filter(kind=kind)
    if since is not None:
        qs = qs.filter(last_message_at__gte=since)
    if until is not None:
        qs = qs.filter(last_message_at__lt=until)
    if sensitivity is not None:
        qs = qs.filter(
            pk__in=Message.objects.filter(sensitivity__gte=sensitivity).values("conversation_id")
        )
    if text:
        by_participant = Participant.objects.filter(
            Q(member__username__icontains=text) | Q(member__display_name__icontains=text)
        ).values("conversation_id")
        qs = qs.filter(
            Q(title__icontains=text) | Q(external_party__icontains=text) | Q(pk__in=by_participant)
        )
    # A correlated count: computed for the rows of one page, not for the whole scope.
    participants = (
        Participant.objects.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return qs.annotate(
        participant_count=Coalesce(Subquery(participants), 0),
    ).order_by(F("last_message_at").desc(nulls_last=True), "-id")


def messages_of(conversation: Conversation, viewer: Member | None = None) -> QuerySet[Message]:
    """A conversation's messages, oldest first, without those the viewer deleted on their
    own side (personal deletions still in effect)."""
    qs = Message.objects.filter(conversation=conversation)
    if viewer is not None:
        removals = PersonalRemoval.objects.filter(
            member=viewer, conversation=conversation, restored_at__isnull=True
        )
        whole_up_to = max(
            removals.filter(message__isnull=True).values_list("up_to_message_id", flat=True),
            default=0,
        )
        if whole_up_to:
            qs = qs.exclude(id__lte=whole_up_to)
        qs = qs.exclude(id__in=removals.filter(message__isnull=False).values("message_id"))
    return qs.order_by("sent_at", "id").annotate(attachment_count=Count("attachments"))


def hidden_conversation_ids(viewer: Member) -> QuerySet:
    return ConversationHide.objects.filter(member=viewer).values("conversation_id")


def dashboard_summary(viewer: Member) -> dict:
    """The counts at the top of every dashboard, within the viewer's scope."""
    visible = conversations_for(viewer)
    mine = Conversation.objects.filter(participant__member=viewer)
    return {
        "my_conversations": mine.count(),
        "visible_conversations": visible.count(),
        "departments": departments_for(viewer).count(),
        "high_conversations": visible.filter(
            pk__in=Message.objects.filter(sensitivity=Sensitivity.HIGH).values("conversation_id")
        ).count(),
        "recent": visible.select_related("department", "department__parent").order_by(
            F("last_message_at").desc(nulls_last=True), "-id"
        )[:8],
    }


def department_stats(viewer: Member) -> list[dict]:
    """Per department of the manager's subtree: conversations, messages, high-sensitivity
    messages and bytes. Two aggregate queries, whatever the volume."""
    departments = list(departments_for(viewer).order_by("path"))
    ids = [d.pk for d in departments]
    conversations = dict(
        Conversation.objects.filter(department_id__in=ids)
        .values_list("department_id")
        .annotate(n=Count("id"))
    )
    messages = {
        row["conversation__department_id"]: row
        for row in Message.objects.filter(conversation__department_id__in=ids)
        .values("conversation__department_id")
        .annotate(
            n=Count("id"),
            high=Count("id", filter=Q(sensitivity=Sensitivity.HIGH)),
            bytes=Sum("body_bytes"),
        )
    }
    own = {
        d.pk: {
            "conversations": conversations.get(d.pk, 0),
            "messages": messages.get(d.pk, {}).get("n", 0),
            "high": messages.get(d.pk, {}).get("high", 0),
            "bytes": messages.get(d.pk, {}).get("bytes") or 0,
        }
        for d in departments
    }
    # Each row totals its whole subtree: what a deletion of that department would weigh.
    return [
        {
            "department": d,
            **{
                key: sum(own[o.pk][key] for o in departments if o.path.startswith(d.path))
                for key in ("conversations", "messages", "high", "bytes")
            },
        }
        for d in departments
    ]


def readable_bodies(conversation: Conversation, messages) -> dict[int, str | None]:
    """Plaintext of each message; None for one whose ciphertext fails authentication
    (tampered or corrupted), so one bad row cannot take the whole page down.
    Raises KeyDestroyedError when the conversation's key is gone."""
    cipher = ConversationCipher.for_conversation(conversation)
    bodies: dict[int, str | None] = {}
    for message in messages:
        try:
            bodies[message.pk] = cipher.decrypt_text(message.body)
        except DecryptionError:
            logger.error(
                "message %s of conversation %s fails authentication", message.pk, conversation.pk
            )
            bodies[message.pk] = None
    return bodies
