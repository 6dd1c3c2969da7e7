"""Resolving a parsed ingest batch against the database: which departments, members and
stored conversations its records name, and which records are new or already stored.

Lookups go in chunks of ids, so a 200 000-record import costs a few dozen queries.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _

from retention.models import Conversation, DataKey, Department, Member, Message
from retention.records.ingest_errors import record_error
from retention.records.ingest_validation import ParsedRecord

# Values per ``IN (...)`` lookup, well under every backend's parameter limit.
LOOKUP_CHUNK = 5_000


@dataclass(slots=True)
class IngestPlan:
    """What a valid batch will write, resolved against the database."""

    new_conversations: list[ParsedRecord] = field(default_factory=list)
    new_messages: list[ParsedRecord] = field(default_factory=list)
    duplicates: int = 0
    departments: dict[Any, Department] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    stored_conversations: dict[str, Conversation] = field(default_factory=dict)


def chunks(values: Sequence[Any], size: int = LOOKUP_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def resolve(
    source: str, conversations: list[ParsedRecord], messages: list[ParsedRecord], broken: set[str]
) -> tuple[IngestPlan, list[dict[str, Any]]]:
    """Check every reference against the database and decide what is new."""
    plan = IngestPlan()
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
    refs: set[Any], conversations: list[ParsedRecord], errors: list[dict[str, Any]]
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
    for chunk in chunks(usernames):
        members.update({m.username: m for m in Member.objects.filter(username__in=chunk)})
    return members


def _stored_conversations(
    source: str, source_ids: list[str]
) -> tuple[dict[str, Conversation], set[str]]:
    """Stored conversations of this source by source id, and the ids whose key is gone."""
    stored: dict[str, Conversation] = {}
    for chunk in chunks(source_ids):
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
    for chunk in chunks(list(by_pk)):
        alive |= set(
            DataKey.objects.filter(
                conversation_id__in=chunk, wrapped_key__isnull=False
            ).values_list("conversation_id", flat=True)
        )
    shredded = {source_id for pk, source_id in by_pk.items() if pk not in alive}
    return stored, shredded


def _stored_message_ids(source: str, source_ids: list[str]) -> set[str]:
    stored: set[str] = set()
    for chunk in chunks(source_ids):
        stored |= set(
            Message.objects.filter(source=source, source_id__in=chunk).values_list(
                "source_id", flat=True
            )
        )
    return stored
