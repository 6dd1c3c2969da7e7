"""Exports: a deletion request's frozen scope, or a conversation, as a file (JSON Lines,
CSV or an HTML transcript): the backup before a deletion and the evidence of it.

Asking for one (``do_request_export``) is an action: permission, a queued ``Export`` row
and the audit event in one transaction, the job enqueued on commit. The job
(``build_export``) reads in bounded batches that span conversations (a keyset on
conversation and id; per batch one query each for the titles, keys and attachments),
decrypts with each conversation's key (a destroyed key: the body is null and the row says
so), encrypts the file under a fresh data key of its own (``retention.exports.sealed``; the
key is kept on the row, wrapped by the master key), writes it to the default storage under
a random name and records the SHA-256, size and counts of the plaintext, in the row and in
the audit log. Every download is audited, and decrypted as it streams.

The job touches the row's heartbeat every few seconds; a running export whose heartbeat
stopped (a killed worker) is queued again and starts from scratch, and a queued export
whose job Redis lost is enqueued again (``requeue_stalled_exports``). After the
``export_keep_days`` policy an export expires: its file is deleted, its key destroyed, and
its row and checksum stay (``expire_exports``).

A request export covers exactly the frozen scope (its conversations, ids up to its
high-water mark, its date range) and reads every stored row, so records already in the
recycle bin are still there; purged rows are gone and simply absent. A conversation
export holds what its exporter sees of it.

Who may export (and download): for a request, its requester, whoever approved one of
its steps or may decide its current step, auditors and admins; for a conversation,
whoever may read its bodies, and auditors. The selectors make anything else a 404;
seeing a target without being allowed to export it is a PermissionDenied (403).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from itertools import groupby, islice
from operator import itemgetter
from typing import Any

import django_rq
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F, Max, Q, QuerySet, TextField
from django.db.models.functions import Cast, Coalesce
from django.template.loader import render_to_string
from django.utils import formats, timezone, translation
from django.utils.translation import gettext as _
from rq.job import JobStatus

from audit import log as audit
from audit.events import EventType
from retention.access.predicates import refusal_to_decide, requests_for
from retention.errors import Conflict
from retention.exports.sealed import SealedWriter, opened
from retention.governance import approvals
from retention.models import (
    Attachment,
    Conversation,
    DataKey,
    DeletionRequest,
    Export,
    ExportFormat,
    ExportStatus,
    Member,
    Message,
    RequestConversation,
    RequestMethod,
    Sensitivity,
    StepStatus,
)
from retention.models.roles import Role
from retention.policies import get_policy
from retention.records import crypto
from retention.records.crypto import ConversationCipher, DecryptionError, KeyDestroyedError
from retention.records.selectors import (
    can_read_bodies,
    conversations_for,
    messages_of,
    readable_conversation_ids,
)

logger = logging.getLogger(__name__)

QUEUE = "default"
# Messages read, decrypted and written per batch, across conversations: memory stays
# flat at any size.
BATCH_MESSAGES = 2000
# Conversations of a request's scope loaded per query, and read from by one query.
CONVERSATIONS_PER_QUERY = 500
# A running export touches its heartbeat at most this often (seconds).
BEAT_SECONDS = 5.0
# A running export whose heartbeat is older than this was left by a dead worker.
STALLED_AFTER = timedelta(minutes=10)
# RQ states of a job that will still run.
PENDING_JOB_STATUSES = {
    JobStatus.CREATED,
    JobStatus.QUEUED,
    JobStatus.STARTED,
    JobStatus.DEFERRED,
    JobStatus.SCHEDULED,
}
# Runs an export gets: one whose writing kills its worker every time fails in the end.
MAX_ATTEMPTS = 3

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

Target = DeletionRequest | Conversation


# --- who may ------------------------------------------------------------------------------


def may_export(target: Target, member: Member) -> bool:
    if not member.is_authenticated or not member.is_active:
        return False
    if isinstance(target, Conversation):
        return can_read_bodies(member, target)
    if member.has_role(Role.AUDITOR, Role.ADMIN) or target.requester_id == member.pk:
        return True
    if target.steps.filter(approver=member, status=StepStatus.APPROVED).exists():
        return True
    step = approvals.current_step(target)
    return step is not None and refusal_to_decide(step, member) is None


def may_download(export: Export, member: Member) -> bool:
    """Whoever may export the target now (not whoever asked once)."""
    return may_export(export.target, member)


def exports_for(viewer: Member) -> QuerySet[Export]:
    """Exports whose request or conversation the viewer can see; anything else is a 404."""
    return Export.objects.filter(
        Q(request__in=requests_for(viewer).values("pk"))
        | Q(conversation__in=conversations_for(viewer).values("pk"))
    ).select_related("request", "conversation", "requested_by")


def exports_of(target: Target) -> QuerySet[Export]:
    field = "request" if isinstance(target, DeletionRequest) else "conversation"
    return Export.objects.filter(**{field: target}).select_related("requested_by")


def evidence_export_pending(request: DeletionRequest) -> bool:
    return Export.objects.filter(
        request=request, status__in=[ExportStatus.QUEUED, ExportStatus.RUNNING]
    ).exists()


def has_evidence_export(request: DeletionRequest) -> bool:
    """Whether a finished export of the request exists: what a request with
    high-sensitivity records in scope needs before it may run."""
    return Export.objects.filter(request=request, status=ExportStatus.READY).exists()


# --- asking for one -----------------------------------------------------------------------


def do_request_export(
    target: Target, *, fmt: str, acting_user: Member, on_behalf_of_system: bool = False
) -> Export:
    """Queue an export of a request's frozen scope or of a conversation.

    ``on_behalf_of_system``: the run engine asks for the evidence an archiving retention
    rule needs; the export is in the rule approver's name (``acting_user``)."""
    if not on_behalf_of_system and not may_export(target, acting_user):
        raise PermissionDenied(_("You may not export this."))
    if fmt not in ExportFormat.values:
        raise ValidationError(
            {"format": [_("Choose one of: %(formats)s.") % {"formats": ", ".join(ExportFormat)}]}
        )
    is_request = isinstance(target, DeletionRequest)
    if not on_behalf_of_system:
        _check_bounds(target, acting_user)
    with transaction.atomic():
        export = Export.objects.create(
            request=target if is_request else None,
            conversation=None if is_request else target,
            format=fmt,
            requested_by=acting_user,
            system=on_behalf_of_system,
            language=translation.get_language() or settings.LANGUAGE_CODE,
            max_message_id=target.max_message_id if is_request else _newest_id(target),
        )
        audit.record(
            EventType.EXPORT_REQUESTED,
            actor=None if on_behalf_of_system else acting_user,
            target=target,
            department_id=_department_id(target),
            details={"export": export.pk, "format": fmt}
            | ({"by_system": True} if on_behalf_of_system else {}),
        )
        _enqueue_build(export.pk)
    return export


