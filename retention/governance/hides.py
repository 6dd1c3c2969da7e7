"""A participant folding a conversation away for themselves: nothing is deleted."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils.translation import gettext as _

from audit import log as audit
from audit.events import EventType
from retention.access import predicates
from retention.models import Conversation, ConversationHide, Member


def do_hide_conversation(conversation: Conversation, *, acting_user: Member) -> bool:
    """Fold a conversation away for oneself; nothing is deleted. Returns False if it
    already was hidden."""
    if not predicates.takes_part_in(conversation, acting_user):
        raise PermissionDenied(_("You can hide only conversations you take part in."))
    with transaction.atomic():
        _hide, created = ConversationHide.objects.get_or_create(
            member=acting_user, conversation=conversation
        )
        if created:
            audit.record(
                EventType.CONVERSATION_HIDDEN,
                actor=acting_user,
                target=conversation,
                department_id=conversation.department_id,
            )
    return created


def do_unhide_conversation(conversation: Conversation, *, acting_user: Member) -> bool:
    with transaction.atomic():
        deleted, _rows = ConversationHide.objects.filter(
            member=acting_user, conversation=conversation
        ).delete()
        if deleted:
            audit.record(
                EventType.CONVERSATION_UNHIDDEN,
                actor=acting_user,
                target=conversation,
                department_id=conversation.department_id,
            )
    return bool(deleted)
