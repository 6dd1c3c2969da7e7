"""What a deletion request covers: validating the scope against the method and the
requester's authority, and the preview — exactly what would go, and what stays and why.

Every count is an aggregate query on indexes; nothing here loops over messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from functools import reduce
from operator import or_

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Max, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from retention.access.predicates import own_conversations, refusal_to_file
from retention.dates import day_in_range, range_message
from retention.models import (
    Attachment,
    Conversation,
    ConversationKind,
    Department,
    Member,
    Message,
    PersonalRemoval,
    RequestMethod,
    Sensitivity,
)
from retention.records.holds import held_conversations_q
from retention.records.selectors import conversations_for, departments_for

# Lists inside a preview stop here; the totals always count everything.
PREVIEW_LIST_LIMIT = 50


@dataclass
class Scope:
    """A validated scope, resolved to database objects."""

    method: str
    departments: list[Department] = field(default_factory=list)
    include_subdepartments: bool = True
    whole_company: bool = False
    conversations: list[Conversation] = field(default_factory=list)
    message: Message | None = None
    sent_after: datetime | None = None
    sent_before: datetime | None = None
    confirm_protected: set[int] = field(default_factory=set)

    def as_json(self) -> dict:
        """The scope as stored on the request and shown back to clients."""
        data: dict = {}
        if self.message is not None:
            data["messages"] = [self.message.pk]
        if self.conversations:
            data["conversations"] = [c.pk for c in self.conversations]
        if self.departments:
            data["departments"] = [d.pk for d in self.departments]
            data["include_subdepartments"] = self.include_subdepartments
        if self.whole_company:
            data["whole_company"] = True
        if self.sent_after:
            data["sent_after"] = timezone.localtime(self.sent_after).date().isoformat()
        if self.sent_before:
            data["sent_before"] = timezone.localtime(self.sent_before).date().isoformat()
        return data


def start_of_day(day: date | None) -> datetime | None:
    if day is None:
        return None
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


# --- resolving and checking -------------------------------------------------------------


def resolve_scope(method: str, data: dict, requester: Member) -> Scope:
    """Turn validated input (see ``inputs.RequestInputSerializer``) into a Scope.

    Unknown or invisible ids are reported the same way, so ids cannot be probed.
    """
    errors: dict[str, list[str]] = {}
    scope = Scope(
        method=method,
        include_subdepartments=data.get("include_subdepartments", True),
        whole_company=bool(data.get("whole_company")),
        sent_after=start_of_day(data.get("sent_after")),
        sent_before=start_of_day(data.get("sent_before")),
        confirm_protected=set(data.get("confirm_protected") or []),
    )
    message_ids = data.get("messages") or []
    conversation_ids = data.get("conversations") or []
    department_ids = data.get("departments") or []

    def refuse(key: str, message: str) -> None:
        errors.setdefault(key, []).append(message)

    for name in ("sent_after", "sent_before"):
        # The inputs refuse these already; a caller that skipped them is refused here.
        day = data.get(name)
        if day is not None and not day_in_range(day):
            refuse(name, range_message())

    if method == RequestMethod.PERSONAL:
        if scope.sent_after or scope.sent_before:
            # A personal removal covers a message or a whole conversation, nothing between.
            refuse("scope", _("A personal deletion has no date range."))
        if len(message_ids) + len(conversation_ids) != 1:
            refuse("scope", _("A personal deletion names exactly one message or one conversation."))
        if department_ids or scope.whole_company:
            refuse("scope", _("A personal deletion cannot name departments."))
        mine = own_conversations(requester)
        if len(message_ids) == 1:
            scope.message = (
                Message.objects.filter(pk=message_ids[0], conversation__in=mine)
                .select_related("conversation")
                .first()
            )
            if scope.message is None:
                refuse("messages", _("No message in a conversation you take part in has this id."))
        if len(conversation_ids) == 1:
            scope.conversations = list(mine.filter(pk=conversation_ids[0]))
            if not scope.conversations:
                refuse("conversations", _("You take part in no conversation with this id."))
    else:
        if message_ids:
            refuse("messages", _("Only a personal deletion names single messages."))
        # Looked up only among what the requester may see: an id outside that is "unknown",
        # exactly like one that does not exist, so ids cannot be probed.
        scope.departments = list(departments_for(requester).filter(pk__in=department_ids))
        if len(scope.departments) != len(set(department_ids)):
            refuse("departments", _("One or more departments are unknown."))
        if method == RequestMethod.BATCH:
            if scope.whole_company:
                refuse("whole_company", _("Deleting the whole company is a server-side wipe."))
            scope.conversations = list(
                conversations_for(requester)
                .filter(pk__in=conversation_ids)
                .select_related("department")
            )
            if len(scope.conversations) != len(set(conversation_ids)):
                refuse("conversations", _("One or more conversations are unknown."))
            if any(c.kind != ConversationKind.GROUP for c in scope.conversations):
                refuse("conversations", _("A batch deletion names group conversations only."))
            if not department_ids and not conversation_ids:
                refuse("scope", _("Name at least one department or group conversation."))
        else:  # server
            if conversation_ids:
                refuse("conversations", _("A server-side wipe covers departments, not chats."))
            if scope.whole_company and department_ids:
                refuse("departments", _("Name departments or the whole company, not both."))
            if not scope.whole_company and not department_ids:
                refuse("scope", _("Name a department or the whole company."))
            # A server-side wipe always takes the whole subtree.
            scope.include_subdepartments = True
    if scope.sent_after and scope.sent_before and scope.sent_after >= scope.sent_before:
        refuse("sent_before", _("“Sent before” must be later than “sent after”."))
    if errors:
        raise ValidationError(errors)
    return scope


def scope_root(scope: Scope) -> Department | None:
    """The lowest department whose subtree holds the whole scope (None: the company)."""
    if scope.whole_company:
        roots = list(Department.objects.filter(parent__isnull=True)[:2])
        return roots[0] if len(roots) == 1 else None
    nodes = [d for d in scope.departments]
    nodes += [c.department for c in scope.conversations]
    if scope.message is not None:
        nodes.append(scope.message.conversation.department)
    if not nodes:
        return None
    common = nodes[0].path
    for node in nodes[1:]:
        while not node.path.startswith(common):
            common = common[: common.rstrip("/").rfind("/") + 1]
    ids = [int(part) for part in common.strip("/").split("/") if part]
    return Department.objects.get(pk=ids[-1]) if ids else None


def check_authority(requester: Member, scope: Scope) -> None:
    """Who may file what: raises PermissionDenied with a message that says why not."""
    paths = []
    if scope.method != RequestMethod.PERSONAL:  # a personal scope is the requester's own
        paths = [d.path for d in scope.departments]
        paths += [c.department.path for c in scope.conversations]
    refusal = refusal_to_file(
        requester, scope.method, paths=paths, whole_company=scope.whole_company
    )
    if refusal is not None:
        raise PermissionDenied(refusal)


# --- the scope as queries ---------------------------------------------------------------


def scope_conversations(scope: Scope) -> QuerySet[Conversation]:
    """Every conversation the scope names, before holds and protection are applied."""
    if scope.method == RequestMethod.PERSONAL:
        if scope.message is not None:
            return Conversation.objects.filter(pk=scope.message.conversation_id)
        return Conversation.objects.filter(pk__in=[c.pk for c in scope.conversations])
    if scope.whole_company:
        return Conversation.objects.all()
    parts = [Q(pk__in=[c.pk for c in scope.conversations])]
    if scope.include_subdepartments:
        parts += [Q(department__path__startswith=d.path) for d in scope.departments]
    else:
        parts.append(Q(department__in=scope.departments))
    return Conversation.objects.filter(reduce(or_, parts))


def message_filter(scope: Scope, *, max_message_id: int) -> Q:
    """The date range and high-water mark, as a filter on messages."""
    q = Q(id__lte=max_message_id)
    if scope.sent_after:
        q &= Q(sent_at__gte=scope.sent_after)
    if scope.sent_before:
        q &= Q(sent_at__lt=scope.sent_before)
    if scope.message is not None:
        q &= Q(pk=scope.message.pk)
    return q


def newest_message_id() -> int:
    return Message.all_rows.aggregate(n=Max("id"))["n"] or 0


# --- the preview ------------------------------------------------------------------------


@dataclass
class Measurement:
    """A preview and the per-conversation counts it was summed from: the frozen scope is
    built from the very same rows, so it can never differ from what approvers saw."""

    preview: dict
    # (conversation id, department id, messages) for every conversation counted.
    targets: list[tuple[int, int, int]]


def compute_preview(scope: Scope, *, requester: Member, max_message_id: int | None = None) -> dict:
    """What the request would delete, per department, and everything it leaves out."""
    return measure_scope(scope, requester=requester, max_message_id=max_message_id).preview


def measure_scope(
    scope: Scope, *, requester: Member, max_message_id: int | None = None
) -> Measurement:
    if max_message_id is None:
        max_message_id = newest_message_id()
    in_range = message_filter(scope, max_message_id=max_message_id)
    base = scope_conversations(scope)
    # Held and protected sets are read once and used for both the counts and the
    # exclusions: a hold placed or released meanwhile cannot split them.
    held_ids = set(base.filter(held_conversations_q()).values_list("pk", flat=True))
    protected = list(base.filter(is_protected=True).exclude(pk__in=held_ids).values("pk", "title"))
    unconfirmed = (
        set()  # a personal deletion touches only the requester's own view
        if scope.method == RequestMethod.PERSONAL
        else {p["pk"] for p in protected} - scope.confirm_protected
    )
    included = base.exclude(pk__in=held_ids | unconfirmed)

    messages = Message.objects.filter(in_range, conversation__in=included.values("pk"))
    if scope.method == RequestMethod.PERSONAL and scope.message is None:
        # Messages already removed from the requester's side are not removed twice.
        removed_up_to = (
            PersonalRemoval.objects.filter(
                member=requester,
                conversation__in=included.values("pk"),
                message__isnull=True,
                restored_at__isnull=True,
            ).aggregate(n=Max("up_to_message_id"))["n"]
            or 0
        )
        messages = messages.filter(id__gt=removed_up_to)
    per_conversation = list(
        messages.values_list("conversation_id", "conversation__department_id")
        .annotate(
            n=Count("id"),
            high=Count("id", filter=Q(sensitivity=Sensitivity.HIGH)),
            body_bytes=Sum("body_bytes"),
        )
        .order_by()
    )
    departments: dict[int, dict] = {}
    for _conversation, department, n, high, body_bytes in per_conversation:
        row = departments.setdefault(
            department, {"messages": 0, "conversations": 0, "high": 0, "bytes": 0}
        )
        row["messages"] += n
        row["conversations"] += 1
        row["high"] += high
        row["bytes"] += body_bytes or 0
    attachments = {
        row["conversation__department"]: row
        for row in Attachment.objects.filter(message__in=messages.values("pk"))
        .values("conversation__department")
        .annotate(n=Count("id"), bytes=Sum("size"))
        .order_by()
    }
    names = dict(Department.objects.filter(pk__in=departments).values_list("pk", "name"))
    by_department = []
    for dept, row in sorted(departments.items(), key=lambda item: -item[1]["messages"]):
        att = attachments.get(dept, {"n": 0, "bytes": 0})
        by_department.append(
            {
                "department": dept,
                "name": names.get(dept, ""),
                "messages": row["messages"],
                "conversations": row["conversations"],
                "high_sensitivity": row["high"],
                "attachments": att["n"],
                "bytes": row["bytes"] + (att["bytes"] or 0),
            }
        )

    held = _counts_by_conversation(held_ids, in_range)
    protected_counts = _counts_by_conversation({p["pk"] for p in protected}, in_range)
    preview = {
        "messages": sum(d["messages"] for d in by_department),
        "conversations": sum(d["conversations"] for d in by_department),
        "attachments": sum(d["attachments"] for d in by_department),
        "bytes": sum(d["bytes"] for d in by_department),
        "high_sensitivity": sum(d["high_sensitivity"] for d in by_department),
        "by_department": by_department,
        "excluded": {
            "held": {
                "conversations": len(held_ids),
                "messages": sum(held.values()),
                "items": [
                    {"conversation": pk, "messages": n}
                    for pk, n in sorted(held.items())[:PREVIEW_LIST_LIMIT]
                ],
            },
            "protected_unconfirmed": [
                {
                    "conversation": p["pk"],
                    "title": p["title"],
                    "messages": protected_counts.get(p["pk"], 0),
                }
                for p in protected
                if p["pk"] in unconfirmed
            ][:PREVIEW_LIST_LIMIT],
            "subdepartments": _left_out_subdepartments(scope, in_range, held_ids),
        },
        "protected_confirmed": sorted({p["pk"] for p in protected} & scope.confirm_protected),
        "max_message_id": max_message_id,
        "computed_at": timezone.now().isoformat(),
    }
    targets = [
        (conversation, department, n) for conversation, department, n, *_ in per_conversation
    ]
    return Measurement(preview, targets)


def _counts_by_conversation(conversation_ids: set[int], in_range: Q) -> dict[int, int]:
    if not conversation_ids:
        return {}
    return dict(
        Message.objects.filter(in_range, conversation_id__in=conversation_ids)
        .values_list("conversation_id")
        .annotate(n=Count("id"))
        .order_by()
    )


def _left_out_subdepartments(scope: Scope, in_range: Q, held_ids: set[int]) -> list[dict]:
    """With "include sub-departments" off, what sits below each named department and is
    therefore NOT deleted — the case where a store's branches would be silently missed.
    A group chat named explicitly is in scope wherever it sits, so it is never left out."""
    if scope.include_subdepartments or not scope.departments:
        return []
    chosen = {d.pk for d in scope.departments}
    named = [c.pk for c in scope.conversations]
    left_out = []
    for department in scope.departments:
        children = [c for c in department.children.all() if c.pk not in chosen]
        for child in children:
            counts = (
                Message.objects.filter(
                    in_range, conversation__department__path__startswith=child.path
                )
                .exclude(conversation__department__in=chosen)
                .exclude(conversation_id__in=held_ids)
                .exclude(conversation_id__in=named)
                .aggregate(messages=Count("id"), conversations=Count("conversation", distinct=True))
            )
            left_out.append(
                {
                    "department": child.pk,
                    "name": child.name,
                    "parent": department.pk,
                    "messages": counts["messages"],
                    "conversations": counts["conversations"],
                }
            )
    return left_out
