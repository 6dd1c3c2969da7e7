"""The encrypted chat-record store: creating conversations, writing and reading messages.

Everything that puts records in (ingest API, import command, demo data) goes through
here, so every body is classified and encrypted the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.db.models import Max, OuterRef, Subquery

from retention.models import (
    Attachment,
    Conversation,
    DataKey,
    Department,
    Member,
    Message,
    Participant,
)
from retention.records.classify import classify
from retention.records.crypto import ConversationCipher, new_wrapped_key


@dataclass(frozen=True, slots=True)
class NewAttachment:
    name: str
    content: bytes
    content_type: str = ""


@dataclass(frozen=True, slots=True)
class NewMessage:
    sender_name: str
    sent_at: datetime
    body: str
    sender: Member | None = None
    source_id: str = ""
    attachments: Sequence[NewAttachment] = field(default_factory=tuple)


def create_conversation(
    *,
    kind: str,
    title: str,
    department: Department,
    participants: Iterable[Member] = (),
    external_party: str = "",
    source: str = "",
    source_id: str = "",
) -> Conversation:
    """A conversation with its own fresh data key and its participants."""
    with transaction.atomic():
        conversation = Conversation.objects.create(
            kind=kind,
            title=title,
            department=department,
            external_party=external_party,
            source=source,
            source_id=source_id,
        )
        DataKey.objects.create(
            conversation=conversation, wrapped_key=new_wrapped_key(conversation.pk)
        )
        Participant.objects.bulk_create(
            [Participant(conversation=conversation, member=m) for m in participants],
            ignore_conflicts=True,
        )
    return conversation


def build_message(
    conversation: Conversation, cipher: ConversationCipher, new: NewMessage, *, source: str = ""
) -> Message:
    """An unsaved, classified and encrypted message row (for bulk_create)."""
    body_bytes = new.body.encode()
    result = classify(new.body)
    return Message(
        conversation=conversation,
        sender=new.sender,
        sender_name=new.sender_name,
        sent_at=new.sent_at,
        body=cipher.encrypt(body_bytes),
        body_bytes=len(body_bytes),
        sensitivity=result.level,
        sensitivity_reasons=list(result.reasons),
        source=source if new.source_id else "",
        source_id=new.source_id,
    )


def add_messages(
    conversation: Conversation, messages: Sequence[NewMessage], *, source: str = ""
) -> list[Message]:
    """Encrypt, classify and store messages (and their attachments) in one transaction."""
    with transaction.atomic():
        cipher = ConversationCipher(conversation.pk, _key_for_writing(conversation.pk))
        rows = Message.objects.bulk_create(
            [build_message(conversation, cipher, new, source=source) for new in messages]
        )
        for row, new in zip(rows, messages, strict=True):
            for attachment in new.attachments:
                store_attachment(conversation, cipher, row, attachment)
        touch_last_message(conversation)
    return rows


def _key_for_writing(conversation_id: int) -> bytes | None:
    """The conversation's wrapped key, share-locked until the write commits: a wipe that
    destroys the key (FOR UPDATE) either waits for this write and then sees its messages,
    or has already destroyed the key and this write is refused. No message can be
    written under a key that is destroyed a moment later."""
    table = DataKey._meta.db_table
    lock = " FOR SHARE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT wrapped_key FROM {table} WHERE conversation_id = %s{lock}", [conversation_id]
        )
        row = cursor.fetchone()
    return bytes(row[0]) if row and row[0] is not None else None


def store_attachment(
    conversation: Conversation, cipher: ConversationCipher, message: Message, new: NewAttachment
) -> Attachment:
    attachment = Attachment(
        message=message,
        conversation=conversation,
        name=new.name,
        content_type=new.content_type,
        size=len(new.content),
        sha256=hashlib.sha256(new.content).hexdigest(),
    )
    attachment.file.save("blob", ContentFile(cipher.encrypt(new.content)), save=False)
    attachment.save()
    return attachment


def touch_last_message(conversation: Conversation) -> None:
    last = Message.objects.filter(conversation=conversation).aggregate(last=Max("sent_at"))["last"]
    Conversation.objects.filter(pk=conversation.pk).update(last_message_at=last)


def refresh_last_message(conversation_ids) -> None:
    """Recompute "last message" of conversations after records left or came back."""
    newest = (
        Message.objects.filter(conversation=OuterRef("pk"))
        .order_by("-sent_at")
        .values("sent_at")[:1]
    )
    Conversation.objects.filter(pk__in=list(conversation_ids)).update(
        last_message_at=Subquery(newest)
    )


def read_body(cipher: ConversationCipher, message: Message) -> str:
    return cipher.decrypt_text(message.body)


def read_attachment(cipher: ConversationCipher, attachment: Attachment) -> bytes:
    with attachment.file.open("rb") as handle:
        return cipher.decrypt(handle.read())
