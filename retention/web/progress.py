"""The live progress of a request's run: a fragment the request page polls."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from retention.access.predicates import requests_for
from retention.governance.selectors import request_progress
from retention.models import DeletionRequest, ExecutionKind, ExecutionStatus, RequestStatus
from retention.wipes.evidence import has_evidence_export, needs_evidence

ONE_MINUTE = timedelta(minutes=1)


def progress_context(deletion: DeletionRequest) -> dict:
    """What ``_progress.html`` needs; it keeps polling while something can still move."""
    progress = request_progress(deletion)
    if progress is not None:
        progress["status_label"] = ExecutionStatus(progress["status"]).label
        progress["kind_label"] = ExecutionKind(progress["kind"]).label
    running = progress is not None and progress["status"] in (
        ExecutionStatus.QUEUED,
        ExecutionStatus.RUNNING,
    )
    polling = 2 if running or deletion.status == RequestStatus.RUNNING else None
    if polling is None and deletion.status == RequestStatus.APPROVED:
        # Due within the minute: look often, so that the start shows at once.
        soon = deletion.scheduled_for and deletion.scheduled_for <= timezone.now() + ONE_MINUTE
        polling = 2 if soon else 10
    awaiting_evidence = (
        progress is None
        and deletion.status == RequestStatus.APPROVED
        and needs_evidence(deletion)
        and not has_evidence_export(deletion)
    )
    return {
        "deletion": deletion,
        "progress": progress,
        "polling": polling,
        "awaiting_evidence": awaiting_evidence,
    }


@require_GET
@login_required
def request_progress_fragment(request: HttpRequest, request_id: int) -> HttpResponse:
    deletion = get_object_or_404(requests_for(request.user), pk=request_id)
    # Polled: the request's status badge in the page header follows too (out of band).
    context = {**progress_context(deletion), "polling_fragment": True}
    return render(request, "retention/requests/_progress.html", context)
