"""Putting chat records in: the one service that writes an ingest batch, all of it or none.

The ingest API and the import command both hand a list of records to :func:`do_ingest`.
The record shapes are documented in ``docs/formats.md``. Their shape is checked by
:mod:`retention.records.ingest_validation`, their references (departments, members,
conversations) resolved in bulk by :mod:`retention.records.ingest_plan`; everything is
then written through :mod:`retention.records.store` so every body is classified and
encrypted the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, connection, transaction
from django.utils.translation import gettext as _

from audit import log as audit
from audit.events import EventType
from retention.models import Conversation, Member
from retention.records.ingest_errors import IngestError, record_error
from retention.records.ingest_plan import IngestPlan, chunks, resolve
from retention.records.ingest_validation import check_source, validate_shapes
from retention.records.store import NewAttachment, NewMessage, add_messages, create_conversation

INGEST_PERMISSION = "retention.ingest_messages"

# Rows per bulk INSERT: big imports go in several statements inside the one transaction.
WRITE_CHUNK = 2_000
# The audit event lists touched conversations up to this many (the count is always there).
AUDIT_MAX_CONVERSATION_IDS = 1_000


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

    errors = check_source(source)
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

    conversations, messages, broken, errors = validate_shapes(records, labels)
    try:
        with transaction.atomic():
            _lock_source(source)
            # References are checked inside the transaction, after the lock, so the
            # duplicate check cannot race another batch from the same source. They are
            # checked even when some records are malformed, to report every problem at once.
            plan, reference_errors = resolve(source, conversations, messages, broken)
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


def _lock_source(source: str) -> None:
    # PostgreSQL: batches from one source take turns, so two posts of the same batch
    # cannot both decide a record is new. SQLite already has one writer at a time.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", [f"qingli:ingest:{source}"]
            )


def _write(source: str, plan: IngestPlan) -> IngestResult:
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
        for chunk in chunks(new_messages, WRITE_CHUNK):
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
    plan: IngestPlan,
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
