"""Which conversations a retention rule governs, what it would take, and why a
conversation is kept as it is.

Precedence, the same everywhere (the dry run, the daily run, a conversation's
"effective policy"):

1. A hold beats every rule: held conversations are never touched.
2. A rule governs the conversations it matches (its department subtree and/or kind,
   minus its exclusions) unless another approved rule that matches them keeps longer.
   Keeping beats deleting: the longest keep wins; between equal keeps the gentler
   action wins (recycle bin, then archive, then purge), then the older rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from operator import or_

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from retention.governance.filing import settled_high_water_mark
from retention.models import Attachment, Conversation, Department, Message, Sensitivity
from retention.models.rules import APPROVED_STATUSES, RetentionRule, RuleAction
from retention.records.holds import held_conversations_q

ACTION_GENTLENESS = {RuleAction.BIN: 0, RuleAction.ARCHIVE: 1, RuleAction.PURGE: 2}


# --- which conversations a rule governs ----------------------------------------------------


def matches_q(rule: RetentionRule) -> Q:
    """Conversations the rule's own terms cover (before holds and other rules). A rule
    without terms covers everything: an explicit condition, because an empty Q() would
    vanish when OR-ed with others and exclude nothing when negated."""
    q = Q(pk__isnull=False)
    if rule.department_id:
        q &= Q(department__path__startswith=rule.department.path)
    if rule.kind:
        q &= Q(kind=rule.kind)
    # A subquery, not a list read here: one rule's terms cost no query of their own.
    q &= ~Q(pk__in=rule.excluded_conversations.values("pk"))
    return q


def _rank(rule: RetentionRule, keep_days: int) -> tuple:
    # Higher ranks win: longer keep, then gentler action, then the older rule.
    return (keep_days, -ACTION_GENTLENESS[rule.action], -rule.pk)


def _standing(rule: RetentionRule, now: datetime | None) -> tuple:
    """A rule's rank against the others: by the keep it applies now (an approved
    shortening counts only once its grace is over), the same for every comparison, so
    that every overlap belongs to exactly one rule."""
    return _rank(rule, in_force_keep_days(rule, now))


def in_force_keep_days(rule: RetentionRule, now: datetime | None = None) -> int:
    """The keep the rule applies now: an approved shorter keep bites only after grace.
    Of an approved shortening still in grace, the longer keep counts."""
    now = now or timezone.now()
    if rule.next_keep_days is not None and rule.next_keep_from and rule.next_keep_from <= now:
        return rule.next_keep_days
    return rule.keep_days


def governed_conversations(
    rule: RetentionRule, *, now: datetime | None = None, keep_days: int | None = None
) -> QuerySet[Conversation]:
    """Conversations this rule governs: it matches them and no approved rule that keeps
    longer (or as long, but gentler or older) matches them too. Holds not yet applied."""
    rank = _rank(rule, keep_days) if keep_days else _standing(rule, now)
    qs = Conversation.objects.filter(matches_q(rule))
    others = RetentionRule.objects.filter(status__in=APPROVED_STATUSES).exclude(pk=rule.pk)
    beating = [
        matches_q(o) for o in others.select_related("department") if _standing(o, now) > rank
    ]
    if beating:
        qs = qs.exclude(reduce(or_, beating))
    return qs


@dataclass
class Effective:
    rule: RetentionRule | None
    keep_days: int | None
    held: bool
    matching: list[RetentionRule]
    why: str


def effective_policy(conversation: Conversation, *, now: datetime | None = None) -> Effective:
    """What happens to a conversation's records, and why (for its page and the API)."""
    held = Conversation.objects.filter(held_conversations_q(), pk=conversation.pk).exists()
    approved = list(
        RetentionRule.objects.filter(status__in=APPROVED_STATUSES).select_related("department")
    )
    # Which rules cover it, in one query: a flag per rule.
    covered = Conversation.objects.filter(pk=conversation.pk).aggregate(
        **{f"rule_{r.pk}": Count("pk", filter=matches_q(r)) for r in approved}
    )
    matching = [r for r in approved if covered[f"rule_{r.pk}"]]
    if held:
        return Effective(
            None, None, True, matching, _("On hold: no rule touches it until the hold is released.")
        )
    if conversation.is_protected:
        return Effective(
            None,
            None,
            False,
            matching,
            _(
                "Protected: retention rules leave it; only a deletion request that confirms it "
                "by name can take its records."
            ),
        )
    if not matching:
        return Effective(
            None,
            None,
            False,
            [],
            _("No retention rule covers it: it is kept until someone deletes it."),
        )
    winner = max(matching, key=lambda r: _standing(r, now))
    keep = in_force_keep_days(winner, now)
    if len(matching) == 1:
        why = _("Only this rule covers it.")
    else:
        why = _("%(n)s rules cover it; the longest keep wins (keeping beats deleting).") % {
            "n": len(matching)
        }
    return Effective(winner, keep, False, matching, why)


