"""How long approvals waited in the quarter: each approved step's wait, and the median and
90th percentile per step and role."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db.models import (
    Case,
    DurationField,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Subquery,
    Value,
    When,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from audit.events import EventType
from audit.models import AuditEvent
from retention.reports.period_events import REQUEST, period_events


def _p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile: the smallest value at or above 90% of the values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def approval_latencies(start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Each step approved in the quarter, with how long it waited: from the filing (step 1)
    or the previous step's approval (later steps) to its own approval. One query: the
    moment each step became due is a subquery over the request's own events."""
    step_of = Cast(KT("details__step"), IntegerField())
    became_due = (
        AuditEvent.objects.filter(
            target_type=REQUEST,
            target_id=OuterRef("target_id"),
            event_type__in=[EventType.REQUEST_FILED, EventType.REQUEST_STEP_APPROVED],
        )
        .annotate(
            makes_due=Case(
                When(event_type=EventType.REQUEST_FILED, then=Value(1)),
                default=step_of + 1,
            )
        )
        .filter(makes_due=OuterRef("step"))
        .order_by("-id")
        .values("created_at")[:1]
    )
    rows = (
        period_events(EventType.REQUEST_STEP_APPROVED, start, end, target_type=REQUEST)
        .annotate(step=step_of, role=KT("details__role"))
        .annotate(
            waited=ExpressionWrapper(
                F("created_at") - Subquery(became_due), output_field=DurationField()
            )
        )
        .values_list("target_id", "step", "role", "actor_name", "waited")
    )
    return [
        {
            "request": int(target_id),
            "step": step,
            "role": role or "",
            "approver": approver,
            "seconds": waited.total_seconds(),
        }
        for target_id, step, role, approver, waited in rows
        if waited is not None  # filed before the log began: no start to measure from
    ]


def latency_summary(latencies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Approvals, median and p90 wait per (step, role)."""
    groups: dict[tuple[int, str], list[float]] = defaultdict(list)
    for entry in latencies:
        groups[(entry["step"], entry["role"])].append(entry["seconds"])
    return [
        {
            "step": step,
            "role": role,
            "approvals": len(values),
            "median_seconds": round(statistics.median(values), 1),
            "p90_seconds": round(_p90(values), 1),
        }
        for (step, role), values in sorted(groups.items())
    ]
