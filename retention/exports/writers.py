"""Export writers: the scope's rows read in bounded batches, decrypted, and written as
JSON Lines, CSV or an HTML transcript (``WRITERS``).

A writer reads in batches that span conversations (a keyset on conversation and id; per
batch one query each for the titles, keys and attachments) and decrypts with each
conversation's key (a destroyed key: the body is null and the row says so). It writes to
a :class:`Sink` (the build job's sealed file), which it asks for a heartbeat after every
batch.

A request export covers exactly the frozen scope (its conversations, ids up to its
high-water mark, its date range) and reads every stored row, so records already in the
recycle bin are still there; purged rows are gone and simply absent. A conversation
export holds what its exporter sees of it.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import lru_cache
from itertools import groupby, islice
from operator import itemgetter
from typing import Any, Protocol

from django.db import connection
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.template.loader import render_to_string
from django.utils import timezone

from audit import cells
from retention.models import (
    Attachment,
    Conversation,
    DataKey,
    DeletionRequest,
    Export,
    ExportFormat,
    Message,
    RequestConversation,
    RequestMethod,
    Sensitivity,
)
from retention.records.crypto import ConversationCipher, DecryptionError, KeyDestroyedError
from retention.records.selectors import messages_of, readable_conversation_ids

logger = logging.getLogger(__name__)

# Messages read, decrypted and written per batch, across conversations: memory stays
# flat at any size.
BATCH_MESSAGES = 2000
# Conversations of a request's scope loaded per query, and read from by one query.
CONVERSATIONS_PER_QUERY = 500

KEY_DESTROYED, DECRYPTION_FAILED = "key_destroyed", "decryption_failed"
# A body the member who asked for the export may not read (the pages would not show it).
NOT_PERMITTED = "not_permitted"
CSV_COLUMNS = [
    "id",
    "conversation",
    "conversation_title",
    "sent_at",
    "sender",
    "sensitivity",
    "body",
    "unreadable",
    "attachments",
]


class Sink(Protocol):
    """Where a writer puts the file's plaintext (the build job's sealed, hashed file)."""

    def write(self, data: bytes) -> None: ...

    def count(self, records: list[dict[str, Any]]) -> None:
        """The records about to be written: the file's message and unreadable counts."""

    def heartbeat(self) -> None:
        """Called after every batch read: the job is alive (and may learn it was superseded)."""


# --- reading the scope --------------------------------------------------------------------

# The columns a record is made of, in the order a batch's rows hold them. The time sent
# and the reasons come as text: Django's loader for PostgreSQL timestamps parses in
# Python and costs as much as the rest of a row, ``datetime.fromisoformat`` reads the same
# text far faster; the reasons are decoded once per distinct text (a handful recur).
ROW_FIELDS = (
    "id",
    "conversation_id",
    "sent_at_text",
    "sender_name",
    "sensitivity",
    "reasons_json",
    "body",
)
SENSITIVITY_NAMES = {level.value: level.name.lower() for level in Sensitivity}

Row = tuple[int, int, str, str, int, str, bytes]


@dataclass(frozen=True)
class _Part:
    """Messages to export (``messages`` says which) and their conversations, in id order."""

    messages: QuerySet[Message]
    conversation_ids: Iterable[int]


def _parts(export: Export) -> Iterator[_Part]:
    """The export's scope: one part, or for a personal request one per removal (each its
    own transcript section, in the order they were filed)."""
    if export.conversation_id:
        messages = messages_of(export.conversation, export.requested_by)
        yield _Part(messages.filter(id__lte=export.max_message_id), [export.conversation_id])
        return
    request = export.request
    if request.method == RequestMethod.PERSONAL:
        for removal in request.removals.order_by("pk"):
            in_scope = (
                Q(pk=removal.message_id)
                if removal.message_id
                else Q(id__lte=removal.up_to_message_id)
            )
            yield _Part(Message.all_rows.filter(in_scope), [removal.conversation_id])
        return
    sent = Q(id__lte=request.max_message_id)
    if request.sent_after:
        sent &= Q(sent_at__gte=request.sent_after)
    if request.sent_before:
        sent &= Q(sent_at__lt=request.sent_before)
    yield _Part(Message.all_rows.filter(sent), _target_ids(request))


def _target_ids(request: DeletionRequest) -> Iterator[int]:
    """The request's conversations in id order, loaded ``CONVERSATIONS_PER_QUERY`` at a time."""
    after = 0
    while True:
        ids = list(
            RequestConversation.objects.filter(request=request, conversation_id__gt=after)
            .order_by("conversation_id")
            .values_list("conversation_id", flat=True)[:CONVERSATIONS_PER_QUERY]
        )
        if not ids:
            return
        yield from ids
        after = ids[-1]


