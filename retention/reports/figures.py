"""The quarterly audit report and the annual data-security assessment: pure reads.

The report lives in ``retention`` and not in ``audit``: its numbers come from the audit
log *and* from the requests' own tables (a request's method and requester, the tombstones
that say how many messages and bytes of which department it took, the recycle-bin dates
of what was restored), and ``audit`` must never import ``retention``.

Every figure is computed in a handful of indexed queries: the audit events of one type
in the quarter (``(event_type, created_at)`` index), then the rows those events name.
The result is a plain, JSON-ready dict that the page, the API and every download format
render as they are.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from datetime import datetime, time, timedelta
from typing import Any

from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, TruncTime
from django.utils import timezone

from audit.chain import verify_chain
from audit.events import EventType
from audit.models import (
    AuditEvent,
    ComplianceReview,
    ReviewKind,
    ReviewStatus,
    VerificationStatus,
)
from audit.verification import latest_verification
from retention.models import (
    DeletionRequest,
    Department,
    Member,
    RequestMethod,
    Tombstone,
)
from retention.policies import get_policy
from retention.reports.periods import Quarter

# Anomaly thresholds. A person with more deletions than this in one quarter is listed.
PERSON_DELETIONS_THRESHOLD = 20
# An approval decided this soon after its step became due is listed.
FAST_APPROVAL_SECONDS = 60
# A restore this close to the records' purge time is listed.
NEAR_PURGE = timedelta(hours=24)
# Lists in the report are cut at this length (their counts are not).
LIST_LIMIT = 200

REQUEST = "retention.deletionrequest"
HOLD = "retention.hold"


def parse_quarter(text: str) -> tuple[int, int]:
    quarter = Quarter.parse(text)
    return quarter.year, quarter.number


def quarter_bounds(year: int, quarter: int) -> tuple[datetime, datetime]:
    """[start, end) of the quarter in the site's time zone."""
    return Quarter(year, quarter).start, Quarter(year, quarter).end


def _events(event_type: EventType, start: datetime, end: datetime, **filters):
    return AuditEvent.objects.filter(
        event_type=event_type, created_at__gte=start, created_at__lt=end, **filters
    ).order_by("created_at", "id")


def _iso(moment: datetime | None) -> str | None:
    return timezone.localtime(moment).isoformat() if moment else None


def _p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile: the smallest value at or above 90% of the values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def _ints(values) -> list[int]:
    return [int(v) for v in values if str(v).isdigit()]


