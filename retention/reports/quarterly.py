"""The quarterly audit report: every figure of a quarter, assembled into one JSON-ready
dict that the page, the API and every download format render as it is.

The report lives in ``retention`` and not in ``audit``: its numbers come from the audit
log *and* from the requests' own tables (a request's method and requester, the tombstones
that say how many messages and bytes of which department it took, the recycle-bin dates
of what was restored), and ``audit`` must never import ``retention``.

Every figure is computed in a handful of indexed queries: the audit events of one type
in the quarter (``(event_type, created_at)`` index), then the rows those events name.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from django.db.models import Count, IntegerField, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.utils import timezone

from audit.events import EventType
from audit.models import ComplianceReview, ReviewKind, ReviewStatus
from retention.models import Member
from retention.reports.anomalies import anomalies
from retention.reports.deletions import deletions_between
from retention.reports.latencies import approval_latencies, latency_summary
from retention.reports.period_events import HOLD, LIST_LIMIT, int_ids, iso, period_events
from retention.reports.periods import Quarter


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
    from_bin = period_events(EventType.RECYCLE_RESTORED, start, end)
    totals = from_bin.aggregate(
        n=Count("id"),
        messages=Sum(Cast(KT("details__messages"), IntegerField())),
        conversations=Sum(Cast(KT("details__conversations"), IntegerField())),
    )
    personal = period_events(EventType.PERSONAL_RESTORED, start, end).count()
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
                "at": iso(e.created_at),
                "messages": int(e.details.get("messages") or 0),
                "conversations": int(e.details.get("conversations") or 0),
            }
            for e in from_bin[:LIST_LIMIT]
        ],
    }


def quarterly_report(
    year: int, quarter: int, *, person_threshold: int | None = None
) -> dict[str, Any]:
    """Everything the quarter's audit report shows, as one JSON-ready dict
    (``person_threshold``: None reads the policy)."""
    period = Quarter(year, quarter)
    start, end = period.start, period.end
    deletions = deletions_between(start, end)
    latencies = approval_latencies(start, end)
    rejected = _listed(
        period_events(EventType.REQUEST_REJECTED, start, end),
        lambda e: {
            "request": int(e.target_id),
            "step": e.details.get("step"),
            "role": e.details.get("role", ""),
            "by": e.actor_name,
            "reason": e.details.get("reason", ""),
            "at": iso(e.created_at),
        },
    )
    rejected["by_reason"] = [
        {"reason": reason, "count": n}
        for reason, n in sorted(
            _tally(period_events(EventType.REQUEST_REJECTED, start, end), "reason").items(),
            key=lambda item: (-item[1], item[0]),
        )
    ]
    refused = _listed(
        period_events(EventType.REQUEST_REFUSED, start, end),
        lambda e: {
            "member": e.actor_name,
            "why": e.details.get("why", ""),
            "at": iso(e.created_at),
        },
    )
    refused["by_why"] = dict(
        sorted(_tally(period_events(EventType.REQUEST_REFUSED, start, end), "why").items())
    )
    grants = period_events(EventType.QUOTA_GRANTED, start, end)
    member_names = dict(
        Member.objects.filter(
            pk__in=int_ids(grants[:LIST_LIMIT].values_list("target_id", flat=True))
        ).values_list("pk", "username")
    )
    quota = _listed(
        grants,
        lambda e: {
            "member": member_names.get(int(e.target_id) if e.target_id.isdigit() else None, ""),
            "extra": int(e.details.get("extra") or 0),
            "reason": e.details.get("reason", ""),
            "by": e.actor_name,
            "at": iso(e.created_at),
        },
    )
    quota["extra"] = sum(int(n or 0) for n in grants.values_list("details__extra", flat=True))
    rule_runs = list(period_events(EventType.RULE_RUN, start, end))
    return {
        "period": f"{year}-Q{quarter}",
        "year": year,
        "quarter": quarter,
        "start": iso(start),
        "end": iso(end),
        "generated_at": iso(timezone.now()),
        "deletions": deletions,
        "approval_latency": latency_summary(latencies),
        "rejections": rejected,
        "quota_overrides": quota,
        "refusals": refused,
        "holds": {
            "placed": _listed(
                period_events(EventType.HOLD_PLACED, start, end, target_type=HOLD),
                lambda e: {
                    "hold": int(e.target_id),
                    "kind": e.details.get("kind", ""),
                    "reason": e.details.get("reason", ""),
                    "by": e.actor_name,
                    "at": iso(e.created_at),
                },
            ),
            "released": _listed(
                period_events(EventType.HOLD_RELEASED, start, end, target_type=HOLD),
                lambda e: {
                    "hold": int(e.target_id),
                    "reason": e.details.get("reason", ""),
                    "by": e.actor_name,
                    "at": iso(e.created_at),
                },
            ),
        },
        "restores": _restores(start, end),
        "jobs": {
            "failed": _listed(
                period_events(EventType.REQUEST_FAILED, start, end),
                lambda e: {
                    "request": int(e.target_id),
                    "reason": e.details.get("reason", ""),
                    "attempts": e.details.get("attempts"),
                    "at": iso(e.created_at),
                },
            ),
            "resumed": _listed(
                period_events(EventType.REQUEST_RESUMED, start, end),
                lambda e: {
                    "request": int(e.target_id),
                    "attempt": e.details.get("attempt"),
                    "at": iso(e.created_at),
                },
            ),
        },
        "rule_runs": {
            "count": len(rule_runs),
            "messages": sum(int(e.details.get("messages") or 0) for e in rule_runs),
            "failed": period_events(EventType.RULE_RUN_FAILED, start, end).count(),
        },
        "anomalies": anomalies(
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
        "reviewed_at": iso(review.reviewed_at),
        "finding": review.finding,
        "figures": review.summary if decided else None,
    }
