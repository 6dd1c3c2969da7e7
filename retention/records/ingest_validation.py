"""Strict validation of ingest records: the fields and serializers that check each
record's shape (see ``docs/formats.md``), and the pass that parses a whole batch.

Only shape is checked here; references to departments, members and conversations are
resolved against the database by :mod:`retention.records.ingest_plan`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from retention.dates import EARLIEST_DAY, earliest_moment
from retention.models import ConversationKind, Message
from retention.records.ingest_errors import flatten_errors, record_error

MAX_SOURCE_CHARS = Message._meta.get_field("source").max_length
RECORD_TYPES = ("conversation", "message")


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
        "range": gettext_lazy("Must lie between {earliest} and one day from now."),
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
        # Chat records are neither older than the range Qingli accepts (retention.dates)
        # nor from the future; outside this a date is a mistake (and beyond the database's
        # range, a crash).
        if not earliest_moment() <= value <= timezone.now() + timedelta(days=1):
            self.fail("range", earliest=EARLIEST_DAY.isoformat())
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


# --------------------------------------------------------------------------- a batch


@dataclass(slots=True)
class ParsedRecord:
    """A record that passed its serializer, with the label errors name it by."""

    label: int | str
    data: dict[str, Any]

    @property
    def source_id(self) -> str:
        return self.data["id"]


def check_source(source: Any) -> list[dict[str, Any]]:
    """Errors of the batch's ``source`` (empty when it is a usable name)."""
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


def validate_shapes(
    records: Sequence[Any], labels: Sequence[int | str]
) -> tuple[list[ParsedRecord], list[ParsedRecord], set[str], list[dict[str, Any]]]:
    """Parse every record; returns conversations, messages, the ids of malformed
    conversation records (so their messages are not also reported) and the errors."""
    # One serializer instance per type, reused: building DRF fields per record would
    # dominate the cost of a 200 000-record import.
    serializers_by_type = {
        "conversation": ConversationRecordSerializer(),
        "message": MessageRecordSerializer(),
    }
    conversations: list[ParsedRecord] = []
    messages: list[ParsedRecord] = []
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
        parsed = ParsedRecord(label, dict(data))
        (conversations if record_type == "conversation" else messages).append(parsed)
    return conversations, messages, broken, errors
