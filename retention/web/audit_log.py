"""The auditor's workspace: the audit log explorer, its CSV exports and chain verification.

Auditors and admins only (anyone else gets the 403 page). The audit app does the reading,
exporting and verifying and knows nothing of roles or departments; these views decide who
may, turn the filter form into the audit app's filter, and link events to the pages of
what they are about.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from audit.event_exports import DirectExport, exports_of
from audit.log import client_ip
from audit.models import (
    AuditExport,
    AuditExportStatus,
    ChainDigest,
    ChainVerification,
)
from audit.selectors import event_page
from audit.verification import latest_verification, pending_verification
from retention.access.predicates import may_read_audit_log
from retention.errors import Conflict
from retention.models import Department, Member
from retention.records.filters import AuditFilterForm
from retention.reports.audit_log_exports import do_export_events, open_audit_download
from retention.reports.links import object_link
from retention.reports.verification_runs import do_request_verification

EXPORTS_SHOWN = 5
RUNS_SHOWN = 10
DIGESTS_SHOWN = 30
POLL_SECONDS = 2


def require_reader(member: Member) -> None:
    if not may_read_audit_log(member):
        raise PermissionDenied(_("Only auditors and admins read the audit log."))


def _cursor(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() and 0 < int(value) < 2**63 else None


@require_GET
@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    require_reader(request.user)
    query = request.GET.copy()
    for name in ("before", "after"):
        query.pop(name, None)
    form = AuditFilterForm(query, viewer=request.user)  # no filters is a valid filter
    context = {"form": form, "query": query.urlencode(), **exports_context(request.user)}
    bad_cursor = any(
        request.GET.get(name) and _cursor(request, name) is None for name in ("before", "after")
    )
    if form.is_valid() and bad_cursor:
        form.add_error(None, _("That page link is not valid; start from the newest."))
    if form.errors:
        return render(request, "audit/explorer.html", context, status=400)
    page = event_page(
        form.event_filter(),
        before=_cursor(request, "before"),
        after=_cursor(request, "after"),
    )
    names = dict(
        Department.objects.filter(
            pk__in={e.department_id for e in page.events if e.department_id}
        ).values_list("pk", "name")
    )
    context["page"] = page
    context["rows"] = [
        (
            event,
            object_link(event),
            names.get(event.department_id),
            json.dumps(event.details, ensure_ascii=False, sort_keys=True),
        )
        for event in page.events
    ]
    return render(request, "audit/explorer.html", context)


def exports_context(member: Member) -> dict:
    shown = list(exports_of(member)[:EXPORTS_SHOWN])
    pending = any(e.status in (AuditExportStatus.QUEUED, AuditExportStatus.RUNNING) for e in shown)
    return {"exports": shown, "exports_polling": POLL_SECONDS if pending else None}


@require_GET
@login_required
def audit_exports_fragment(request: HttpRequest) -> HttpResponse:
    """The "your exports" card, polled while one is being written."""
    require_reader(request.user)
    return render(request, "audit/_exports.html", exports_context(request.user))


@require_POST
@login_required
def audit_export(request: HttpRequest) -> HttpResponse:
    """A CSV of the filter in the query string: streamed when small, else a job."""
    require_reader(request.user)
    form = AuditFilterForm(request.GET, viewer=request.user)
    if not form.is_valid():
        context = {"form": form, "query": "", **exports_context(request.user)}
        return render(request, "audit/explorer.html", context, status=400)
    outcome = do_export_events(
        form.event_filter(), acting_user=request.user, ip_address=client_ip(request)
    )
    if isinstance(outcome, DirectExport):
        response = StreamingHttpResponse(outcome.chunks(), content_type="text/csv; charset=utf-8")
        stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = content_disposition_header(True, f"audit-log-{stamp}.csv")
        response["Cache-Control"] = "no-store"
        return response
    messages.success(
        request,
        _("Export #%(id)s is large and is being written; download it below when ready.")
        % {"id": outcome.pk},
    )
    return redirect(reverse("audit-log") + "?" + request.GET.urlencode() + "#exports")


@require_GET
@login_required
def audit_export_download(request: HttpRequest, export_id: int) -> HttpResponse:
    require_reader(request.user)
    export = get_object_or_404(AuditExport, pk=export_id, requested_by=request.user)
    try:
        chunks = open_audit_download(
            export, acting_user=request.user, ip_address=client_ip(request)
        )
    except Conflict as exc:  # not ready, expired, missing or damaged: the page says so
        messages.error(request, str(exc))
        return redirect(reverse("audit-log") + "#exports")
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(True, export.download_name)
    response["Content-Length"] = str(export.size)
    response["X-Content-SHA256"] = export.sha256
    response["Cache-Control"] = "no-store"
    return response


# --- chain verification -------------------------------------------------------------------


def verification_context() -> dict:
    pending = pending_verification()
    return {
        "latest": latest_verification(),
        "pending": pending,
        "polling": POLL_SECONDS if pending else None,
    }


@require_GET
@login_required
def audit_verify(request: HttpRequest) -> HttpResponse:
    require_reader(request.user)
    context = {
        **verification_context(),
        "runs": ChainVerification.objects.select_related("requested_by")[:RUNS_SHOWN],
        "digests": ChainDigest.objects.all()[:DIGESTS_SHOWN],
    }
    return render(request, "audit/verify.html", context)


@require_GET
@login_required
def audit_verify_status(request: HttpRequest) -> HttpResponse:
    """The status card, polled while a run is queued or running."""
    require_reader(request.user)
    return render(request, "audit/_verify_status.html", verification_context())


@require_POST
@login_required
def audit_verify_run(request: HttpRequest) -> HttpResponse:
    require_reader(request.user)
    run = do_request_verification(acting_user=request.user, ip_address=client_ip(request))
    messages.success(request, _("Verification #%(id)s is running.") % {"id": run.pk})
    return redirect("audit-verify")
