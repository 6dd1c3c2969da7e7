"""Queue jobs of the retention domain: thin, taking ids or nothing, calling a service."""

from __future__ import annotations

from retention.exports import service as exports
from retention.models import ExportStatus
from retention.wipes.schedule import enqueue_start_if_waiting


def build_export(export_id: int) -> str:
    """Write an export's file (a request's frozen scope or a conversation); a request that
    waited for it as evidence starts now rather than at the watchdog's next look."""
    export = exports.build_export(export_id)
    if export.status == ExportStatus.READY and export.request_id:
        enqueue_start_if_waiting(export.request_id)
    return export.status


def requeue_stalled_exports() -> list[int]:
    """Every 5 minutes: exports whose worker died mid-run are queued again."""
    return exports.requeue_stalled_exports()


def expire_exports() -> list[int]:
    """Daily: exports older than the export_keep_days policy lose their file and key."""
    return exports.expire_exports()
