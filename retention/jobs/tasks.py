"""Queue jobs of the retention domain: thin, taking ids or nothing, calling a service."""

from __future__ import annotations

from retention.wipes import execution


def start_request(request_id: int) -> str:
    """An approved request's run time has come: start it and work it to the end."""
    run = execution.start_request(request_id)
    if run is None:
        return "not started (not approved, or not yet due)"
    return execution.run_execution(run.pk).status


def run_execution(execution_id: int) -> str:
    """Take a run over from its checkpoint (a retry, or after a worker died)."""
    return execution.run_execution(execution_id).status


def watch_executions() -> dict[str, int]:
    return execution.watch()


def purge_recycle_bin() -> list[int]:
    return execution.start_due_purges()
