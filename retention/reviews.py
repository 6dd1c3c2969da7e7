"""Compliance reviews: every permanent deletion opens one, and an auditor signs it off or
flags it with a finding.

A review is opened by the run that made a deletion permanent (a server-side wipe, a
recycle-bin purge, a retention purge) with a summary of what went and on whose say-so.
Auditors are the only ones who decide a review, and it is the only thing they change;
admins read reviews and hear about flagged ones. A review left open past the
``review_due_days`` policy is overdue and shows on the auditors' dashboard.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

import audit.log as audit
from audit.events import EventType
from audit.models import ComplianceReview, ReviewStatus
from retention.deletion import notify
from retention.deletion.errors import Conflict
from retention.models import Member
from retention.policies import get_policy
from retention.roles import Role

FINDING_MAX_LENGTH = 4000
REVIEW_READERS = (Role.AUDITOR, Role.ADMIN)
# What an auditor may decide, and the audit event each decision writes.
DECISIONS = {
    ReviewStatus.SIGNED_OFF: EventType.REVIEW_SIGNED_OFF,
    ReviewStatus.FLAGGED: EventType.REVIEW_FLAGGED,
}


def reviews_for(viewer: Member) -> QuerySet[ComplianceReview]:
    """Reviews the viewer may read: auditors and admins all of them, nobody else any."""
    if not viewer.has_role(*REVIEW_READERS):
        return ComplianceReview.objects.none()
    return ComplianceReview.objects.select_related("request", "reviewer")


def due_before(now: datetime | None = None) -> datetime:
    """Reviews opened before this moment and still open are overdue."""
    return (now or timezone.now()) - timedelta(days=get_policy("review_due_days"))


def overdue_q(now: datetime | None = None) -> Q:
    return Q(status=ReviewStatus.OPEN, opened_at__lt=due_before(now))


def is_overdue(review: ComplianceReview, due: datetime) -> bool:
    """``overdue_q`` for a review already loaded (``due`` from ``due_before``)."""
    return review.status == ReviewStatus.OPEN and review.opened_at < due


def overdue_reviews(viewer: Member, *, now: datetime | None = None) -> QuerySet[ComplianceReview]:
    return reviews_for(viewer).filter(overdue_q(now))


def may_decide(member: Member) -> bool:
    return member.has_role(Role.AUDITOR)


def _cleaned_finding(finding: str, *, required: bool) -> str:
    finding = (finding or "").strip()
    if required and not finding:
        raise ValidationError({"finding": [_("Say what is wrong: a flag needs a finding.")]})
    if len(finding) > FINDING_MAX_LENGTH:
        raise ValidationError(
            {"finding": [_("Keep it under %(n)d characters.") % {"n": FINDING_MAX_LENGTH}]}
        )
    return finding


def do_decide_review(
    review: ComplianceReview, *, acting_user: Member, decision: str, finding: str = ""
) -> ComplianceReview:
    """An auditor signs the review off (the deletion was in order; ``finding`` is an
    optional note) or flags it (``finding`` says what was wrong, and the admins are told).
    A review is decided once."""
    if not may_decide(acting_user):
        raise PermissionDenied(_("Only auditors sign off or flag compliance reviews."))
    if decision not in DECISIONS:
        raise ValidationError({"decision": [_("Sign off or flag.")]})
    finding = _cleaned_finding(finding, required=decision == ReviewStatus.FLAGGED)
    with transaction.atomic():
        locked = ComplianceReview.objects.select_for_update().get(pk=review.pk)
        if locked.status != ReviewStatus.OPEN:
            raise Conflict(
                _("This review was already decided: %(status)s.")
                % {"status": locked.get_status_display()}
            )
        locked.status = decision
        locked.reviewer = acting_user
        locked.reviewed_at = timezone.now()
        locked.finding = finding
        locked.save(update_fields=["status", "reviewer", "reviewed_at", "finding"])
        audit.record(
            DECISIONS[decision],
            actor=acting_user,
            target=locked,
            department_id=locked.request.scope_root_id if locked.request_id else None,
            details={
                "review": locked.pk,
                "kind": locked.kind,
                "request": locked.request_id,
                "finding": finding,
                "opened_at": locked.opened_at.isoformat(),
            },
        )
        if decision == ReviewStatus.FLAGGED:
            admins = Member.objects.filter(is_active=True, groups__name=Role.ADMIN)
            notify.review_flagged(locked, admins)
    return locked
