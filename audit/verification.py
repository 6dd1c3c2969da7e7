"""Chain verification runs (a database row per run, the work on the queue) and the daily
digests of the chain's head.

- :func:`do_request_verification`: an auditor or admin asks for a run; the row and the
  audit event are written in one transaction and the job is enqueued on commit. While a
  run is queued or running, asking again returns that run.
- :func:`run_verification`: the job. It claims the row (queued → running), walks the chain
  up to the head of that moment and writes the outcome to the row and to the log.
- :func:`record_digests`: the daily job. For every finished day (local time) since the last
  digest it records the head of the chain at the day's end; a missed or doubled run is
  harmless.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import django_rq
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import log as audit
from audit.chain import verify_chain
from audit.events import EventType
from audit.models import AuditEvent, ChainDigest, ChainVerification, VerificationStatus

QUEUE = "default"
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


def do_request_verification(*, acting_user, ip_address: str | None = None) -> ChainVerification:
    """Queue a verification run (or return the one already queued or running)."""
    with transaction.atomic():
        pending = pending_verification()
        if pending is not None:
            return pending
        run = ChainVerification.objects.create(requested_by=acting_user)
        audit.record(
            EventType.CHAIN_VERIFICATION_REQUESTED,
            actor=acting_user,
            target=run,
            ip_address=ip_address,
        )
        run_id = run.pk
        transaction.on_commit(
            lambda: django_rq.get_queue(QUEUE).enqueue("audit.jobs.run_verification", run_id)
        )
    return run


def run_verification(run_id: int) -> ChainVerification:
    """Claim the run and verify the chain up to the current head; a run claimed by
    another worker, or already done, is left alone."""
    head = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
    claimed = ChainVerification.objects.filter(pk=run_id, status=VerificationStatus.QUEUED).update(
        status=VerificationStatus.RUNNING, started_at=timezone.now(), up_to_id=head
    )
    run = ChainVerification.objects.get(pk=run_id)
    if not claimed:
        return run
    try:
        report = verify_chain(up_to=head) if head is not None else verify_chain(up_to=0)
    except Exception as exc:
        run.status = VerificationStatus.FAILED
        run.error = f"{type(exc).__name__}: {exc}"
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        raise
    run.status = VerificationStatus.INTACT if report.intact else VerificationStatus.BROKEN
    run.events_checked = report.events_checked
    run.digests_checked = report.digests_checked
    run.last_good_id = report.last_good_id
    run.broken_id = report.broken_id
    run.reason = report.reason
    run.finished_at = timezone.now()
    with transaction.atomic():
        run.save()
        audit.record(
            EventType.CHAIN_VERIFIED,
            actor=run.requested_by,
            target=run,
            details=outcome_of(run),
        )
    return run


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