def _job_id(export_id: int) -> str:
    return f"export-{export_id}"


def _enqueue_build(export_id: int) -> None:
    """The export's job, on commit, under an id of its own: a job that Redis lost can
    then be told from one that still waits its turn."""
    transaction.on_commit(
        lambda: django_rq.get_queue(QUEUE).enqueue(
            "retention.jobs.tasks.build_export", export_id, job_id=_job_id(export_id)
        )
    )


def _check_bounds(target: Target, member: Member) -> None:
    """One member cannot make the workers write without end: at most
    ``QINGLI_MAX_OPEN_EXPORTS`` of their exports wait or run at once, and one export holds
    at most ``QINGLI_MAX_EXPORT_MESSAGES`` messages."""
    waiting = Export.objects.filter(
        requested_by=member, system=False, status__in=[ExportStatus.QUEUED, ExportStatus.RUNNING]
    ).count()
    if waiting >= settings.QINGLI_MAX_OPEN_EXPORTS:
        message = _(
            "%(n)d of your exports are still being written; ask for another once one is ready."
        )
        raise ValidationError({"export": [message % {"n": waiting}]})
    if isinstance(target, DeletionRequest):
        size = int((target.preview or {}).get("messages") or 0)
    else:
        size = Message.all_rows.filter(conversation=target).count()
    if size > settings.QINGLI_MAX_EXPORT_MESSAGES:
        message = _("This export would hold %(n)d messages; one export holds at most %(max)d.")
        raise ValidationError(
            {"export": [message % {"n": size, "max": settings.QINGLI_MAX_EXPORT_MESSAGES}]}
        )


def _newest_id(conversation: Conversation) -> int:
    newest = Message.all_rows.filter(conversation=conversation).aggregate(n=Max("id"))["n"]
    return newest or 0


def _department_id(target: Target) -> int | None:
    if isinstance(target, DeletionRequest):
        return target.scope_root_id
    return target.department_id


def _audit(
    event_type: EventType,
    export: Export,
    *,
    actor: Member | None = None,
    ip_address: str | None = None,
    **details: Any,
) -> None:
    """An event of an export, on the timeline of its request or conversation."""
    audit.record(
        event_type,
        actor=actor,
        target=export.target,
        department_id=_department_id(export.target),
        ip_address=ip_address,
        details={"export": export.pk, "format": export.format, **details},
    )


