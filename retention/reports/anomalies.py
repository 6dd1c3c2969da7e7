"""The quarter's anomalies: runs started outside the execution window, people with many
deletions, restores close to the purge, approvals decided very fast, and personal
deletions held because their member deleted often. The thresholds are policies
(``report_*``), read when the report is computed."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django.db.models import (
    BigIntegerField,
    DurationField,
    ExpressionWrapper,
    F,
    OuterRef,
    Subquery,
    Sum,
)
from django.db.models.functions import Cast, TruncTime

from audit.events import EventType
from audit.models import AuditEvent
from retention.models import DeletionRequest, RequestMethod, Tombstone
from retention.policies import get_policy
from retention.reports.period_events import LIST_LIMIT, REQUEST, iso, period_events


def _in_window(local: time, window: dict | None) -> bool:
    """Whether a local clock time lies in the execution window (None: any time)."""
    if window is None:
        return True
    start, end = time.fromisoformat(window["start"]), time.fromisoformat(window["end"])
    if start <= end:
        return start <= local < end
    return local >= start or local < end  # the window spans midnight


def anomalies(
    start: datetime,
    end: datetime,
    *,
    deletions: dict[str, Any],
    latencies: list[dict[str, Any]],
    person_threshold: int | None = None,
) -> dict[str, Any]:
    """Each kind of anomaly listed (up to LIST_LIMIT) and counted. ``person_threshold``
    overrides the policy (None: the policy's value)."""
    window = get_policy("execution_window")
    if person_threshold is None:
        person_threshold = get_policy("report_person_deletions_threshold")
    fast_seconds = get_policy("report_fast_approval_seconds")
    near_purge_hours = get_policy("report_near_purge_hours")
    # Retention rules run on their own daily schedule; personal deletions never start.
    method = DeletionRequest.objects.filter(
        pk=Cast(OuterRef("target_id"), BigIntegerField())
    ).values("method")[:1]
    started = (
        period_events(EventType.REQUEST_STARTED, start, end, target_type=REQUEST)
        .annotate(method=Subquery(method), local=TruncTime("created_at"))
        .filter(method__in=[RequestMethod.BATCH, RequestMethod.SERVER])
        .values_list("pk", "target_id", "method", "local")
    )
    late = {pk: (t, m) for pk, t, m, local in started if not _in_window(local, window)}
    outside = [
        {"request": int(late[pk][0]), "method": late[pk][1], "at": iso(at)}
        for pk, at in AuditEvent.objects.filter(pk__in=late)
        .order_by("created_at", "id")
        .values_list("pk", "created_at")
    ]
    heavy = [
        {"member": p["member"], "username": p["username"], "deletions": p["deletions"]}
        for p in deletions["by_person"]
        if p["deletions"] > person_threshold
    ]
    near_purge = [
        {
            "request": r["request_id"],
            "restored_at": iso(r["restored_at"]),
            "purge_after": iso(r["purge_after"]),
            "hours_left": round(r["left"].total_seconds() / 3600, 1),
            "messages": r["messages"],
        }
        for r in Tombstone.objects.filter(restored_at__gte=start, restored_at__lt=end)
        .annotate(left=ExpressionWrapper(F("purge_after") - F("restored_at"), DurationField()))
        .filter(left__lt=timedelta(hours=near_purge_hours))
        .values("request_id", "restored_at", "purge_after", "left")
        .annotate(messages=Sum("messages"))
        .order_by("restored_at", "request_id")
    ]
    fast = [
        {
            "request": entry["request"],
            "step": entry["step"],
            "approver": entry["approver"],
            "seconds": round(entry["seconds"], 1),
        }
        for entry in latencies
        if entry["seconds"] < fast_seconds
    ]
    frequent = [
        {
            "request": int(e.target_id),
            "member": e.actor_id,
            "username": e.actor_name,
            "deletions": int(e.details.get("deletions") or 0),
            "at": iso(e.created_at),
        }
        for e in period_events(EventType.PERSONAL_HELD_FOR_REVIEW, start, end)
    ]
    found = {
        "outside_window": outside,
        "heavy_deleters": heavy,
        "restores_near_purge": near_purge,
        "fast_approvals": fast,
        "frequent_deletions": frequent,
    }
    return {
        "execution_window": window,
        "person_threshold": person_threshold,
        "fast_approval_seconds": fast_seconds,
        "near_purge_hours": near_purge_hours,
        **{kind: items[:LIST_LIMIT] for kind, items in found.items()},
        "counts": {kind: len(items) for kind, items in found.items()},
        "count": sum(len(items) for items in found.values()),
    }
