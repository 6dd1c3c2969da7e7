"""Reads of the audit log: recent events, and the explorer's filtered, keyset-paged view.

Who may read the log is decided by the caller (the site's pages and API let auditors and
admins in); these functions take plain values, so the audit app needs nothing of theirs.

Every page is "newest first, ``size`` at a time" by id, with a cursor of ids (``before``
for older pages, ``after`` for newer ones): each filter has an index that ends in the id,
so a page costs the same at the first event and at the millionth. A time range becomes an
id range first (two index look-ups): ids and times grow together, because
:func:`audit.log.record` takes both while it holds the chain lock.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import connection
from django.db.models import Func, Q, QuerySet, TextField, Value
from django.db.models.functions import Cast, Upper
from django.utils.dateparse import parse_datetime

from audit.models import AuditEvent

BIGRAMS = ArrayField(TextField())
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def recent_events(*, limit: int = 10) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.order_by("-id")[:limit]


@dataclass(frozen=True)
class EventFilter:
    """The explorer's filters; empty fields filter nothing.

    ``department_ids``: None is every department; a tuple is "one of these" (the caller
    expands a subtree). ``up_to_id`` freezes a view at a head (exports).
    """

    since: datetime | None = None
    until: datetime | None = None
    actor: str = ""
    event_types: tuple[int, ...] = ()
    department_ids: tuple[int, ...] | None = None
    target_type: str = ""
    target_id: str = ""
    text: str = ""
    up_to_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("since", "until"):
            if data[name] is not None:
                data[name] = data[name].isoformat()
        for name in ("event_types", "department_ids"):
            if data[name] is not None:
                data[name] = list(data[name])
        kept = {k: v for k, v in data.items() if v is not None and v != ""}
        # No types is no filter; an empty department list ("none of them") is one.
        if not kept["event_types"]:
            del kept["event_types"]
        return kept

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventFilter:
        values = dict(data)
        for name in ("since", "until"):
            if values.get(name):
                values[name] = parse_datetime(values[name])
        values["event_types"] = tuple(values.get("event_types", ()))
        if values.get("department_ids") is not None:
            values["department_ids"] = tuple(values["department_ids"])
        return cls(**values)


def filtered_events(f: EventFilter) -> QuerySet[AuditEvent]:
    """The events matching ``f``, newest first."""
    qs = AuditEvent.objects.all()
    if f.since or f.until:
        qs = _within_time(qs, f.since, f.until)
    if f.up_to_id is not None:
        qs = qs.filter(id__lte=f.up_to_id)
    if f.actor:
        qs = qs.filter(actor_name=f.actor)
    if f.event_types:
        qs = qs.filter(event_type__in=f.event_types)
    if f.department_ids is not None:
        qs = qs.filter(department_id__in=f.department_ids)
    if f.target_type:
        qs = qs.filter(target_type=f.target_type)
    if f.target_id:
        qs = qs.filter(target_id=f.target_id)
    if f.text:
        qs = _matching_text(qs, f.text)
    return qs.order_by("-id")


def _within_time(qs: QuerySet[AuditEvent], since, until) -> QuerySet[AuditEvent]:
    """The time range as an id range (index look-ups), and as itself (exactness)."""
    if since is not None:
        first = _first_id_at_or_after(since)
        if first is None:
            return qs.none()
        qs = qs.filter(id__gte=first, created_at__gte=since)
    if until is not None:
        beyond = _first_id_at_or_after(until)
        if beyond is not None:
            qs = qs.filter(id__lt=beyond)
        qs = qs.filter(created_at__lt=until)
    return qs


def _first_id_at_or_after(moment: datetime) -> int | None:
    return (
        AuditEvent.objects.filter(created_at__gte=moment)
        .order_by("created_at", "id")
        .values_list("id", flat=True)
        .first()
    )


def _matching_text(qs: QuerySet[AuditEvent], text: str) -> QuerySet[AuditEvent]:
    """A substring of the details' JSON text, case-insensitive.

    Chinese has no word boundaries, so this is substring search. On PostgreSQL three
    characters or more are an ILIKE that pg_trgm's index serves; two characters, which
    have no trigram, ask migration 0012's bigram index: a two-character text occurs in the
    details exactly when it is one of their bigrams.
    """
    if connection.vendor == "postgresql" and len(text) == 2:
        return qs.alias(
            details_bigrams=Func(
                Upper(Cast("details", TextField())), function="audit_bigrams", output_field=BIGRAMS
            )
        ).filter(
            details_bigrams__contains=Func(
                Upper(Value(text)), function="audit_bigrams", output_field=BIGRAMS
            )
        )
    qs = qs.alias(details_text=Cast("details", TextField()))
    match = Q(details_text__icontains=text)
    if connection.vendor != "postgresql":
        # SQLite keeps JSON as Django wrote it, with non-ASCII escaped (\u9000).
        escaped = json.dumps(text)[1:-1]
        if escaped != text:
            match |= Q(details_text__icontains=escaped)
    return qs.filter(match)


@dataclass(frozen=True)
class EventPage:
    events: list[AuditEvent]
    # Cursors: pass ``before=older`` for the next older page, ``after=newer`` for the
    # newer one; None where there is nothing more that way.
    older: int | None
    newer: int | None


def event_page(
    f: EventFilter,
    *,
    before: int | None = None,
    after: int | None = None,
    size: int = PAGE_SIZE,
) -> EventPage:
    """One page of ``f``, newest first: the ``size`` events just older than ``before``,
    just newer than ``after``, or the newest ones. Appended events never shift a page."""
    qs = filtered_events(f)
    if after is not None:
        rows = list(qs.filter(id__gt=after).order_by("id")[: size + 1])
        more_newer = len(rows) > size
        events = list(reversed(rows[:size]))
        newer = events[0].pk if more_newer and events else None
        older = events[-1].pk if events else after + 1
        # Older than this page there is at least the event ``after`` pointed below.
        return EventPage(events, older if qs.filter(id__lt=older).exists() else None, newer)
    if before is not None:
        qs = qs.filter(id__lt=before)
    rows = list(qs[: size + 1])
    events = rows[:size]
    older = events[-1].pk if len(rows) > size else None
    newer = None
    if before is not None and events:
        newer = events[0].pk if filtered_events(f).filter(id__gt=events[0].pk).exists() else None
    elif before is not None:
        newer = before - 1 if filtered_events(f).filter(id__gte=before).exists() else None
    return EventPage(events, older, newer)
