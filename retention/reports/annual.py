"""The annual data-security assessment: the year's four quarters in headline numbers, the
audit chain's latest verification, the compliance findings still open, and every policy
change of the year."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from audit.chain import verify_chain
from audit.events import EventType
from audit.models import ComplianceReview, ReviewStatus, VerificationStatus
from audit.verification import latest_verification
from retention.reports.period_events import LIST_LIMIT, iso, period_events
from retention.reports.periods import Quarter
from retention.reports.quarterly import quarterly_report


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
            "verified_at": iso(timezone.now()),
        }
    return {
        "intact": latest.status == VerificationStatus.INTACT,
        "events_checked": latest.events_checked,
        "broken_id": latest.broken_id,
        "reason": latest.reason or latest.error,
        "verified_at": iso(latest.finished_at),
    }


def annual_assessment(year: int) -> dict[str, Any]:
    """The year's data-security assessment: its four quarters, the chain's latest
    verification, the compliance findings still open, and every policy change of the
    year."""
    start, end = Quarter(year, 1).start, Quarter(year, 4).end
    findings = ComplianceReview.objects.filter(
        status__in=[ReviewStatus.OPEN, ReviewStatus.FLAGGED], opened_at__lt=end
    ).order_by("opened_at", "id")
    return {
        "year": year,
        "generated_at": iso(timezone.now()),
        "quarters": [quarter_summary(quarterly_report(year, q)) for q in (1, 2, 3, 4)],
        "chain": _chain_status(),
        "open_findings": [
            {
                "review": r.pk,
                "kind": r.kind,
                "status": r.status,
                "request": r.request_id,
                "opened_at": iso(r.opened_at),
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
                "at": iso(e.created_at),
            }
            for e in period_events(EventType.POLICY_CHANGED, start, end)[:LIST_LIMIT]
        ],
    }
