"""Putting chat records in: strict validation of ingest records and the one service that
writes them.

The ingest API and the import command both hand a list of records to :func:`do_ingest`.
The record shapes are documented in ``docs/formats.md``. Serializers here only check
shape; ``do_ingest`` resolves references (departments, members, conversations) in bulk,
then writes everything through :mod:`retention.records.store` so every body is classified and
encrypted the same way, or writes nothing at all.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings

from audit import log as audit
from audit.events import EventType
from retention.models import Conversation, ConversationKind, DataKey, Department, Member, Message
from retention.records.store import NewAttachment, NewMessage, add_messages, create_conversation

INGEST_PERMISSION = "retention.ingest_messages"

# A batch with thousands of bad lines is one mistake repeated: report enough to fix it.
MAX_REPORTED_ERRORS = 100
# Rows per bulk INSERT: big imports go in several statements inside the one transaction.
WRITE_CHUNK = 2_000
# Values per ``IN (...)`` lookup, well under every backend's parameter limit.
LOOKUP_CHUNK = 5_000
# The audit event lists touched conversations up to this many (the count is always there).
AUDIT_MAX_CONVERSATION_IDS = 1_000
MAX_SOURCE_CHARS = Message._meta.get_field("source").max_length
EARLIEST_SENT_AT = datetime(1990, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- errors


def record_error(
    record: int | str | None, record_id: str | None, field_name: str | None, message: str
) -> dict[str, Any]:
    """One entry of an error list, in the shape the API and the command report."""
    return {"record": record, "id": record_id, "field": field_name, "message": message}


class IngestError(Exception):
    """The batch is invalid; nothing of it was written.

    ``errors`` holds at most :data:`MAX_REPORTED_ERRORS` entries shaped by
    :func:`record_error`; ``total`` is how many problems were found in all.
    """

    def __init__(self, errors: list[dict[str, Any]], *, total: int | None = None):
        self.errors = errors[:MAX_REPORTED_ERRORS]
        self.total = len(errors) if total is None else total
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        if self.total > len(self.errors):
            return _(
                "%(total)d problems in the batch (first %(shown)d listed); nothing was written."
            ) % {"total": self.total, "shown": len(self.errors)}
        return ngettext(
            "%(total)d problem in the batch; nothing was written.",
            "%(total)d problems in the batch; nothing was written.",
            self.total,
        ) % {"total": self.total}


# --------------------------------------------------------------------------- fields


class StrictCharField(serializers.CharField):
    """A JSON string and only that: DRF's CharField would quietly turn 12 into "12".

    Whitespace is kept as sent: bodies are records and ids must match exactly.
    """

    default_error_messages = {"invalid": gettext_lazy("Must be a string.")}

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.DATETIME)
class OffsetDateTimeField(serializers.Field):
    """An ISO 8601 date and time with a UTC offset.

    A naive time is refused rather than guessed: a store in Urumqi and a server in
    Shanghai would disagree on it, and retention deadlines are computed from it.
    """

    default_error_messages = {
        "invalid": gettext_lazy(
            "Must be an ISO 8601 date and time, e.g. 2024-03-01T09:30:00+08:00."
        ),
        "naive": gettext_lazy("Must include a UTC offset, e.g. +08:00 or Z."),
        "range": gettext_lazy("Must lie between 1990-01-01 and one day from now."),
    }

    def to_internal_value(self, data: Any) -> datetime:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            value = datetime.fromisoformat(data)
        except ValueError:
            self.fail("invalid")
        if value.utcoffset() is None:
            self.fail("naive")
        # Chat records are neither older than the web nor from the future; outside this
        # range a date is a mistake (and beyond the database's range, a crash).
        if not EARLIEST_SENT_AT <= value <= timezone.now() + timedelta(days=1):
            self.fail("range")
        return value

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


@extend_schema_field(
    {
        "oneOf": [{"type": "integer"}, {"type": "string"}],
        "description": "Department id, or the path of names from the root, "
        'e.g. "公司/华东区/杭州西湖店".',
    }
)
class DepartmentRefField(serializers.Field):
    """A department id (int) or a name path; returns the id or a tuple of names."""

    default_error_messages = {
        "invalid": gettext_lazy(
            'Must be a department id or a name path such as "公司/华东区/杭州西湖店".'
        ),
    }

    def to_internal_value(self, data: Any) -> int | tuple[str, ...]:
        # bool is an int in Python; true is not a department.
        if isinstance(data, int) and not isinstance(data, bool):
            if data <= 0:
                self.fail("invalid")
            return data
        if isinstance(data, str):
            names = tuple(part.strip() for part in data.strip().strip("/").split("/"))
            if not all(names):
                self.fail("invalid")
            return names
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return "/".join(value) if isinstance(value, tuple) else value


# --------------------------------------------------------------------------- record serializers


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not declare: a misspelt field must not be silently dropped."""

    def to_internal_value(self, data: Any) -> Any:
        unknown: dict[str, list[str]] = {}
        if isinstance(data, Mapping):
            unknown = {str(key): [_("Unknown field.")] for key in data if key not in self.fields}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {"": exc.detail}
            raise serializers.ValidationError({**detail, **unknown}) from exc
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