# --- deletions -------------------------------------------------------------------------


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
    executed = _request_ids(_events(EventType.REQUEST_EXECUTED, start, end, target_type=REQUEST))
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
        _events(EventType.PERSONAL_DELETED, start, end).values_list(
            "target_id", "actor_id", "department_id", "details"
        )
    )
    preview_bytes = dict(
        DeletionRequest.objects.filter(pk__in=_ints(p[0] for p in personal)).values_list(
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


def _deletions(start: datetime, end: datetime) -> dict[str, Any]:
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


_ZERO = {"deletions": 0, "messages": 0, "conversations": 0, "bytes": 0}


# --- approvals ---------------------------------------------------------------------------


def _approval_latencies(start: datetime, end: datetime) -> list[dict[str, Any]]:
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
        _events(EventType.REQUEST_STEP_APPROVED, start, end, target_type=REQUEST)
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


def _latency_summary(latencies: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


# --- the rest of the log ------------------------------------------------------------------


def _listed(queryset, shape) -> dict[str, Any]:
    """How many events, and the first LIST_LIMIT of them shaped for the report."""
    return {"count": queryset.count(), "items": [shape(e) for e in queryset[:LIST_LIMIT]]}


def _tally(queryset, key: str) -> Counter:
    """Events counted by one key of their details, over all of them (not just those listed)."""
    return Counter(
        {
            row["value"] or "": row["n"]
            for row in queryset.order_by()
            .values(value=KT(f"details__{key}"))
            .annotate(n=Count("id"))
        }
    )


def _restores(start: datetime, end: datetime) -> dict[str, Any]:
    from_bin = _events(EventType.RECYCLE_RESTORED, start, end)
    totals = from_bin.aggregate(
        n=Count("id"),
        messages=Sum(Cast(KT("details__messages"), IntegerField())),
        conversations=Sum(Cast(KT("details__conversations"), IntegerField())),
    )
    personal = _events(EventType.PERSONAL_RESTORED, start, end).count()
    return {
        "count": totals["n"] + personal,
        "recycle_bin": totals["n"],
        "personal": personal,
        "messages": totals["messages"] or 0,
        "conversations": totals["conversations"] or 0,
        "items": [
            {
                "request": int(e.target_id),
                "by": e.actor_name,
                "at": _iso(e.created_at),
                "messages": int(e.details.get("messages") or 0),
                "conversations": int(e.details.get("conversations") or 0),
            }
            for e in from_bin[:LIST_LIMIT]
        ],
    }


def _in_window(local: time, window: dict | None) -> bool:
    """Whether a local clock time lies in the execution window (None: any time)."""
    if window is None:
        return True
    start, end = time.fromisoformat(window["start"]), time.fromisoformat(window["end"])
    if start <= end:
        return start <= local < end
    return local >= start or local < end  # the window spans midnight


def _anomalies(
    start: datetime,
    end: datetime,
    *,
    deletions: dict[str, Any],
    latencies: list[dict[str, Any]],
    person_threshold: int,
) -> dict[str, Any]:
    window = get_policy("execution_window")
    # Retention rules run on their own daily schedule; personal deletions never start.
    method = DeletionRequest.objects.filter(
        pk=Cast(OuterRef("target_id"), BigIntegerField())
    ).values("method")[:1]
    started = (
        _events(EventType.REQUEST_STARTED, start, end, target_type=REQUEST)
        .annotate(method=Subquery(method), local=TruncTime("created_at"))
        .filter(method__in=[RequestMethod.BATCH, RequestMethod.SERVER])
        .values_list("pk", "target_id", "method", "local")
    )
    late = {pk: (t, m) for pk, t, m, local in started if not _in_window(local, window)}
    outside = [
        {"request": int(late[pk][0]), "method": late[pk][1], "at": _iso(at)}
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
            "restored_at": _iso(r["restored_at"]),
            "purge_after": _iso(r["purge_after"]),
            "hours_left": round(r["left"].total_seconds() / 3600, 1),
            "messages": r["messages"],
        }
        for r in Tombstone.objects.filter(restored_at__gte=start, restored_at__lt=end)
        .annotate(left=ExpressionWrapper(F("purge_after") - F("restored_at"), DurationField()))
        .filter(left__lt=NEAR_PURGE)
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
        if entry["seconds"] < FAST_APPROVAL_SECONDS
    ]
    found = {
        "outside_window": outside,
        "heavy_deleters": heavy,
        "restores_near_purge": near_purge,
        "fast_approvals": fast,
    }
    return {
        "execution_window": window,
        "person_threshold": person_threshold,
        **{kind: items[:LIST_LIMIT] for kind, items in found.items()},
        "counts": {kind: len(items) for kind, items in found.items()},
        "count": sum(len(items) for items in found.values()),
    }


def quarterly_report(
    year: int, quarter: int, *, person_threshold: int = PERSON_DELETIONS_THRESHOLD
) -> dict[str, Any]:
    """Everything the quarter's audit report shows, as one JSON-ready dict."""
    start, end = quarter_bounds(year, quarter)
    deletions = _deletions(start, end)
    latencies = _approval_latencies(start, end)
    rejected = _listed(
        _events(EventType.REQUEST_REJECTED, start, end),
        lambda e: {
            "request": int(e.target_id),
            "step": e.details.get("step"),
            "role": e.details.get("role", ""),
            "by": e.actor_name,
            "reason": e.details.get("reason", ""),
            "at": _iso(e.created_at),
        },
    )
    rejected["by_reason"] = [
        {"reason": reason, "count": n}
        for reason, n in sorted(
            _tally(_events(EventType.REQUEST_REJECTED, start, end), "reason").items(),
            key=lambda item: (-item[1], item[0]),
        )
    ]
    refused = _listed(
        _events(EventType.REQUEST_REFUSED, start, end),
        lambda e: {
            "member": e.actor_name,
            "why": e.details.get("why", ""),
            "at": _iso(e.created_at),
        },
    )
    refused["by_why"] = dict(
        sorted(_tally(_events(EventType.REQUEST_REFUSED, start, end), "why").items())
    )
    grants = _events(EventType.QUOTA_GRANTED, start, end)
    member_names = dict(
        Member.objects.filter(
            pk__in=_ints(grants[:LIST_LIMIT].values_list("target_id", flat=True))
        ).values_list("pk", "username")
    )
    quota = _listed(
        grants,
        lambda e: {
            "member": member_names.get(int(e.target_id) if e.target_id.isdigit() else None, ""),
            "extra": int(e.details.get("extra") or 0),
            "reason": e.details.get("reason", ""),
            "by": e.actor_name,
            "at": _iso(e.created_at),
        },
    )
    quota["extra"] = sum(int(n or 0) for n in grants.values_list("details__extra", flat=True))
    rule_runs = list(_events(EventType.RULE_RUN, start, end))
    return {
        "period": f"{year}-Q{quarter}",
        "year": year,
        "quarter": quarter,
        "start": _iso(start),
        "end": _iso(end),
        "generated_at": _iso(timezone.now()),
        "deletions": deletions,
        "approval_latency": _latency_summary(latencies),
        "rejections": rejected,
        "quota_overrides": quota,
        "refusals": refused,
        "holds": {
            "placed": _listed(
                _events(EventType.HOLD_PLACED, start, end, target_type=HOLD),
                lambda e: {
                    "hold": int(e.target_id),
                    "kind": e.details.get("kind", ""),
                    "reason": e.details.get("reason", ""),
                    "by": e.actor_name,
                    "at": _iso(e.created_at),
                },
            ),
            "released": _listed(
                _events(EventType.HOLD_RELEASED, start, end, target_type=HOLD),
                lambda e: {
                    "hold": int(e.target_id),
                    "reason": e.details.get("reason", ""),
                    "by": e.actor_name,
                    "at": _iso(e.created_at),
                },
            ),
        },
        "restores": _restores(start, end),
        "jobs": {
            "failed": _listed(
                _events(EventType.REQUEST_FAILED, start, end),
                lambda e: {
                    "request": int(e.target_id),
                    "reason": e.details.get("reason", ""),
                    "attempts": e.details.get("attempts"),
                    "at": _iso(e.created_at),
                },
            ),
            "resumed": _listed(
                _events(EventType.REQUEST_RESUMED, start, end),
                lambda e: {
                    "request": int(e.target_id),
                    "attempt": e.details.get("attempt"),
                    "at": _iso(e.created_at),
                },
            ),
        },
        "rule_runs": {
            "count": len(rule_runs),
            "messages": sum(int(e.details.get("messages") or 0) for e in rule_runs),
            "failed": _events(EventType.RULE_RUN_FAILED, start, end).count(),
        },
        "anomalies": _anomalies(
            start,
            end,
            deletions=deletions,
            latencies=latencies,
            person_threshold=person_threshold,
        ),
        "recycle_bin_review": _recycle_bin_review(f"{year}-Q{quarter}"),
    }


def _recycle_bin_review(period: str) -> dict[str, Any] | None:
    """The auditor's review of the quarter's recycle bin, and the figures they signed
    (or flagged); None while nobody has opened it."""
    review = (
        ComplianceReview.objects.filter(kind=ReviewKind.RECYCLE_BIN, period=period)
        .select_related("reviewer")
        .first()
    )
    if review is None:
        return None
    decided = review.status != ReviewStatus.OPEN
    return {
        "review": review.pk,
        "status": review.status,
        "status_label": str(review.get_status_display()),
        "reviewer": review.reviewer.username if review.reviewer else None,
        "reviewed_at": _iso(review.reviewed_at),
        "finding": review.finding,
        "figures": review.summary if decided else None,
    }


# --- the annual assessment ---------------------------------------------------------------


def quarter_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of a quarter, as the annual assessment lists them."""
    return {
        "period": report["period"],
        "deletions": report["deletions"]["total"]["deletions"],
        "messages": report["deletions"]["total"]["messages"],
        "bytes": report["deletions"]["total"]["bytes"],
        "rejections": report["rejections"]["count"],
        "refusals": report["refusals"]["count"],
        "quota_overrides": report["quota_overrides"]["count"],
        "holds_placed": report["holds"]["placed"]["count"],
        "holds_released": report["holds"]["released"]["count"],
        "restores": report["restores"]["count"],
        "failed_jobs": report["jobs"]["failed"]["count"],
        "resumed_jobs": report["jobs"]["resumed"]["count"],
        "rule_runs": report["rule_runs"]["count"],
        "anomalies": report["anomalies"]["count"],
    }


def _chain_status() -> dict[str, Any]:
    """The newest finished verification of the chain (the nightly one, or one an auditor
    ran); verified here and now only if there has never been one: a whole chain of
    millions of events takes as long as ``audit_verify``."""
    latest = latest_verification()
    if latest is None:
        chain = verify_chain()
        return {
            "intact": chain.intact,
            "events_checked": chain.events_checked,
            "broken_id": chain.broken_id,
            "reason": chain.reason,
            "verified_at": _iso(timezone.now()),
        }
    return {
        "intact": latest.status == VerificationStatus.INTACT,
        "events_checked": latest.events_checked,
        "broken_id": latest.broken_id,
        "reason": latest.reason or latest.error,
        "verified_at": _iso(latest.finished_at),
    }


def annual_assessment(year: int) -> dict[str, Any]:
    """The year's data-security assessment: its four quarters, the chain's latest
    verification, the compliance findings still open, and every policy change of the
    year."""
    start, end = quarter_bounds(year, 1)[0], quarter_bounds(year, 4)[1]
    findings = ComplianceReview.objects.filter(
        status__in=[ReviewStatus.OPEN, ReviewStatus.FLAGGED], opened_at__lt=end
    ).order_by("opened_at", "id")
    return {
        "year": year,
        "generated_at": _iso(timezone.now()),
        "quarters": [quarter_summary(quarterly_report(year, q)) for q in (1, 2, 3, 4)],
        "chain": _chain_status(),
        "open_findings": [
            {
                "review": r.pk,
                "kind": r.kind,
                "status": r.status,
                "request": r.request_id,
                "opened_at": _iso(r.opened_at),
                "finding": r.finding,
            }
            for r in findings[:LIST_LIMIT]
        ],
        "policy_changes": [
            {
                "key": e.details.get("key", e.target_id),
                "old": e.details.get("old"),
                "new": e.details.get("new"),
                "by": e.actor_name,
                "at": _iso(e.created_at),
            }
            for e in _events(EventType.POLICY_CHANGED, start, end)[:LIST_LIMIT]
        ],
    }
