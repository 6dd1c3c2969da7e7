"""Chain verification runs as queue jobs: asking for one, the job that works it under its
lease, the nightly run, the daily digests job, and the sweep of runs whose worker died.

- :func:`do_request_verification`: an auditor or admin asks for a run; the row and the
  audit event are written in one transaction and the job enqueued on commit. While a run
  is queued or running, asking again returns that run.
- :func:`run_verification`: the work. It claims the row (queued → running, through
  ``LEASE``), walks the chain up to the head of that moment (``audit.chain``), beating
  as it goes, and writes the outcome to the row and to the log.
- :func:`requeue_stalled_verifications`: every few minutes, a run whose worker went
  silent is queued again, or failed after ``MAX_ATTEMPTS`` runs.

What a run found and the reads of runs and digests are the audit app's
(``audit.verification``).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction

from audit import log as audit
from audit import verification
from audit.chain import verify_chain
from audit.events import EventType
from audit.models import ChainVerification, VerificationStatus
from audit.verification import head_id
from retention.jobs.lease import Lease, LeaseLost, pacer
from retention.models import Member

logger = logging.getLogger(__name__)

QUEUE = "default"
# A running verification touches its heartbeat at most this often (seconds).
BEAT_SECONDS = 5.0
# A running verification whose heartbeat is older than this was left by a dead worker.
STALLED_AFTER = timedelta(minutes=10)
# Runs a verification gets before it fails.
MAX_ATTEMPTS = 3


def do_request_verification(
    *, acting_user: Member, ip_address: str | None = None
) -> ChainVerification:
    """Queue a verification run (or return the one already queued or running)."""
    with transaction.atomic():
        pending = verification.pending_verification()
        if pending is not None:
            return pending
        run = ChainVerification.objects.create(requested_by=acting_user)
        audit.record(
            EventType.CHAIN_VERIFICATION_REQUESTED,
            actor=acting_user,
            target=run,
            ip_address=ip_address,
        )
        LEASE.enqueue(run.pk)
    return run


def run_verification(run_id: int) -> ChainVerification:
    """Claim the run and verify the chain up to the current head; a run claimed by
    another worker, or already done, is left alone. A run taken for dead meanwhile stops
    without writing its outcome."""
    head = head_id()
    run = LEASE.claim(run_id, up_to_id=head)
    if run is None:
        return ChainVerification.objects.get(pk=run_id)
    try:
        report = verify_chain(
            up_to=head if head is not None else 0,
            progress=pacer(lambda: LEASE.beat(run), BEAT_SECONDS),
        )
        with transaction.atomic():
            outcome = verification.settled(report)
            if not LEASE.finish(run, outcome.pop("status"), **outcome):
                raise LeaseLost
            run.refresh_from_db()
            audit.record(
                EventType.CHAIN_VERIFIED,
                actor=run.requested_by,
                target=run,
                details=verification.outcome_of(run),
            )
    except LeaseLost:
        logger.warning("verification %s: run %s was superseded by a restart", run_id, run.attempts)
    except Exception as exc:
        LEASE.fail(run, f"{type(exc).__name__}: {exc}")
        raise
    run.refresh_from_db()
    return run


def run_verification_job(run_id: int) -> str:
    """The queue job: a verification someone asked for on the verify page or the API."""
    return run_verification(run_id).status


def verify_audit_chain() -> dict:
    """Nightly: verify the whole chain as a run of its own (shown on the verify page) and
    record the outcome in the log."""
    run = ChainVerification.objects.create()
    return verification.outcome_of(run_verification(run.pk))


def record_chain_digests() -> list[str]:
    """Daily, after midnight: the head of each finished day."""
    return [day.isoformat() for day in verification.record_digests()]


def requeue_stalled_verifications() -> list[int]:
    """Every five minutes: runs whose worker went silent are queued again (or failed)."""
    return LEASE.sweep()


# A verification's lease: a heartbeat, the attempt number telling runs apart. A failure
# is recorded on the row only, as the job's own failures are.
LEASE: Lease[ChainVerification] = Lease(
    model=ChainVerification,
    queued=VerificationStatus.QUEUED,
    running=VerificationStatus.RUNNING,
    failed=VerificationStatus.FAILED,
    stale_after=STALLED_AFTER,
    max_attempts=MAX_ATTEMPTS,
    job=run_verification_job,
    queue=QUEUE,
    job_id="verification-{pk}",
    created="requested_at",
    related=("requested_by",),
)
