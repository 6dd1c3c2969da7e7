"""Turning demo messages into stored rows, fast.

Each message is classified and encrypted with exactly the calls
:func:`retention.records.store.build_message` makes (same classifier, same cipher, so the same
nonce ‖ ciphertext format and AAD), then written in chunks: PostgreSQL COPY on
PostgreSQL, ``bulk_create`` elsewhere. The few messages with a file go through the ORM
and :func:`retention.records.store.store_attachment`, because attachments need the message's id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, connections, models, transaction
from django.utils import timezone

from retention.models import Conversation, Message, Participant
from retention.records.classify import Classification, classify
from retention.records.crypto import ConversationCipher
from retention.records.store import NewAttachment, store_attachment

# The message columns the generator fills itself, in this order; every other column of
# the table (source, source_id, ingested_at, and any column added later) gets the value
# the model would give a new row, computed once per chunk.
ROW_COLUMNS = (
    "conversation_id",
    "sender_id",
    "sender_name",
    "sent_at",
    "body",
    "body_bytes",
    "sensitivity",
    "sensitivity_reasons",
)
# Distinct bodies are classified once; the cache is emptied when it gets this big so a
# long seed stays within bounded memory.
CLASSIFY_CACHE_LIMIT = 200_000


@dataclass(slots=True)
class Row:
    """A message ready to store: the fields build_message would set."""

    conversation_id: int
    sender_id: int | None
    sender_name: str
    sent_at: datetime
    body: bytes
    body_bytes: int
    sensitivity: int
    reasons: tuple[str, ...]

    def to_model(self) -> Message:
        return Message(
            conversation_id=self.conversation_id,
            sender_id=self.sender_id,
            sender_name=self.sender_name,
            sent_at=self.sent_at,
            body=self.body,
            body_bytes=self.body_bytes,
            sensitivity=self.sensitivity,
            sensitivity_reasons=list(self.reasons),
            # build_message sets a source only together with a source id; demo
            # messages have neither (their conversations carry source "demo").
            source="",
            source_id="",
        )


class Encoder:
    """Classify and encrypt one message body as the store does, caching classification."""

    def __init__(self) -> None:
        self._cache: dict[str, Classification] = {}

    def classify(self, text: str) -> Classification:
        result = self._cache.get(text)
        if result is None:
            if len(self._cache) >= CLASSIFY_CACHE_LIMIT:
                self._cache.clear()
            result = self._cache[text] = classify(text)
        return result

    def row(
        self,
        conversation_id: int,
        cipher: ConversationCipher,
        sender_id: int | None,
        sender_name: str,
        sent_at: datetime,
        text: str,
    ) -> Row:
        # The same three calls as retention.records.store.build_message.
        plaintext = text.encode()
        result = self.classify(text)
        return Row(
            conversation_id,
            sender_id,
            sender_name,
            sent_at,
            cipher.encrypt(plaintext),
            len(plaintext),
            result.level,
            result.reasons,
        )


def _constant_columns(model: type[models.Model], skip: set[str]) -> list[models.Field]:
    """Columns outside ``skip`` whose value does not depend on the row: auto_now fields
    and fields with a default (or nullable). Anything else cannot be filled here, and
    raises before anything is written."""
    fields = []
    for f in model._meta.concrete_fields:
        if f.primary_key or f.column in skip:
            continue
        automatic = getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
        # get_default() is what a new instance gets: "" for a CharField, None if nothing.
        if not (automatic or f.null or f.get_default() is not None):
            raise RuntimeError(
                f"{model._meta.db_table}.{f.column} has no default; the demo writer "
                "cannot fill it (update retention/demo/writer.py)"
            )
        fields.append(f)
    return fields


def _constant_value(field: models.Field) -> object:
    # Once per chunk suits defaults such as "", 0, False or "now"; a column whose default
    # must differ per row (a unique uuid4) would fail loudly on COPY, not go in wrong.
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        value = timezone.now()
    else:
        value = field.get_default()
    return field.get_db_prep_save(value, connection)


def use_copy() -> bool:
    return connection.vendor == "postgresql"


class ChunkWriter:
    """Writes chunks of rows, each chunk in its own short transaction."""

    def __init__(self, *, batch_size: int = 1000) -> None:
        self.copy = use_copy()
        self.batch_size = batch_size
        self._reasons_json: dict[tuple[str, ...], str] = {}
        self._constants = _constant_columns(Message, set(ROW_COLUMNS))
        table = connection.ops.quote_name(Message._meta.db_table)
        columns = [*ROW_COLUMNS, *(f.column for f in self._constants)]
        quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
        self._copy_sql = f"COPY {table} ({quoted}) FROM STDIN"

    def write(
        self,
        rows: list[Row],
        attached: list[tuple[Row, Conversation, ConversationCipher, NewAttachment]],
    ) -> None:
        with transaction.atomic():
            if rows:
                if self.copy:
                    self._copy(rows)
                else:
                    Message.objects.bulk_create(
                        [r.to_model() for r in rows], batch_size=self.batch_size
                    )
            if attached:
                # These need their ids back for the attachment rows: ORM insert.
                messages = Message.objects.bulk_create([r.to_model() for r, _, _, _ in attached])
                for message, (_, conversation, cipher, new) in zip(messages, attached, strict=True):
                    store_attachment(conversation, cipher, message, new)

    def _copy(self, rows: Iterable[Row]) -> None:
        constants = tuple(_constant_value(f) for f in self._constants)
        reasons_json = self._reasons_json
        with connection.cursor() as cursor, cursor.copy(self._copy_sql) as copy:
            write_row = copy.write_row
            for r in rows:
                reasons = reasons_json.get(r.reasons)
                if reasons is None:
                    reasons = reasons_json[r.reasons] = json.dumps(list(r.reasons))
                write_row(
                    (
                        r.conversation_id,
                        r.sender_id,
                        r.sender_name,
                        r.sent_at,
                        r.body,
                        r.body_bytes,
                        r.sensitivity,
                        reasons,
                        *constants,
                    )
                )


def insert_rows(model: type[models.Model], objects: list[models.Model]) -> None:
    """Insert unsaved model instances and set their primary keys.

    On PostgreSQL the ids are taken from the table's sequence first and the rows sent
    with COPY: for tens of thousands of conversations, keys and participants that is ~10×
    faster than ``bulk_create``'s huge INSERT statements. Values are prepared by each
    field exactly as an ORM save would (defaults, auto_now_add, JSON), so a field added
    to the model later is filled too.
    """
    if not objects:
        return
    if not use_copy():
        model.objects.bulk_create(objects, batch_size=1000)
        return
    meta = model._meta
    qn = connection.ops.quote_name
    pk = meta.pk
    fields = list(meta.concrete_fields)
    if isinstance(pk, models.AutoField | models.BigAutoField | models.SmallAutoField):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [meta.db_table, pk.column, len(objects)],
            )
            for obj, (new_id,) in zip(objects, cursor.fetchall(), strict=True):
                setattr(obj, pk.attname, new_id)
    columns = ", ".join(qn(f.column) for f in fields)
    sql = f"COPY {qn(meta.db_table)} ({columns}) FROM STDIN"
    # The real connection object, not the proxy: it is looked up ~10 times per row.
    db = connections[connection.alias]
    with connection.cursor() as cursor, cursor.copy(sql) as copy:
        for obj in objects:
            copy.write_row([f.get_db_prep_save(f.pre_save(obj, add=True), db) for f in fields])
    for obj in objects:
        obj._state.adding = False
        obj._state.db = connection.alias


def stamp_conversations(source: str) -> int:
    """Set each demo conversation's first and last message time in one statement.

    ``created_at`` becomes the first message's time and participants' ``joined_at`` the
    same, so nobody looks as if they joined today a chat they have talked in for months.
    """
    qn = connection.ops.quote_name
    conversation_table = qn(Conversation._meta.db_table)
    message_table = qn(Message._meta.db_table)
    participant_table = qn(Participant._meta.db_table)
    stamp = (
        f"UPDATE {conversation_table} SET created_at = agg.first_at, last_message_at = agg.last_at "
        f"FROM (SELECT m.conversation_id, MIN(m.sent_at) AS first_at, MAX(m.sent_at) AS last_at "
        f"FROM {message_table} m INNER JOIN {conversation_table} c ON c.id = m.conversation_id "
        f"WHERE c.source = %s GROUP BY m.conversation_id) agg "
        f"WHERE {conversation_table}.id = agg.conversation_id"
    )
    joined = (
        f"UPDATE {participant_table} SET joined_at = c.created_at FROM {conversation_table} c "
        f"WHERE c.id = {participant_table}.conversation_id AND c.source = %s"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(stamp, [source])
        stamped = cursor.rowcount
        cursor.execute(joined, [source])
    return stamped