# --- the job ------------------------------------------------------------------------------


class _Superseded(Exception):
    """This run was taken for dead and the export queued again: it stops, writing nothing."""


def build_export(export_id: int) -> Export:
    """Write the export's file, encrypted under a fresh data key. A second run of the same
    job does nothing; a run of a restarted export starts from scratch, removing whatever
    file an earlier run left."""
    export, data_key = _claim(export_id)
    if data_key is None:
        return export
    name = export.file.name
    try:
        with (
            tempfile.TemporaryFile() as handle,
            translation.override(export.language or settings.LANGUAGE_CODE),
        ):
            sink = _Sink(SealedWriter(handle, data_key, export.pk))
            WRITERS[export.format](export, sink)
            sink.close()
            _beat(export)
            handle.seek(0)
            name = default_storage.save(name, File(handle))
        if not _finish(export, name, sink):
            raise _Superseded
    except _Superseded:
        logger.warning("export %s: run %s was superseded by a restart", export_id, export.attempts)
        default_storage.delete(name)
    except Exception as exc:
        logger.exception("export %s failed", export_id)
        _fail(export, f"{type(exc).__name__}: {exc}")
        default_storage.delete(name)  # this run's own name: safe whoever runs now
    export.refresh_from_db()
    return export


def _claim(export_id: int) -> tuple[Export, bytes | None]:
    """Take a queued export (compare-and-swap) for a new run with a fresh data key and a
    fresh file name, both on the row before any byte is written. None: not queued."""
    now = timezone.now()
    with transaction.atomic():
        claimed = Export.objects.filter(pk=export_id, status=ExportStatus.QUEUED).update(
            status=ExportStatus.RUNNING,
            started_at=now,
            heartbeat_at=now,
            attempts=F("attempts") + 1,
        )
        export = Export.objects.select_related("request", "conversation", "requested_by").get(
            pk=export_id
        )
        if not claimed:
            return export, None
        left_behind = export.file.name
        data_key, export.wrapped_key = crypto.new_export_key(export.pk)
        export.file = f"exports/{uuid.uuid4().hex}.enc"
        export.save(update_fields=["file", "wrapped_key"])
    if left_behind:
        default_storage.delete(left_behind)  # an earlier run's, if it got that far
    return export, data_key


def _this_run(export: Export) -> QuerySet[Export]:
    """The row, as long as this run is still the export's latest."""
    return Export.objects.filter(
        pk=export.pk, status=ExportStatus.RUNNING, attempts=export.attempts
    )


def _beat(export: Export) -> None:
    """Alive (every ``BEAT_SECONDS`` while reading, and before the file is saved). A run
    that is no longer the latest stops here."""
    if not _this_run(export).update(heartbeat_at=timezone.now()):
        raise _Superseded


class _Sink:
    """Plaintext to the sealed file, counted and hashed on the way: the checksum and size
    are those of what a download gives back."""

    def __init__(self, out: SealedWriter) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0
        self.messages = 0
        self.unreadable = 0

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.digest.update(data)
        self.size += len(data)

    def close(self) -> None:
        self.out.close()

    def count(self, records: list[dict[str, Any]]) -> None:
        self.messages += len(records)
        self.unreadable += sum(1 for r in records if r["unreadable"])


def _finish(export: Export, name: str, sink: _Sink) -> bool:
    """Ready, and audited; False if this run was superseded meanwhile."""
    done = {
        "status": ExportStatus.READY,
        "finished_at": timezone.now(),
        "file": name,
        "sha256": sink.digest.hexdigest(),
        "size": sink.size,
        "messages": sink.messages,
        "unreadable": sink.unreadable,
    }
    with transaction.atomic():
        if not _this_run(export).update(**done):
            return False
        _audit(
            EventType.EXPORT_COMPLETED,
            export,
            **{k: done[k] for k in ("sha256", "size", "messages", "unreadable")},
        )
    return True


def _fail(export: Export, error: str, *, still: Q | None = None) -> bool:
    """Failed and audited, with neither file nor key; False if a restart took over (or
    the row no longer matches ``still``). The caller deletes the file."""
    error = error[:2000]
    with transaction.atomic():
        failed = (
            _this_run(export)
            .filter(still or Q())
            .update(
                status=ExportStatus.FAILED,
                finished_at=timezone.now(),
                error=error,
                file="",
                wrapped_key=None,
            )
        )
        if failed:
            _audit(EventType.EXPORT_FAILED, export, error=error)
    return bool(failed)


