"""Finding and removing earlier demo data (``seed_demo --reset``).

Only demo data goes: conversations whose source is "demo", members with a demo address,
and the demo company's department tree. Messages are removed with SQL (TRUNCATE on
PostgreSQL when every message is demo data, else one DELETE), never through Django's
deletion collector, which would load every message into memory. The audit log is never
touched; it refuses deletes anyway.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from django.core.files.storage import default_storage
from django.db import DatabaseError, connection, models, transaction
from django.db.models.deletion import ProtectedError, RestrictedError
from django.db.models.deletion import get_candidate_relations_to_delete as relations_of

from retention.demo.org import COMPANY_NAME, DEMO_EMAIL_DOMAIN, DemoDataError
from retention.models import Attachment, Conversation, Department, Member, Message

DEMO_SOURCE = "demo"

__all__ = ["DEMO_SOURCE", "DemoDataError", "delete_demo_data", "footprint"]


@dataclass(frozen=True, slots=True)
class Footprint:
    conversations: int
    members: int
    departments: int

    @property
    def any(self) -> bool:
        return bool(self.conversations or self.members or self.departments)


def demo_conversations() -> models.QuerySet[Conversation]:
    return Conversation.objects.filter(source=DEMO_SOURCE)


def demo_members() -> models.QuerySet[Member]:
    return Member.objects.filter(email__iendswith="@" + DEMO_EMAIL_DOMAIN)


def demo_departments() -> models.QuerySet[Department]:
    roots = Department.objects.filter(parent__isnull=True, name=COMPANY_NAME)
    paths = list(roots.values_list("path", flat=True))
    if not paths:
        return Department.objects.none()
    query = models.Q()
    for path in paths:
        query |= models.Q(path__startswith=path)
    return Department.objects.filter(query)


def footprint() -> Footprint:
    return Footprint(
        demo_conversations().count(), demo_members().count(), demo_departments().count()
    )


def delete_demo_data() -> dict[str, int]:
    """Remove every piece of demo data in one transaction; returns what was removed."""
    removed: dict[str, int] = {}
    attachment_files: list[str] = []
    try:
        with transaction.atomic():
            conversations = demo_conversations()
            conversation_ids = conversations.values("pk")
            attachments = Attachment.objects.filter(conversation_id__in=conversation_ids)
            attachment_files = [n for n in attachments.values_list("file", flat=True) if n]
            removed["messages"] = _delete_messages(conversation_ids)
            removed["conversations"] = conversations.count()
            conversations.delete()
            removed["members"] = demo_members().count()
            demo_members().delete()
            departments = list(demo_departments().order_by("-depth"))
            removed["departments"] = len(departments)
            # Deepest first: a department's parent is protected while it has children.
            for depth in sorted({d.depth for d in departments}, reverse=True):
                Department.objects.filter(
                    pk__in=[d.pk for d in departments if d.depth == depth]
                ).delete()
            removed["attachments"] = len(attachment_files)
            transaction.on_commit(lambda: _delete_files(attachment_files))
    except (ProtectedError, RestrictedError) as exc:
        blockers = sorted({f"{o._meta.verbose_name}: {o}" for o in exc.args[1]})[:5]
        raise DemoDataError(
            "cannot remove the demo data: records that are not demo data still depend on it "
            f"({'; '.join(blockers)}). Move or remove them first; nothing was deleted."
        ) from exc
    return removed


def _delete_messages(conversation_ids: models.QuerySet) -> int:
    """Delete the demo conversations' messages and attachments with plain SQL."""
    # Rows of other tables that point at demo messages (say, a request's frozen scope)
    # are demo activity too: they go first, each as its own foreign key says.
    _clear_dependents(
        Message, Message.objects.filter(conversation_id__in=conversation_ids), {Attachment}
    )
    _clear_dependents(
        Attachment, Attachment.objects.filter(conversation_id__in=conversation_ids), set()
    )
    count = Message.objects.filter(conversation_id__in=conversation_ids).count()
    qn = connection.ops.quote_name
    messages = qn(Message._meta.db_table)
    attachments = qn(Attachment._meta.db_table)
    extra_tables = (
        _only_demo_messages(conversation_ids) if connection.vendor == "postgresql" else None
    )
    if extra_tables is not None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f"TRUNCATE {', '.join([attachments, messages, *extra_tables])}")
            return count
        except DatabaseError:
            pass
    conversation_sql, params = (
        Conversation.objects.filter(source=DEMO_SOURCE).values("pk").query.sql_with_params()
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {attachments} WHERE conversation_id IN ({conversation_sql})", params
        )
        cursor.execute(
            f"DELETE FROM {messages} WHERE conversation_id IN ({conversation_sql})", params
        )
    return count


def _only_demo_messages(conversation_ids: models.QuerySet) -> list[str] | None:
    """The tables one TRUNCATE must name to drop every message, or None when some
    message or a row pointing at one is not demo data (then rows are deleted instead)."""
    if Message.objects.exclude(conversation_id__in=conversation_ids).exists():
        return None
    if Attachment.objects.exclude(conversation_id__in=conversation_ids).exists():
        return None
    # TRUNCATE refuses while another table references these; such tables are named too,
    # but only when they are empty (their demo rows were cleared just before).
    extra = []
    for model in (Message, Attachment):
        for relation in relations_of(model._meta):
            related = relation.related_model
            if related in (Message, Attachment):
                continue
            if related._base_manager.exists():
                return None
            extra.append(connection.ops.quote_name(related._meta.db_table))
    return sorted(set(extra))


def _clear_dependents(
    model: type[models.Model], rows: models.QuerySet, handled: set[type[models.Model]]
) -> None:
    for relation in relations_of(model._meta):
        related_model = relation.related_model
        if related_model in handled:
            continue
        field = relation.field
        dependents = related_model._base_manager.filter(**{f"{field.name}__in": rows})
        on_delete = field.remote_field.on_delete
        if on_delete is models.DO_NOTHING:
            continue
        if on_delete is models.SET_NULL:
            dependents.update(**{field.name: None})
        else:
            # CASCADE, and PROTECT/RESTRICT too: resetting the demo removes its activity.
            dependents.delete()


def _delete_files(names: list[str]) -> None:
    for name in names:
        # A file already gone is what we want anyway.
        with contextlib.suppress(OSError):
            default_storage.delete(name)
