"""Queue jobs of the audit app: thin wrappers that take ids or nothing and call a service."""

from __future__ import annotations

from audit import event_exports as exports
from audit import verification
from audit.models import ChainVerification


def verify_audit_chain() -> dict:
    """Nightly: verify the whole chain as a run of its own (shown on the verify page) and
    record the outcome in the log."""
    run = ChainVerification.objects.create()
    return verification.outcome_of(verification.run_verification(run.pk))


def run_verification(run_id: int) -> str:
    """A verification someone asked for on the verify page or the API."""
    return verification.run_verification(run_id).status


def record_chain_digests() -> list[str]:
    """Daily, after midnight: the head of each finished day."""
    return [day.isoformat() for day in verification.record_digests()]


def build_audit_export(export_id: int) -> str:
    """Write a large CSV export of the audit log."""
    return exports.build_export(export_id).status
