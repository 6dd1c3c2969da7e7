"""An export's audit trail: its events, on the timeline of its request or conversation.

Below the service, the build job and downloads, which all write to it.
"""

from __future__ import annotations

from typing import Any

from audit import log as audit
from audit.events import EventType
from retention.models import Conversation, DeletionRequest, Export, Member


def department_id(target: DeletionRequest | Conversation) -> int | None:
    """The department whose timeline an event about the target belongs to."""
    if isinstance(target, DeletionRequest):
        return target.scope_root_id
    return target.department_id


def record(
    event_type: EventType,
    export: Export,
    *,
    actor: Member | None = None,
    ip_address: str | None = None,
    **details: Any,
) -> None:
    """An event of an export, on the timeline of its request or conversation."""
    audit.record(
        event_type,
        actor=actor,
        target=export.target,
        department_id=department_id(export.target),
        ip_address=ip_address,
        details={"export": export.pk, "format": export.format, **details},
    )
