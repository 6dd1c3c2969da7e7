"""Compliance reviews: every permanent deletion opens one, and an auditor signs it off or
flags it with a finding. Each quarter an auditor also reviews the recycle bin as a whole.

A review is opened by the run that made a deletion permanent (a server-side wipe, a
recycle-bin purge, a retention purge) with a summary of what went and on whose say-so.
Auditors are the only ones who decide a review, and it is the only thing they change;
admins read reviews and hear about flagged ones. A review left open past the
``review_due_days`` policy is overdue and shows on the auditors' dashboard.

A recycle-bin review covers one quarter: what entered the bin, what was restored, what
was purged and when, and anything purged before its window ended or kept more than a day
past it. Its figures are recomputed when it is decided, and kept as they were then.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

import audit.log as audit
from audit.events import EventType
from audit.models import ComplianceReview, ReviewKind, ReviewStatus
from retention.access.predicates import may_decide_reviews, may_read_reviews
from retention.errors import Conflict
from retention.models import DeletionRequest, Member, RequestMethod, Tombstone, TombstoneState
from retention.models.roles import Role
from retention.notifications import notify
from retention.policies import get_policy
from retention.reports.periods import BadPeriod, Quarter

FINDING_MAX_LENGTH = 4000
# The purge job runs hourly: a day's slack before an entry counts as kept too long.
PURGE_SLACK = timedelta(days=1)
# Requests named per finding in a recycle-bin review's figures.
LISTED_REQUESTS = 50
# What an auditor may decide, and the audit event each decision writes.
DECISIONS = {
    ReviewStatus.SIGNED_OFF: EventType.REVIEW_SIGNED_OFF,
    ReviewStatus.FLAGGED: EventType.REVIEW_FLAGGED,
}


def reviews_for(viewer: Member) -> QuerySet[ComplianceReview]:
    """Reviews the viewer may read: auditors and admins all of them, nobody else any."""
    if not may_read_reviews(viewer):
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


def took_part(member: Member, request_id: int) -> bool:
    """The member filed the deletion or decided one of its approval steps."""
    return DeletionRequest.objects.filter(
        Q(requester=member) | Q(steps__approver=member), pk=request_id
    ).exists()


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
    if not may_decide_reviews(acting_user):
        raise PermissionDenied(_("Only auditors sign off or flag compliance reviews."))
    if decision not in DECISIONS:
        raise ValidationError({"decision": [_("Sign off or flag.")]})
    finding = _cleaned_finding(finding, required=decision == ReviewStatus.FLAGGED)
    if review.request_id and took_part(acting_user, review.request_id):
        raise PermissionDenied(
            _("You filed or approved this deletion: another auditor must review it.")
        )
    with transaction.atomic():
        locked = ComplianceReview.objects.select_for_update().get(pk=review.pk)
        if locked.status != ReviewStatus.OPEN:
            raise Conflict(
                _("This review was already decided: %(status)s.")
                % {"status": locked.get_status_display()}
            )
        if locked.kind == ReviewKind.RECYCLE_BIN:
            quarter = Quarter.parse(locked.period)
            if quarter.end > timezone.now():
                raise Conflict(
                    _("%(quarter)s has not ended yet: review its recycle bin once it has.")
                    % {"quarter": locked.period}
                )
            # The figures the auditor signs are those of this moment, kept from now on.
            locked.summary = recycle_bin_figures(quarter)
        locked.status = decision
        locked.reviewer = acting_user
        locked.reviewed_at = timezone.now()
        locked.finding = finding
        locked.save(update_fields=["status", "reviewer", "reviewed_at", "finding", "summary"])
        audit.record(
            DECISIONS[decision],
            actor=acting_user,
            target=locked,
            department_id=locked.request.scope_root_id if locked.request_id else None,
            details={
                "review": locked.pk,
                "kind": locked.kind,
                "request": locked.request_id,
                "period": locked.period,
                "finding": finding,
                "opened_at": locked.opened_at.isoformat(),
                # What was signed, fixed in the chain: the stored summary can be checked.
                "summary_sha256": hashlib.sha256(
                    json.dumps(locked.summary, sort_keys=True, ensure_ascii=False).encode()
                ).hexdigest(),
            },
        )
        if decision == ReviewStatus.FLAGGED:
            admins = Member.objects.filter(is_active=True, groups__name=Role.ADMIN)
            notify.review_flagged(locked, admins)
    return locked


# --- the quarterly recycle-bin review -----------------------------------------------------


def _totals(tombstones: QuerySet[Tombstone], *, listed: bool = False) -> dict:
    totals = tombstones.aggregate(
        requests=Count("request", distinct=True),
        conversations=Count("conversation", distinct=True),
        messages=Sum("messages"),
    )
    totals["messages"] = totals["messages"] or 0
    if listed:
        ids = tombstones.values_list("request", flat=True).distinct().order_by("request")
        totals["request_ids"] = list(ids[:LISTED_REQUESTS])
    return totals


# The figures of a recycle-bin review, in the order pages and reports show them.
BIN_FIGURES = [
    ("entered", gettext_lazy("Entered the bin")),
    ("restored", gettext_lazy("Restored")),
    ("purged", gettext_lazy("Purged")),
    ("purged_early", gettext_lazy("Purged before their window ended")),
    ("purged_late", gettext_lazy("Purged more than a day after their window")),
    ("kept_past_window", gettext_lazy("Still in the bin a day past their window")),
    ("in_bin_at_end", gettext_lazy("In the bin at the end of the quarter")),
]


def recycle_bin_figures(quarter: Quarter, *, now: datetime | None = None) -> dict:
    """What the recycle bin saw in the quarter. Server-side wipes never sit in the bin,
    so their tombstones are left out."""
    now = now or timezone.now()
    start, end = quarter.start, min(quarter.end, now)
    binned = Tombstone.objects.exclude(request__method=RequestMethod.SERVER)
    purged = binned.filter(purged_at__gte=start, purged_at__lt=end)
    return {
        "quarter": str(quarter),
        "computed_at": now.isoformat(),
        "entered": _totals(binned.filter(created_at__gte=start, created_at__lt=end)),
        "restored": _totals(binned.filter(restored_at__gte=start, restored_at__lt=end)),
        "purged": _totals(purged),
        "purged_early": _totals(purged.filter(purged_at__lt=F("purge_after")), listed=True),
        "purged_late": _totals(
            purged.filter(purged_at__gt=F("purge_after") + PURGE_SLACK), listed=True
        ),
        "kept_past_window": _totals(
            binned.filter(state=TombstoneState.BINNED, purge_after__lt=end - PURGE_SLACK),
            listed=True,
        ),
        "in_bin_at_end": _totals(
            binned.filter(created_at__lt=end).filter(
                Q(state__in=[TombstoneState.BINNED, TombstoneState.PURGING])
                | Q(purged_at__gte=end)
                | Q(restored_at__gte=end)
            )
        ),
    }


def do_open_recycle_bin_review(*, acting_user: Member, quarter: str) -> ComplianceReview:
    """An auditor starts (or returns to) the review of a quarter's recycle bin
    (``quarter`` like "2026-Q4")."""
    if not may_decide_reviews(acting_user):
        raise PermissionDenied(_("Only auditors review the recycle bin."))
    try:
        quarter = Quarter.parse(quarter)
    except BadPeriod as exc:
        raise ValidationError({"quarter": [str(exc)]}) from exc
    if quarter.start > timezone.now():
        raise ValidationError({"quarter": [_("That quarter has not begun yet.")]})
    with transaction.atomic():
        review, _created = ComplianceReview.objects.get_or_create(
            kind=ReviewKind.RECYCLE_BIN,
            period=str(quarter),
            defaults={"summary": recycle_bin_figures(quarter)},
        )
    return review
