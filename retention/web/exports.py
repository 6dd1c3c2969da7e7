"""The Export card of the request and conversation pages, and downloads.

The card is ``retention/exports/_card.html``: the pages include it, and it polls its own
URL while an export is being written. Who may export and download is decided in
``retention.exports.service``; what the viewer cannot see at all is a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from audit.log import client_ip
from retention.access.predicates import requests_for
from retention.errors import Conflict
from retention.exports.download import file_response, open_download
from retention.exports.service import (
    do_request_export,
    exports_for,
    exports_of,
    may_export,
)
from retention.models import (
    Conversation,
    DeletionRequest,
    ExportFormat,
    ExportStatus,
    Member,
    RequestStatus,
)
from retention.records.selectors import conversations_for
from retention.wipes.evidence import has_evidence_export, needs_evidence

EXPORTS_SHOWN = 20
POLL_SECONDS = 2


def card_context(target: DeletionRequest | Conversation, viewer: Member) -> dict[str, Any]:
    """What the Export card shows ``viewer``: nothing unless they may export."""
    if not may_export(target, viewer):
        return {"may_export": False}
    is_request = isinstance(target, DeletionRequest)
    shown = list(exports_of(target)[:EXPORTS_SHOWN])
    pending = any(e.status in (ExportStatus.QUEUED, ExportStatus.RUNNING) for e in shown)
    evidence_needed = (
        is_request
        and target.status in (RequestStatus.PENDING, RequestStatus.APPROVED)
        and needs_evidence(target)
        and not has_evidence_export(target)
    )
    name = "request" if is_request else "conversation"
    return {
        "may_export": True,
        "is_request": is_request,
        "url": reverse(f"{name}-exports", args=[target.pk]),
        "page_url": reverse(name, args=[target.pk]),
        "formats": ExportFormat.choices,
        "exports": shown,
        "polling": POLL_SECONDS if pending else None,
        "evidence_needed": evidence_needed,
    }


def _card_or_export(request: HttpRequest, target: DeletionRequest | Conversation) -> HttpResponse:
    """GET: the card (for polling). POST: queue an export, then back to the page."""
    if request.method == "GET":
        return render(request, "retention/exports/_card.html", {"target": target})
    try:
        export = do_request_export(
            target, fmt=request.POST.get("format", ""), acting_user=request.user
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request,
            _("Export #%(id)s is being written; it will be listed here when ready.")
            % {"id": export.pk},
        )
    return redirect(_page_of(target) + "#exports")


def _page_of(target: DeletionRequest | Conversation) -> str:
    name = "request" if isinstance(target, DeletionRequest) else "conversation"
    return reverse(name, args=[target.pk])


@require_http_methods(["GET", "POST"])
@login_required
def request_exports(request: HttpRequest, request_id: int) -> HttpResponse:
    return _card_or_export(request, get_object_or_404(requests_for(request.user), pk=request_id))


@require_http_methods(["GET", "POST"])
@login_required
def conversation_exports(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(conversations_for(request.user), pk=conversation_id)
    return _card_or_export(request, conversation)


@require_GET
@login_required
def export_download(request: HttpRequest, export_id: int) -> HttpResponse:
    export = get_object_or_404(exports_for(request.user), pk=export_id)
    try:
        chunks = open_download(export, request.user, ip_address=client_ip(request))
    except Conflict as exc:  # not ready, expired, missing or damaged: the page says so
        messages.error(request, str(exc))
        return redirect(_page_of(export.target) + "#exports")
    return file_response(export, chunks)