def requeue_stalled_exports(*, now: datetime | None = None) -> list[int]:
    """Every few minutes: a running export with no heartbeat for ``STALLED_AFTER`` was
    left by a dead worker. It is queued again (audited) and its job enqueued on commit;
    the new run starts from scratch. After ``MAX_ATTEMPTS`` runs it fails instead."""
    now = now or timezone.now()
    stale = Q(heartbeat_at__lt=now - STALLED_AFTER) | Q(
        heartbeat_at__isnull=True, started_at__lt=now - STALLED_AFTER
    )
    stalled = list(
        Export.objects.filter(status=ExportStatus.RUNNING)
        .annotate(beat=Coalesce("heartbeat_at", "started_at", "created_at"))
        .filter(beat__lt=now - STALLED_AFTER)
        .select_related("request", "conversation")
        .order_by("pk")
    )
    requeued = []
    for export in stalled:
        if export.attempts >= MAX_ATTEMPTS:
            message = _("Its worker stopped %(n)d times while writing it.") % {"n": export.attempts}
            if _fail(export, message, still=stale) and export.file.name:
                default_storage.delete(export.file.name)
            continue
        with transaction.atomic():
            if not _this_run(export).filter(stale).update(status=ExportStatus.QUEUED):
                continue  # it beat meanwhile, or finished
            _audit(
                EventType.EXPORT_RESTARTED,
                export,
                attempts=export.attempts,
                heartbeat_at=export.beat.isoformat(),
            )
            _enqueue_build(export.pk)
        requeued.append(export.pk)
    # Queued, but its job is gone (Redis restarted or was flushed): nothing would ever
    # run it, and a request waiting for it as evidence would wait for ever.
    waiting = Export.objects.filter(
        status=ExportStatus.QUEUED,
        created_at__lt=now - STALLED_AFTER,
    ).order_by("pk")
    for export in waiting.exclude(pk__in=requeued).select_related("request", "conversation"):
        job = django_rq.get_queue(QUEUE).fetch_job(_job_id(export.pk))
        job_status = job.get_status() if job is not None else None
        if job_status in PENDING_JOB_STATUSES:
            continue  # still waiting its turn
        with transaction.atomic():
            queued = Export.objects.select_for_update().filter(
                pk=export.pk, status=ExportStatus.QUEUED
            )
            if not queued.exists():
                continue  # a worker claimed it meanwhile
            if job is None:
                _audit(EventType.EXPORT_RESTARTED, export, attempts=export.attempts, job="lost")
                _enqueue_build(export.pk)
                requeued.append(export.pk)
                continue
            # Its job ran and ended before it could begin the export: running it again
            # would only end the same way, every five minutes.
            error = _("Its job ended (%(status)s) before the export began.") % {
                "status": job_status
            }
            queued.update(status=ExportStatus.FAILED, finished_at=timezone.now(), error=error)
            _audit(EventType.EXPORT_FAILED, export, error=error)
    return requeued


def expire_exports(*, now: datetime | None = None) -> list[int]:
    """Daily: a ready export written more than ``export_keep_days`` ago expires. Its key
    is destroyed first (so the file is unreadable even if deleting it fails), then its
    file is deleted; the row, its checksum and counts stay, and each expiry is audited.
    A file written before exports were encrypted (no key) expires at once."""
    now = now or timezone.now()
    keep_days = get_policy("export_keep_days")
    due = Export.objects.filter(
        Q(finished_at__lt=now - timedelta(days=keep_days)) | Q(wrapped_key__isnull=True),
        status=ExportStatus.READY,
    )
    expired = []
    for export in list(due.select_related("request", "conversation").order_by("pk")):
        with transaction.atomic():
            taken = Export.objects.filter(pk=export.pk, status=ExportStatus.READY).update(
                status=ExportStatus.EXPIRED, expired_at=now, wrapped_key=None, file=""
            )
            if not taken:
                continue
            _audit(
                EventType.EXPORT_EXPIRED,
                export,
                sha256=export.sha256,
                finished_at=export.finished_at.isoformat() if export.finished_at else None,
                keep_days=keep_days,
                encrypted=export.wrapped_key is not None,
            )
        expired.append(export.pk)
        if export.file.name:
            try:
                default_storage.delete(export.file.name)
            except Exception:
                logger.exception(
                    "export %s expired (key destroyed) but %s could not be deleted",
                    export.pk,
                    export.file.name,
                )
    return expired


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


class _Heartbeat:
    """Touches the export's heartbeat once ``BEAT_SECONDS`` have passed since the last."""

    def __init__(self, export: Export) -> None:
        self.export = export
        self.last = time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self.last >= BEAT_SECONDS:
            _beat(self.export)
            self.last = time.monotonic()