# --- the dry run -----------------------------------------------------------------------------


@dataclass
class RuleMeasurement:
    preview: dict
    targets: list[tuple[int, int, int]]
    cutoff: datetime
    max_message_id: int


def measure_rule(
    rule: RetentionRule,
    *,
    now: datetime | None = None,
    max_message_id: int | None = None,
    keep_days: int | None = None,
) -> RuleMeasurement:
    """Exactly what the rule would take at ``now`` (with ``keep_days`` instead of its own,
    for a proposed change), by department, and what holds keep."""
    now = now or timezone.now()
    keep = keep_days or in_force_keep_days(rule, now)
    cutoff = now - timedelta(days=keep)
    if max_message_id is None:
        max_message_id = settled_high_water_mark()
    governed = governed_conversations(rule, now=now, keep_days=keep)
    held_ids = set(governed.filter(held_conversations_q()).values_list("pk", flat=True))
    # Protected conversations go only with a request that confirms each one by name: a
    # rule leaves them, and its dry run says how much it leaves.
    protected_ids = set(
        governed.filter(is_protected=True).exclude(pk__in=held_ids).values_list("pk", flat=True)
    )
    old = Q(sent_at__lt=cutoff, id__lte=max_message_id)
    taken = governed.exclude(pk__in=held_ids | protected_ids)
    messages = Message.objects.filter(old, conversation__in=taken.values("pk"))
    rows = list(
        messages.values_list("conversation_id", "conversation__department_id")
        .annotate(
            n=Count("id"),
            high=Count("id", filter=Q(sensitivity=Sensitivity.HIGH)),
            size=Sum("body_bytes"),
        )
        .order_by()
    )
    departments: dict[int, dict] = {}
    for _conversation, department, n, high, size in rows:
        row = departments.setdefault(
            department,
            {
                "messages": 0,
                "conversations": 0,
                "high_sensitivity": 0,
                "attachments": 0,
                "bytes": 0,
            },
        )
        row["messages"] += n
        row["conversations"] += 1
        row["high_sensitivity"] += high
        row["bytes"] += size or 0
    # Files go with their messages: counted, and their bytes added to the size, as in a
    # deletion request's preview.
    for department, n, size in (
        Attachment.objects.filter(message__in=messages.values("pk"))
        .values_list("conversation__department_id")
        .annotate(n=Count("id"), size=Sum("size"))
        .order_by()
    ):
        if department in departments:
            departments[department]["attachments"] += n
            departments[department]["bytes"] += size or 0
    names = dict(Department.objects.filter(pk__in=departments).values_list("pk", "name"))

    def left(ids: set[int]) -> dict:
        messages = Message.objects.filter(old, conversation_id__in=ids).count() if ids else 0
        return {"conversations": len(ids), "messages": messages}

    preview = {
        "messages": sum(d["messages"] for d in departments.values()),
        "conversations": len(rows),
        "high_sensitivity": sum(d["high_sensitivity"] for d in departments.values()),
        "attachments": sum(d["attachments"] for d in departments.values()),
        "bytes": sum(d["bytes"] for d in departments.values()),
        "by_department": [
            {"department": pk, "name": names.get(pk, ""), **row}
            for pk, row in sorted(departments.items(), key=lambda item: -item[1]["messages"])
        ],
        "excluded": {"held": left(held_ids), "protected": left(protected_ids)},
        "keep_days": keep,
        "cutoff": cutoff.isoformat(),
        "max_message_id": max_message_id,
        "computed_at": now.isoformat(),
    }
    return RuleMeasurement(preview, [(c, d, n) for c, d, n, *_ in rows], cutoff, max_message_id)