def _batches(part: _Part) -> Iterator[list[Row]]:
    """The part's rows in conversation then id order, ``BATCH_MESSAGES`` at a time, each
    batch spanning as many conversations as it takes (a keyset on conversation and id).

    A batch first finishes the conversation the last one stopped in (by id), then reads
    on from one query over the next ``CONVERSATIONS_PER_QUERY`` conversations, which the
    (conversation, id) index returns in order. A batch is empty when those conversations
    hold nothing in scope and more are to come."""
    rows = (
        part.messages.annotate(
            sent_at_text=Cast("sent_at", TextField()),
            reasons_json=Cast("sensitivity_reasons", TextField()),
        )
        .order_by("conversation_id", "id")
        .values_list(*ROW_FIELDS)
    )
    upcoming = iter(part.conversation_ids)
    ahead: deque[int] = deque()
    # The conversation the last batch stopped in and its last id read; None: none such.
    current, after = 0, None
    while True:
        batch: list[Row] = []
        if after is not None:
            batch = list(rows.filter(conversation_id=current, id__gt=after)[:BATCH_MESSAGES])
            after = batch[-1][0] if len(batch) == BATCH_MESSAGES else None
        if after is None:
            ahead.extend(islice(upcoming, CONVERSATIONS_PER_QUERY - len(ahead)))
            if not ahead:
                if batch:
                    yield batch
                return
            room = BATCH_MESSAGES - len(batch)
            more = list(rows.filter(conversation_id__in=list(ahead))[:room])
            if len(more) == room:  # full: it may stop inside its last conversation
                current, after = more[-1][1], more[-1][0]
                while ahead.popleft() != current:
                    pass
            else:
                ahead.clear()
            batch += more
        yield batch


def _records(
    export: Export, heartbeat: Callable[[], None]
) -> Iterator[tuple[Conversation, list[dict[str, Any]], bool]]:
    """Decrypted records, a batch at a time in slices of one conversation each:
    (conversation, records, whether the slice starts that conversation in its part).

    Per batch, whatever conversations it spans: one query for their titles, one for the
    keys not yet known, one for the attachments."""
    for part in _parts(export):
        ciphers: dict[int, ConversationCipher | None] = {}
        previous = None
        for batch in _batches(part):
            if batch:
                ids = list(dict.fromkeys(row[1] for row in batch))
                conversations = Conversation.objects.select_related("department").in_bulk(ids)
                ciphers = _ciphers(ids, known=ciphers)
                withheld = (
                    set()
                    if export.system
                    else set(ids) - readable_conversation_ids(export.requested_by, ids)
                )
                records = _decrypt(conversations, ciphers, batch, withheld)
                for conversation_id, slice_ in groupby(records, itemgetter("conversation")):
                    yield conversations[conversation_id], list(slice_), conversation_id != previous
                    previous = conversation_id
            heartbeat()


def _ciphers(
    conversation_ids: list[int], *, known: dict[int, ConversationCipher | None]
) -> dict[int, ConversationCipher | None]:
    """The conversations' ciphers (those in ``known`` reused, the others' keys loaded in
    one query); None where the key is destroyed. A key that cannot be unwrapped (a
    retired master key) fails the export: it is configuration, not data."""
    ciphers = {pk: known[pk] for pk in conversation_ids if pk in known}
    missing = [pk for pk in conversation_ids if pk not in ciphers]
    wrapped = dict(
        DataKey.objects.filter(conversation_id__in=missing).values_list(
            "conversation_id", "wrapped_key"
        )
    )
    for pk in missing:
        try:
            ciphers[pk] = ConversationCipher(pk, wrapped.get(pk))
        except KeyDestroyedError:
            ciphers[pk] = None
    return ciphers


def _attachments(batch: list[Row]) -> list[dict[str, Any]]:
    """The attachments of the batch's messages, by message then id: one query over its
    conversations (an attachment is stored with its message's conversation) within its
    range of ids, not over thousands of ids; anything else that finds is left out."""
    ids = {row[0] for row in batch}
    found = (
        Attachment.objects.filter(
            conversation_id__in=list(dict.fromkeys(row[1] for row in batch)),
            message_id__gte=min(ids),
            message_id__lte=max(ids),
        )
        .order_by("message_id", "pk")
        .values("message_id", "name", "content_type", "size", "sha256")
    )
    return [row for row in found if row["message_id"] in ids]