def _records(export: Export) -> Iterator[tuple[Conversation, list[dict[str, Any]], bool]]:
    """Decrypted records, a batch at a time in slices of one conversation each:
    (conversation, records, whether the slice starts that conversation in its part).

    Per batch, whatever conversations it spans: one query for their titles, one for the
    keys not yet known, one for the attachments."""
    heartbeat = _Heartbeat(export)
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


def _write_jsonl(export: Export, sink: _Sink) -> None:
    """One JSON object per message, UTF-8, in conversation and id order."""
    zone, encode = timezone.get_current_timezone(), json.JSONEncoder(ensure_ascii=False).encode
    for _conversation, records, _first in _records(export):
        sink.count(records)
        lines = [encode({**r, "sent_at": _iso(r["sent_at"], zone)}) + "\n" for r in records]
        sink.write("".join(lines).encode())


class _TextSink:
    def __init__(self, sink: _Sink) -> None:
        self.sink = sink

    def write(self, text: str) -> None:
        self.sink.write(text.encode())


def _cell(text: str) -> str:
    """Spreadsheets run a cell that starts like a formula: such text gets a leading
    apostrophe (the JSON Lines export keeps every body exactly)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _write_csv(export: Export, sink: _Sink) -> None:
    """UTF-8 with a byte-order mark, so that spreadsheet programs read Chinese right."""
    sink.write("\ufeff".encode())
    writer = csv.writer(_TextSink(sink))
    writer.writerow(CSV_COLUMNS)
    zone = timezone.get_current_timezone()
    for _conversation, records, _first in _records(export):
        sink.count(records)
        writer.writerows(
            [
                r["id"],
                r["conversation"],
                _cell(r["conversation_title"]),
                _iso(r["sent_at"], zone),
                _cell(r["sender"]),
                r["sensitivity"],
                "" if r["body"] is None else _cell(r["body"]),
                r["unreadable"] or "",
                _cell("; ".join(a["name"] for a in r["attachments"])),
            ]
            for r in records
        )


TRANSCRIPT = "retention/exports/transcript.html"
# Each rendered part ends in a newline: a conversation's messages are rendered this many
# at a time from its start, whatever the batches read, so that the transcript's bytes do
# not depend on where a batch ends.
TRANSCRIPT_MESSAGES_PER_PART = 2000


def _write_html(export: Export, sink: _Sink) -> None:
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
    for conversation, records, first in _records(export):
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


# --- downloading --------------------------------------------------------------------------


class ExportExpired(Conflict):
    """The export's file and key are gone for good (HTTP 410 over the API)."""


def open_download(
    export: Export, member: Member, *, ip_address: str | None = None
) -> Iterator[bytes]:
    """The export's plaintext, decrypted a chunk at a time as it streams, with the
    download audited. The key and the first chunk are checked before anything is audited
    or sent; a later chunk that does not authenticate stops the stream with
    DecryptionError, never with garbage."""
    if not may_download(export, member):
        raise PermissionDenied(_("You may not download this export."))
    if export.status == ExportStatus.EXPIRED:
        expired_on = formats.date_format(timezone.localtime(export.expired_at), "DATE_FORMAT")
        raise ExportExpired(
            _(
                "This export expired on %(date)s: its file was deleted. "
                "Ask for a new export if you need one."
            )
            % {"date": expired_on}
        )
    if export.status != ExportStatus.READY:
        raise Conflict(_("This export is not ready."))
    try:
        handle = export.file.open("rb")
    except FileNotFoundError as exc:
        raise Conflict(_("This export's file is missing.")) from exc
    try:
        chunks = opened(handle, crypto.export_key(export.pk, export.wrapped_key), export.pk)
        first = next(chunks, b"")
    except (DecryptionError, KeyDestroyedError) as exc:
        handle.close()
        logger.error("export %s cannot be decrypted: %s", export.pk, exc)
        raise Conflict(
            _("This export's file cannot be decrypted: it is damaged or was altered.")
        ) from exc
    try:
        with transaction.atomic():
            _audit(
                EventType.EXPORT_DOWNLOADED,
                export,
                actor=member,
                ip_address=ip_address,
                sha256=export.sha256,
            )
    except Exception:
        chunks.close()
        raise
    return _streamed(export, first, chunks)


def _streamed(export: Export, first: bytes, rest: Generator[bytes, None, None]) -> Iterator[bytes]:
    try:
        if first:
            yield first
        yield from rest
    except DecryptionError:
        logger.error("export %s: a chunk failed authentication mid-download", export.pk)
        raise
    finally:
        rest.close()