class AttachmentRecordSerializer(StrictSerializer):
    """A file sent with a message; stored encrypted like the body."""

    name = StrictCharField(max_length=255)
    content_type = StrictCharField(max_length=100, allow_blank=True, default="")
    data_base64 = StrictCharField(allow_blank=True, help_text="The file's bytes, base64.")

    def validate_data_base64(self, value: str) -> bytes:
        limit = settings.QINGLI_MAX_ATTACHMENT_BYTES
        # Refuse before decoding: 4 base64 characters carry 3 bytes.
        if len(value) // 4 * 3 > limit + 2:
            raise serializers.ValidationError(
                _("The file is larger than %(limit)d bytes.") % {"limit": limit}
            )
        try:
            content = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise serializers.ValidationError(_("Not valid base64.")) from exc
        if len(content) > limit:
            raise serializers.ValidationError(
                _("The file is larger than %(limit)d bytes.") % {"limit": limit}
            )
        return content


class ConversationRecordSerializer(StrictSerializer):
    """Declares a conversation; skipped if its id is already stored for the source."""

    type = serializers.ChoiceField(choices=["conversation"])
    id = StrictCharField(max_length=128, help_text="The conversation's id in the source system.")
    kind = serializers.ChoiceField(choices=ConversationKind.choices)
    title = StrictCharField(max_length=200)
    department = DepartmentRefField()
    participants = serializers.ListField(
        child=StrictCharField(max_length=150), default=list, help_text="Member usernames."
    )
    customer = StrictCharField(
        max_length=150,
        allow_blank=True,
        default="",
        help_text="The external party of a customer chat (customers are not members).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["customer"] and attrs["kind"] != ConversationKind.CUSTOMER:
            raise serializers.ValidationError(
                {"customer": _('Only a conversation of kind "customer" has a customer.')}
            )
        return attrs


class MessageRecordSerializer(StrictSerializer):
    """One message of a conversation declared in the batch or stored earlier."""

    type = serializers.ChoiceField(choices=["message"])
    id = StrictCharField(max_length=128, help_text="The message's id in the source system.")
    conversation = StrictCharField(
        max_length=128, help_text="The source id of a conversation in this batch or stored."
    )
    sender = StrictCharField(
        max_length=150, allow_null=True, help_text="A member's username; null for a customer."
    )
    sender_name = StrictCharField(
        max_length=150, required=False, help_text="Required when sender is null."
    )
    sent_at = OffsetDateTimeField()
    body = StrictCharField(allow_blank=True)
    attachments = serializers.ListField(child=AttachmentRecordSerializer(), default=list)

    def validate_body(self, value: str) -> str:
        limit = settings.QINGLI_MAX_BODY_CHARS
        if len(value) > limit:
            raise serializers.ValidationError(
                _("Ensure this field has no more than %(limit)d characters (it has %(length)d).")
                % {"limit": limit, "length": len(value)}
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["sender"] is None and not attrs.get("sender_name"):
            raise serializers.ValidationError(
                {"sender_name": _("Required when sender is null (e.g. the customer's name).")}
            )
        return attrs


RECORD_TYPES = ("conversation", "message")


def flatten_errors(detail: Any, path: str = "") -> Iterator[tuple[str | None, str]]:
    """(field path, message) pairs from a nested DRF error detail, e.g.
    ``attachments[0].data_base64``."""
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            if key in ("", api_settings.NON_FIELD_ERRORS_KEY):
                child = path
            elif isinstance(key, int):
                child = f"{path}[{key}]"
            else:
                child = f"{path}.{key}" if path else str(key)
            yield from flatten_errors(value, child)
    elif isinstance(detail, list):
        for item in detail:
            yield from flatten_errors(item, path)
    else:
        yield (path or None, str(detail))


# --------------------------------------------------------------------------- the service


@dataclass(frozen=True, slots=True)
class IngestResult:
    conversations_created: int = 0
    messages_created: int = 0
    # Records (of either type) already stored, or repeated within the batch.
    duplicates_skipped: int = 0
    # Conversations created or given new messages by this batch.
    conversation_ids: tuple[int, ...] = ()

    @property
    def created_anything(self) -> bool:
        return bool(self.conversations_created or self.messages_created)

    def as_dict(self) -> dict[str, Any]:
        return {
            "conversations_created": self.conversations_created,
            "messages_created": self.messages_created,
            "duplicates_skipped": self.duplicates_skipped,
            "conversation_ids": list(self.conversation_ids),
        }


@dataclass(slots=True)
class _Parsed:
    label: int | str
    data: dict[str, Any]

    @property
    def source_id(self) -> str:
        return self.data["id"]


@dataclass(slots=True)
class _Plan:
    """What a valid batch will write, resolved against the database."""

    new_conversations: list[_Parsed] = field(default_factory=list)
    new_messages: list[_Parsed] = field(default_factory=list)
    duplicates: int = 0
    departments: dict[Any, Department] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    stored_conversations: dict[str, Conversation] = field(default_factory=dict)


def do_ingest(
    *,
    actor: Member | None,
    source: str,
    records: Sequence[Any],
    ip_address: str | None = None,
    event_type: EventType = EventType.MESSAGES_INGESTED,
    details_extra: dict[str, Any] | None = None,
    record_labels: Sequence[int | str] | None = None,
    max_records: int | None = None,
) -> IngestResult:
    """Validate a batch of conversation and message records, then store all of it or none.

    ``actor=None`` is the system: only code an operator runs on the server (the import
    command without ``--as``) passes it. Anyone else needs ``retention.ingest_messages``.
    ``record_labels`` names each record in errors (line numbers for a file; the index by
    default). ``max_records`` overrides ``QINGLI_MAX_INGEST_BATCH`` for the import command.
    Raises :class:`IngestError` on bad input and ``PermissionDenied`` without permission.
    """
    if actor is not None and not actor.has_perm(INGEST_PERMISSION):
        raise PermissionDenied(_("You may not ingest chat records."))
    limit = max_records or settings.QINGLI_MAX_INGEST_BATCH
    labels = list(record_labels) if record_labels is not None else list(range(len(records)))
    if len(labels) != len(records):
        raise ValueError("record_labels must name every record")

    errors = _check_source(source)
    if len(records) > limit:
        errors.append(
            record_error(
                None,
                None,
                "records",
                _(
                    "A batch holds at most %(limit)d records; this one has %(count)d. "
                    "Split it into smaller batches."
                )
                % {"limit": limit, "count": len(records)},
            )
        )
    if errors:
        raise IngestError(errors)

    conversations, messages, broken, errors = _validate_shapes(records, labels)
    try:
        with transaction.atomic():
            _lock_source(source)
            # References are checked inside the transaction, after the lock, so the
            # duplicate check cannot race another batch from the same source. They are
            # checked even when some records are malformed, to report every problem at once.
            plan, reference_errors = _resolve(source, conversations, messages, broken)
            errors += reference_errors
            if errors:
                order = {label: position for position, label in enumerate(labels)}
                errors.sort(key=lambda error: order.get(error["record"], -1))
                raise IngestError(errors)
            result = _write(source, plan)
            _record_event(
                actor=actor,
                source=source,
                result=result,
                plan=plan,
                record_count=len(records),
                event_type=event_type,
                ip_address=ip_address,
                details_extra=details_extra,
            )
    except IntegrityError as exc:
        # Another writer (not going through this lock) stored the same source ids first.
        raise IngestError(
            [
                record_error(
                    None,
                    None,
                    None,
                    _(
                        "Some of these records were stored by another writer at the same "
                        "time; send the batch again (stored records will be skipped)."
                    ),
                )
            ]
        ) from exc
    return result


def _check_source(source: Any) -> list[dict[str, Any]]:
    if not isinstance(source, str) or not source.strip():
        return [record_error(None, None, "source", _("Must be a non-empty string."))]
    if len(source) > MAX_SOURCE_CHARS:
        return [
            record_error(
                None,
                None,
                "source",
                _("Must be at most %(limit)d characters long.") % {"limit": MAX_SOURCE_CHARS},
            )
        ]
    if "\x00" in source:
        return [record_error(None, None, "source", _("Must not contain NUL characters."))]
    return []


def _validate_shapes(
    records: Sequence[Any], labels: Sequence[int | str]
) -> tuple[list[_Parsed], list[_Parsed], set[str], list[dict[str, Any]]]:
    """Parse every record; returns conversations, messages, the ids of malformed
    conversation records (so their messages are not also reported) and the errors."""
    # One serializer instance per type, reused: building DRF fields per record would
    # dominate the cost of a 200 000-record import.
    serializers_by_type = {
        "conversation": ConversationRecordSerializer(),
        "message": MessageRecordSerializer(),
    }
    conversations: list[_Parsed] = []
    messages: list[_Parsed] = []
    broken: set[str] = set()
    errors: list[dict[str, Any]] = []
    for raw, label in zip(records, labels, strict=True):
        if not isinstance(raw, Mapping):
            errors.append(record_error(label, None, None, _("A record must be a JSON object.")))
            continue
        raw_id = raw.get("id")
        record_id = raw_id if isinstance(raw_id, str) else None
        record_type = raw.get("type")
        if record_type not in RECORD_TYPES:
            message = (
                _("This field is required.")
                if "type" not in raw
                else _('Must be "conversation" or "message".')
            )
            errors.append(record_error(label, record_id, "type", message))
            continue
        try:
            data = serializers_by_type[record_type].run_validation(raw)
        except serializers.ValidationError as exc:
            if record_type == "conversation" and record_id is not None:
                broken.add(record_id)
            errors.extend(
                record_error(label, record_id, field_name, message)
                for field_name, message in flatten_errors(exc.detail)
            )
            continue
        parsed = _Parsed(label, dict(data))
        (conversations if record_type == "conversation" else messages).append(parsed)
    return conversations, messages, broken, errors


def _lock_source(source: str) -> None:
    # PostgreSQL: batches from one source take turns, so two posts of the same batch
    # cannot both decide a record is new. SQLite already has one writer at a time.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"qingli:ingest:{source}"]
            )


def _chunks(values: Sequence[Any], size: int = LOOKUP_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _resolve(
    source: str, conversations: list[_Parsed], messages: list[_Parsed], broken: set[str]
) -> tuple[_Plan, list[dict[str, Any]]]:
    """Check every reference against the database and decide what is new."""
    plan = _Plan()
    errors: list[dict[str, Any]] = []

    plan.departments = _departments(
        {c.data["department"] for c in conversations}, conversations, errors
    )

    usernames = {name for c in conversations for name in c.data["participants"]}
    usernames |= {m.data["sender"] for m in messages if m.data["sender"] is not None}
    plan.members = _members(sorted(usernames))
    for conv in conversations:
        for index, name in enumerate(conv.data["participants"]):
            if name not in plan.members:
                errors.append(
                    record_error(
                        conv.label,
                        conv.source_id,
                        f"participants[{index}]",
                        _("Unknown member %(name)s.") % {"name": repr(name)},
                    )
                )
    for msg in messages:
        name = msg.data["sender"]
        if name is not None and name not in plan.members:
            errors.append(
                record_error(
                    msg.label,
                    msg.source_id,
                    "sender",
                    _("Unknown member %(name)s.") % {"name": repr(name)},
                )
            )

    wanted = sorted(
        {c.source_id for c in conversations} | {m.data["conversation"] for m in messages}
    )
    plan.stored_conversations, shredded = _stored_conversations(source, wanted)

    declared: set[str] = set()
    for conv in conversations:
        if conv.source_id in plan.stored_conversations or conv.source_id in declared:
            plan.duplicates += 1
        else:
            declared.add(conv.source_id)
            plan.new_conversations.append(conv)

    stored_messages = _stored_message_ids(source, sorted({m.source_id for m in messages}))
    seen: set[str] = set()
    for msg in messages:
        conversation_id = msg.data["conversation"]
        duplicate = msg.source_id in stored_messages or msg.source_id in seen
        if conversation_id in broken:
            pass  # its declaration is already reported
        elif conversation_id not in declared and conversation_id not in plan.stored_conversations:
            errors.append(
                record_error(
                    msg.label,
                    msg.source_id,
                    "conversation",
                    _("Unknown conversation %(id)s: declare it in this batch or ingest it first.")
                    % {"id": repr(conversation_id)},
                )
            )
        elif conversation_id in shredded and not duplicate:
            errors.append(
                record_error(
                    msg.label,
                    msg.source_id,
                    "conversation",
                    _(
                        "Conversation %(id)s was crypto-shredded (its data key is destroyed); "
                        "it takes no new messages."
                    )
                    % {"id": repr(conversation_id)},
                )
            )
        if duplicate:
            plan.duplicates += 1
        else:
            seen.add(msg.source_id)
            plan.new_messages.append(msg)
    return plan, errors


def _departments(
    refs: set[Any], conversations: list[_Parsed], errors: list[dict[str, Any]]
) -> dict[Any, Department]:
    """Map each department reference (id or name path) to its department."""
    if not refs:
        return {}
    ids = [ref for ref in refs if isinstance(ref, int)]
    found: dict[Any, Department] = {d.pk: d for d in Department.objects.filter(pk__in=ids)}
    problems: dict[Any, str] = {
        ref: _("Unknown department id %(id)d.") % {"id": ref} for ref in ids
    }
    paths = [ref for ref in refs if isinstance(ref, tuple)]
    if paths:
        # The tree is small (hundreds of nodes); one query beats a walk per path.
        children: dict[tuple[int | None, str], list[Department]] = {}
        for dept in Department.objects.all():
            children.setdefault((dept.parent_id, dept.name), []).append(dept)
        for names in paths:
            parent_id: int | None = None
            problem = ""
            for depth, name in enumerate(names):
                matches = children.get((parent_id, name), [])
                shown = "/".join(names[: depth + 1])
                if not matches:
                    problem = _("Unknown department %(path)s.") % {"path": repr(shown)}
                    break
                if len(matches) > 1:
                    problem = _("Department path %(path)s is ambiguous; use the department id.") % {
                        "path": repr(shown)
                    }
                    break
                parent_id = matches[0].pk
            if problem:
                problems[names] = problem
            else:
                found[names] = matches[0]
    for conv in conversations:
        ref = conv.data["department"]
        if ref not in found:
            errors.append(record_error(conv.label, conv.source_id, "department", problems[ref]))
    return found


def _members(usernames: list[str]) -> dict[str, Member]:
    members: dict[str, Member] = {}
    for chunk in _chunks(usernames):
        members.update({m.username: m for m in Member.objects.filter(username__in=chunk)})
    return members


def _stored_conversations(
    source: str, source_ids: list[str]
) -> tuple[dict[str, Conversation], set[str]]:
    """Stored conversations of this source by source id, and the ids whose key is gone."""
    stored: dict[str, Conversation] = {}
    for chunk in _chunks(source_ids):
        stored.update(
            {
                c.source_id: c
                for c in Conversation.objects.filter(
                    source=source, source_id__in=chunk
                ).select_related("department")
            }
        )
    # A destroyed key (or, defensively, a missing one) means no new messages.
    by_pk = {c.pk: c.source_id for c in stored.values()}
    alive: set[int] = set()
    for chunk in _chunks(list(by_pk)):
        alive |= set(
            DataKey.objects.filter(
                conversation_id__in=chunk, wrapped_key__isnull=False
            ).values_list("conversation_id", flat=True)
        )
    shredded = {source_id for pk, source_id in by_pk.items() if pk not in alive}
    return stored, shredded


def _stored_message_ids(source: str, source_ids: list[str]) -> set[str]:
    stored: set[str] = set()
    for chunk in _chunks(source_ids):
        stored |= set(
            Message.objects.filter(source=source, source_id__in=chunk).values_list(
                "source_id", flat=True
            )
        )
    return stored


def _write(source: str, plan: _Plan) -> IngestResult:
    conversations = dict(plan.stored_conversations)
    created: list[int] = []
    for conv in plan.new_conversations:
        data = conv.data
        conversation = create_conversation(
            kind=data["kind"],
            title=data["title"],
            department=plan.departments[data["department"]],
            participants=[plan.members[name] for name in dict.fromkeys(data["participants"])],
            external_party=data["customer"],
            source=source,
            source_id=conv.source_id,
        )
        conversations[conv.source_id] = conversation
        created.append(conversation.pk)

    grouped: dict[str, list[NewMessage]] = {}
    for msg in plan.new_messages:
        data = msg.data
        sender = plan.members[data["sender"]] if data["sender"] is not None else None
        grouped.setdefault(data["conversation"], []).append(
            NewMessage(
                sender=sender,
                sender_name=data.get("sender_name") or str(sender),
                sent_at=data["sent_at"],
                body=data["body"],
                source_id=msg.source_id,
                attachments=tuple(
                    NewAttachment(
                        name=a["name"], content=a["data_base64"], content_type=a["content_type"]
                    )
                    for a in data["attachments"]
                ),
            )
        )
    written = 0
    touched = set(created)
    for conversation_id, new_messages in grouped.items():
        conversation = conversations[conversation_id]
        for chunk in _chunks(new_messages, WRITE_CHUNK):
            written += len(add_messages(conversation, chunk, source=source))
        touched.add(conversation.pk)
    return IngestResult(
        conversations_created=len(created),
        messages_created=written,
        duplicates_skipped=plan.duplicates,
        conversation_ids=tuple(sorted(touched)),
    )


def _common_department_id(paths: set[str]) -> int | None:
    """The deepest department containing all of ``paths``, so the event shows up for the
    managers and auditors of that subtree."""
    if not paths:
        return None
    split = [path.strip("/").split("/") for path in paths]
    common: list[str] = []
    for parts in zip(*split, strict=False):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return int(common[-1]) if common else None


def _record_event(
    *,
    actor: Member | None,
    source: str,
    result: IngestResult,
    plan: _Plan,
    record_count: int,
    event_type: EventType,
    ip_address: str | None,
    details_extra: dict[str, Any] | None,
) -> None:
    ids = list(result.conversation_ids)
    department_paths = {
        path
        for path in Conversation.objects.filter(pk__in=ids[:AUDIT_MAX_CONVERSATION_IDS])
        .values_list("department__path", flat=True)
        .distinct()
    } or {c.department.path for c in plan.stored_conversations.values()}
    details: dict[str, Any] = {
        "source": source,
        "records": record_count,
        "conversations_created": result.conversations_created,
        "messages_created": result.messages_created,
        "duplicates_skipped": result.duplicates_skipped,
        "conversations": len(ids),
        "conversation_ids": ids[:AUDIT_MAX_CONVERSATION_IDS],
    }
    if len(ids) > AUDIT_MAX_CONVERSATION_IDS:
        details["conversation_ids_truncated"] = True
    details.update(details_extra or {})
    target: dict[str, Any] = {}
    if len(ids) == 1:
        target = {"target_type": Conversation._meta.label_lower, "target_id": ids[0]}
    audit.record(
        event_type,
        actor=actor,
        department_id=_common_department_id(department_paths),
        ip_address=ip_address,
        details=details,
        **target,
    )
