"""The evidence a run needs before it starts: an export of the request. Whether one is
needed, and whether it is ready, are read from the Export table here.

Asking for the export an archiving rule's run needs is the exports package's work, and
exports sit above wipes: ``retention.apps`` names the function that asks when the app
starts (``ask_for_exports_with``).
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet

from retention.models import DeletionRequest, Export, ExportStatus, RequestMethod

_ask_for_export: Callable[..., object] | None = None


def needs_evidence(request: DeletionRequest) -> bool:
    """High-sensitivity records in scope, or an archiving rule: no run without an export."""
    archive = request.method == RequestMethod.RETENTION and request.scope.get("action") == "archive"
    return archive or bool(request.preview.get("high_sensitivity"))


def has_evidence_export(request: DeletionRequest) -> bool:
    """Whether a finished export of the request exists: what a request with
    high-sensitivity records in scope needs before it may run."""
    return Export.objects.filter(request=request, status=ExportStatus.READY).exists()


def evidence_export_pending(request: DeletionRequest) -> bool:
    return Export.objects.filter(
        request=request, status__in=[ExportStatus.QUEUED, ExportStatus.RUNNING]
    ).exists()


def ready_exports(request: DeletionRequest) -> QuerySet[Export]:
    """The request's finished exports, with who asked for them."""
    return Export.objects.filter(request=request, status=ExportStatus.READY).select_related(
        "requested_by"
    )


def ask_for_exports_with(ask: Callable[..., object]) -> None:
    """Name the function that queues an export (``do_request_export``'s signature)."""
    global _ask_for_export
    _ask_for_export = ask


def ask_for_evidence(request: DeletionRequest) -> None:
    """Queue the JSON Lines export an archiving rule's run waits for, in the name of the
    rule's approver (the request's requester)."""
    if _ask_for_export is None:
        raise ImproperlyConfigured("no function to ask for exports: see retention.apps")
    _ask_for_export(request, fmt="jsonl", acting_user=request.requester, on_behalf_of_system=True)
