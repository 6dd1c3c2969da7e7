"""What a compliance review of a permanent deletion records: what went, from which
departments, and on whose say-so.
"""

from __future__ import annotations

from django.db.models import Count, Sum

from retention.models import DeletionRequest, Execution, Tombstone, TombstoneState
from retention.wipes.evidence import ready_exports
from retention.wipes.outcome import outcome_of


def review_summary(request: DeletionRequest, execution: Execution) -> dict:
    """What a permanent deletion removed and on whose say-so, for the auditor."""
    by_department = list(
        Tombstone.objects.filter(request=request, state=TombstoneState.PURGED)
        .values("conversation__department_id", "conversation__department__name")
        .annotate(conversations=Count("conversation_id", distinct=True), messages=Sum("messages"))
        .order_by("conversation__department_id")
    )
    return {
        **outcome_of(execution),
        "method": request.method,
        "max_message_id": request.max_message_id,
        "sent_after": request.sent_after.isoformat() if request.sent_after else None,
        "sent_before": request.sent_before.isoformat() if request.sent_before else None,
        "departments": [
            {
                "department": row["conversation__department_id"],
                "name": row["conversation__department__name"],
                "conversations": row["conversations"],
                "messages": row["messages"],
            }
            for row in by_department[:200]
        ],
        "approvals": [
            {
                "order": s.order,
                "role": s.role,
                "approver": s.approver.username if s.approver else None,
            }
            for s in request.steps.select_related("approver")
        ],
        "requester": request.requester.username,
        "exports": [
            {"export": e.pk, "format": e.format, "sha256": e.sha256, "by": e.requested_by.username}
            for e in ready_exports(request)
        ],
    }