def _moment(text: str) -> datetime:
    """A stored time from its text: PostgreSQL's carries its offset (ISO, the only date
    style psycopg reads), SQLite's is naive in the connection's time zone."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=connection.timezone)


@lru_cache(maxsize=1024)
def _reasons(text: str) -> list[str]:
    """A message's sensitivity reasons from their JSON text; the lists are shared, and
    nothing changes them."""
    return json.loads(text)


def _decrypt(
    conversations: dict[int, Conversation],
    ciphers: dict[int, ConversationCipher | None],
    batch: list[Row],
    withheld: set[int],
) -> list[dict[str, Any]]:
    attachments: dict[int, list[dict[str, Any]]] = {}
    for row in _attachments(batch):
        attachments.setdefault(row.pop("message_id"), []).append(row)
    records = []
    for pk, conversation_id, sent_at, sender_name, sensitivity, reasons, body in batch:
        cipher = ciphers[conversation_id]
        text, unreadable = None, KEY_DESTROYED
        if conversation_id in withheld:
            unreadable = NOT_PERMITTED
        elif cipher is not None:
            try:
                text, unreadable = cipher.decrypt_text(body), None
            except DecryptionError:
                logger.error("message %s fails authentication", pk)
                unreadable = DECRYPTION_FAILED
        records.append(
            {
                "id": pk,
                "conversation": conversation_id,
                "conversation_title": conversations[conversation_id].title,
                "sent_at": _moment(sent_at),
                "sender": sender_name,
                "sensitivity": SENSITIVITY_NAMES[sensitivity],
                "sensitivity_reasons": _reasons(reasons),
                "body": text,
                "unreadable": unreadable,
                "attachments": attachments.get(pk, []),
            }
        )
    return records


def _iso(moment: datetime, zone: tzinfo) -> str:
    return timezone.localtime(moment, zone).isoformat()


# --- the three formats --------------------------------------------------------------------


def _write_jsonl(export: Export, sink: Sink) -> None:
    """One JSON object per message, UTF-8, in conversation and id order."""
    zone, encode = timezone.get_current_timezone(), json.JSONEncoder(ensure_ascii=False).encode
    for _conversation, records, _first in _records(export, sink.heartbeat):
        sink.count(records)
        lines = [encode({**r, "sent_at": _iso(r["sent_at"], zone)}) + "\n" for r in records]
        sink.write("".join(lines).encode())


class _TextSink:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def write(self, text: str) -> None:
        self.sink.write(text.encode())


def _write_csv(export: Export, sink: Sink) -> None:
    """UTF-8 with a byte-order mark, so that spreadsheet programs read Chinese right; cells
    that start like a formula are defused by the one guarded writer (:mod:`audit.cells`),
    while the JSON Lines export keeps every body exactly."""
    sink.write("\ufeff".encode())
    writer = cells.CsvWriter(_TextSink(sink))
    writer.writerow(CSV_COLUMNS)
    zone = timezone.get_current_timezone()
    for _conversation, records, _first in _records(export, sink.heartbeat):
        sink.count(records)
        writer.writerows(
            [
                r["id"],
                r["conversation"],
                r["conversation_title"],
                _iso(r["sent_at"], zone),
                r["sender"],
                r["sensitivity"],
                "" if r["body"] is None else r["body"],
                r["unreadable"] or "",
                "; ".join(a["name"] for a in r["attachments"]),
            ]
            for r in records
        )


TRANSCRIPT = "retention/exports/transcript.html"
# Each rendered part ends in a newline: a conversation's messages are rendered this many
# at a time from its start, whatever the batches read, so that the transcript's bytes do
# not depend on where a batch ends.
TRANSCRIPT_MESSAGES_PER_PART = 2000


def _write_html(export: Export, sink: Sink) -> None:
    """A readable transcript: one section per conversation; the template escapes all."""

    def part(name: str, **context: Any) -> None:
        sink.write(render_to_string(TRANSCRIPT, {"part": name, **context}).encode())

    def messages(*, every: bool) -> None:
        while pending and (every or len(pending) >= TRANSCRIPT_MESSAGES_PER_PART):
            part("messages", records=pending[:TRANSCRIPT_MESSAGES_PER_PART])
            del pending[:TRANSCRIPT_MESSAGES_PER_PART]

    part("start", export=export, generated_at=timezone.now())
    current = None
    pending: list[dict[str, Any]] = []
    for conversation, records, first in _records(export, sink.heartbeat):
        sink.count(records)
        if first:
            if current is not None:
                messages(every=True)
                part("close")
            part("open", conversation=conversation)
            current = conversation
        pending += records
        messages(every=False)
    if current is not None:
        messages(every=True)
        part("close")
    part("end", messages=sink.messages, unreadable=sink.unreadable)


WRITERS = {
    ExportFormat.JSONL: _write_jsonl,
    ExportFormat.CSV: _write_csv,
    ExportFormat.HTML: _write_html,
}
