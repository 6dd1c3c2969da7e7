"""Chain verification runs, read (the newest finished one, the one pending, a run's
outcome), and the daily digests of the chain's head.

Asking for a run, and the job that works it (claiming the row, walking the chain with
:func:`audit.chain.verify_chain`, writing the outcome), are the site's: see
``retention.reports.verification_runs``.

- :func:`record_digests`: the daily job's work. For every finished day (local time) since
  the last digest it records the head of the chain at the day's end; a missed or doubled
  run is harmless.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.chain import ChainReport
from audit.models import AuditEvent, ChainDigest, ChainVerification, VerificationStatus

# A run still "running" after this long was left by a dead worker: it no longer blocks
# asking for a new one.
STALE_AFTER = timedelta(hours=1)
PENDING = (VerificationStatus.QUEUED, VerificationStatus.RUNNING)


def latest_verification() -> ChainVerification | None:
    """The newest finished run (what the chain-status badge shows)."""
    return (
        ChainVerification.objects.exclude(status__in=PENDING)
        .select_related("requested_by")
        .order_by("-id")
        .first()
    )


def pending_verification() -> ChainVerification | None:
    return (
        ChainVerification.objects.filter(
            status__in=PENDING, requested_at__gte=timezone.now() - STALE_AFTER
        )
        .order_by("-id")
        .first()
    )


def settled(report: ChainReport) -> dict[str, Any]:
    """The fields of a finished run that the walk's report fills in."""
    return {
        "status": VerificationStatus.INTACT if report.intact else VerificationStatus.BROKEN,
        "events_checked": report.events_checked,
        "digests_checked": report.digests_checked,
        "last_good_id": report.last_good_id,
        "broken_id": report.broken_id,
        "reason": report.reason,
    }


def outcome_of(run: ChainVerification) -> dict:
    return {
        "intact": run.status == VerificationStatus.INTACT,
        "events_checked": run.events_checked,
        "digests_checked": run.digests_checked,
        "up_to_id": run.up_to_id,
        "last_good_id": run.last_good_id,
        "broken_id": run.broken_id,
        "reason": run.reason,
    }


# --- daily digests ------------------------------------------------------------------------


def _end_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))


def head_id() -> int | None:
    """The id of the newest event: the chain's head now (None for an empty log)."""
    return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()


def head_at(moment: datetime) -> tuple[int, str] | None:
    """The last event recorded before ``moment``: (id, hash)."""
    return (
        AuditEvent.objects.filter(created_at__lt=moment)
        .order_by("-created_at", "-id")
        .values_list("id", "hash")
        .first()
    )


def record_digests(*, today: date | None = None) -> list[date]:
    """Record the head of every finished day since the last digest (or since the first
    event); returns the days recorded."""
    today = today or timezone.localdate()
    last = ChainDigest.objects.order_by("-day").values_list("day", flat=True).first()
    if last is not None:
        day = last + timedelta(days=1)
    else:
        first = AuditEvent.objects.order_by("id").values_list("created_at", flat=True).first()
        if first is None:
            return []
        day = timezone.localdate(first)
    recorded = []
    while day < today:
        head = head_at(_end_of(day))
        if head is not None:
            try:
                with transaction.atomic():
                    ChainDigest.objects.create(day=day, head_event_id=head[0], head_hash=head[1])
            except IntegrityError:  # another run recorded the day first
                pass
            else:
                recorded.append(day)
        day += timedelta(days=1)
    return recorded
