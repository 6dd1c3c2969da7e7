"""The quarter's deletions: what each finished deletion took (messages, conversations,
bytes), totalled by method, by department and by person."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db.models import BigIntegerField, Count, Q, Sum
from django.db.models.functions import Cast

from audit.events import EventType
from retention.models import DeletionRequest, Department, Member, RequestMethod, Tombstone
from retention.reports.period_events import REQUEST, int_ids, period_events

_ZERO = {"deletions": 0, "messages": 0, "conversations": 0, "bytes": 0}


def _request_ids(events):
    """The requests these events are about, as a subquery (no long list of ids)."""
    return events.order_by().values(request_id=Cast("target_id", BigIntegerField()))


def _deletion_rows(start: datetime, end: datetime) -> list[dict[str, Any]]:
    """One row per (request, department): what each deletion finished in the quarter took.

    Batch, server-side and retention-rule deletions count when their run completed
    (REQUEST_EXECUTED), from their tombstones: messages, conversations and bytes per
    department of the conversation. Personal deletions count when filed (they take effect
    at once), from their audit event and their request's preview.
    """
    executed = _request_ids(
        period_events(EventType.REQUEST_EXECUTED, start, end, target_type=REQUEST)
    )
    rows = [
        {
            "request": r["request_id"],
            "method": r["request__method"],
            "person": r["request__requester_id"],
            "department": r["conversation__department_id"],
            "messages": r["taken"] or 0,
            "conversations": r["touched"],
            "bytes": r["size"] or 0,
        }
        for r in Tombstone.objects.filter(request_id__in=executed)
        .values(
            "request_id",
            "request__method",
            "request__requester_id",
            "conversation__department_id",
        )
        .annotate(
            taken=Sum("messages"),
            size=Sum("bytes"),
            touched=Count("conversation_id", distinct=True, filter=Q(messages__gt=0)),
        )
        .order_by("request_id", "conversation__department_id")
    ]
    # A server-side wipe destroys keys and rows without reading them: its tombstones
    # carry no bytes, so its bytes are those of its approved preview, per department.
    wiped = [r["request"] for r in rows if r["method"] == RequestMethod.SERVER]
    previewed = {
        (pk, d.get("department")): int(d.get("bytes") or 0)
        for pk, departments in DeletionRequest.objects.filter(pk__in=wiped).values_list(
            "pk", "preview__by_department"
        )
        for d in departments or []
    }
    for row in rows:
        if row["method"] == RequestMethod.SERVER:
            row["bytes"] = previewed.get((row["request"], row["department"]), 0)
    personal = list(
        period_events(EventType.PERSONAL_DELETED, start, end).values_list(
            "target_id", "actor_id", "department_id", "details"
        )
    )
    preview_bytes = dict(
        DeletionRequest.objects.filter(pk__in=int_ids(p[0] for p in personal)).values_list(
            "pk", "preview__bytes"
        )
    )
    for target_id, actor_id, department_id, details in personal:
        request_id = int(target_id) if str(target_id).isdigit() else None
        rows.append(
            {
                "request": request_id,
                "method": RequestMethod.PERSONAL.value,
                "person": actor_id,
                "department": department_id,
                "messages": int(details.get("messages") or 0),
                "conversations": 1,
                "bytes": int(preview_bytes.get(request_id) or 0),
            }
        )
    return rows


def _totals(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, int]]:
    out: dict[Any, dict[str, int]] = defaultdict(
        lambda: {"deletions": 0, "messages": 0, "conversations": 0, "bytes": 0}
    )
    seen: set[tuple[Any, Any]] = set()
    for row in rows:
        entry = out[row[key]]
        # A request counts once per group, however many departments it touched.
        if (row[key], row["request"]) not in seen or row["request"] is None:
            seen.add((row[key], row["request"]))
            entry["deletions"] += 1
        for field in ("messages", "conversations", "bytes"):
            entry[field] += row[field]
    return out


def deletions_between(start: datetime, end: datetime) -> dict[str, Any]:
    """The deletions finished in [start, end), in total and by method, department and person."""
    rows = _deletion_rows(start, end)
    by_method = _totals(rows, "method")
    by_department = _totals(rows, "department")
    by_person = _totals(rows, "person")
    departments = dict(
        Department.objects.filter(pk__in=[d for d in by_department if d]).values_list("pk", "name")
    )
    people = {
        m["pk"]: m
        for m in Member.objects.filter(pk__in=[p for p in by_person if p]).values(
            "pk", "username", "display_name"
        )
    }
    labels = dict(RequestMethod.choices)
    requests = {r["request"] for r in rows if r["request"] is not None}
    return {
        "total": {
            "deletions": len(requests) + sum(1 for r in rows if r["request"] is None),
            "messages": sum(r["messages"] for r in rows),
            "conversations": sum(r["conversations"] for r in rows),
            "bytes": sum(r["bytes"] for r in rows),
        },
        "by_method": [
            {"method": m, "label": str(labels[m]), **by_method.get(m, _ZERO)}
            for m in RequestMethod.values
        ],
        "by_department": sorted(
            (
                {"department": d, "name": departments.get(d, ""), **totals}
                for d, totals in by_department.items()
            ),
            key=lambda e: (-e["messages"], e["name"]),
        ),
        "by_person": sorted(
            (
                {
                    "member": p,
                    "username": people.get(p, {}).get("username", ""),
                    "name": people.get(p, {}).get("display_name", ""),
                    **totals,
                }
                for p, totals in by_person.items()
            ),
            key=lambda e: (-e["deletions"], -e["messages"], e["username"]),
        ),
    }
