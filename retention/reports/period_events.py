"""The audit events of a period as every figure of the reports reads them, and the small
shaping helpers the figures share (local ISO times, ids from text targets)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from audit.events import EventType
from audit.models import AuditEvent

# Lists in the report are cut at this length (their counts are not).
LIST_LIMIT = 200

REQUEST = "retention.deletionrequest"
HOLD = "retention.hold"


def period_events(
    event_type: EventType, start: datetime, end: datetime, **filters
) -> QuerySet[AuditEvent]:
    """Events of one type in [start, end), oldest first (the ``(event_type, created_at)``
    index)."""
    return AuditEvent.objects.filter(
        event_type=event_type, created_at__gte=start, created_at__lt=end, **filters
    ).order_by("created_at", "id")


def iso(moment: datetime | None) -> str | None:
    return timezone.localtime(moment).isoformat() if moment else None


def int_ids(values: Iterable[Any]) -> list[int]:
    """The values that are decimal ids, as ints (audit targets are text)."""
    return [int(v) for v in values if str(v).isdigit()]
