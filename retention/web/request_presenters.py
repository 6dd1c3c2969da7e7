"""What the request pages show, shaped from the stored request: the planned steps,
the held and protected rows of a preview, the scope summary and the timeline's lines.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from audit.models import AuditEvent
from retention.dates import bounds_problem
from retention.governance import approvals
from retention.models import (
    Conversation,
    DeletionRequest,
    Department,
    ExecutionKind,
    HoldKind,
    Member,
    RequestMethod,
    RequestStatus,
)
from retention.models.roles import Role
from retention.records.selectors import conversations_for
from retention.web.request_forms import RequestWizardForm, errors_of

STEP_BECAUSE = {
    approvals.HIGH_SENSITIVITY: gettext_lazy("high-sensitivity records in scope"),
    approvals.NO_MANAGER_ABOVE: gettext_lazy("no other manager above the scope"),
    approvals.FREQUENT_DELETIONS: gettext_lazy("frequent personal deletions"),
}


def form_error_list(form: RequestWizardForm) -> list[str]:
    errors = []
    for name, messages_ in form.errors.items():
        label = form.fields[name].label if name in form.fields else ""
        errors += [f"{label}: {m}" if label else m for m in messages_]
    return errors


def flat_errors(form: RequestWizardForm, exc: ValidationError) -> list[str]:
    errors = []
    for key, messages_ in errors_of(exc).items():
        field = form.fields.get(key) if key else None
        errors += [f"{field.label}: {m}" if field else m for m in messages_]
    return errors


def step_row(step: dict) -> dict:
    return {
        "role": Role(step["role"]).label,
        "department": step["department"],
        "because": STEP_BECAUSE.get(step["because"], step["because"]),
    }


def held_rows(preview: dict, viewer: Member) -> list[dict]:
    items = preview.get("excluded", {}).get("held", {}).get("items", [])
    titles = dict(
        conversations_for(viewer)
        .filter(pk__in=[i["conversation"] for i in items])
        .values_list("pk", "title")
    )
    return [{**i, "title": titles.get(i["conversation"], "")} for i in items]


def protected_rows(preview: dict) -> list[dict]:
    """Protected conversations in scope: those still to confirm, and those confirmed (so
    their boxes stay ticked while the scope is edited)."""
    rows = [{**p, "confirmed": False} for p in preview["excluded"]["protected_unconfirmed"]]
    confirmed = Conversation.objects.filter(pk__in=preview["protected_confirmed"]).order_by("pk")
    rows += [
        {"conversation": c.pk, "title": c.title, "messages": None, "confirmed": True}
        for c in confirmed
    ]
    return rows


def role_label(role: str) -> str:
    return Role(role).label if role in Role.values else role


def scope_summary(deletion: DeletionRequest) -> dict[str, Any]:
    scope = deletion.scope
    return {
        "departments": list(
            Department.objects.filter(pk__in=scope.get("departments", [])).order_by("path")
        ),
        "include_subdepartments": scope.get("include_subdepartments", True),
        "whole_company": scope.get("whole_company", False),
        "conversations": list(
            Conversation.objects.filter(pk__in=scope.get("conversations", [])).order_by("pk")
        ),
        "messages": scope.get("messages", []),
        "sent_after": scope.get("sent_after"),
        "sent_before": scope.get("sent_before"),
        # Said when the stored range cannot be used (it never passed the inputs).
        "unusable_range": bounds_problem(deletion.sent_after, deletion.sent_before),
    }


DETAIL_LABELS = {
    "method": gettext_lazy("Method"),
    "reason": gettext_lazy("Reason"),
    "comment": gettext_lazy("Comment"),
    "step": gettext_lazy("Step"),
    "role": gettext_lazy("Role"),
    "messages": gettext_lazy("Messages"),
    "conversations": gettext_lazy("Conversations"),
    "held_excluded": gettext_lazy("Held messages left out"),
    "scheduled_for": gettext_lazy("Scheduled for"),
    "approvers": gettext_lazy("Approvers"),
    "was": gettext_lazy("Previous status"),
    "hold": gettext_lazy("Hold"),
    "kind": gettext_lazy("Kind"),
    "message": gettext_lazy("Message"),
    "conversation": gettext_lazy("Conversation"),
    "high_sensitivity": gettext_lazy("High-sensitivity messages"),
    "export": gettext_lazy("Export"),
    "format": gettext_lazy("Format"),
    "sha256": gettext_lazy("SHA-256 checksum"),
    "size": gettext_lazy("Size (bytes)"),
    "unreadable": gettext_lazy("Unreadable messages"),
    "approved_messages": gettext_lazy("Approved messages"),
    "deleted_messages": gettext_lazy("Deleted messages"),
    "deleted_conversations": gettext_lazy("Conversations done"),
    "held_messages": gettext_lazy("Held messages kept"),
    "held_conversations": gettext_lazy("Held conversations kept"),
    "protected_messages": gettext_lazy("Messages left: protected after filing"),
    "protected_conversations": gettext_lazy("Conversations left: protected after filing"),
    "gone_before_run": gettext_lazy("Already gone before the run"),
    "attachments_removed": gettext_lazy("Attachments removed"),
    "keys_destroyed": gettext_lazy("Data keys destroyed"),
    "keys": gettext_lazy("Data keys destroyed"),
    "kept_key_for_records_outside_scope": gettext_lazy(
        "Conversations keeping their key (records outside the scope)"
    ),
    "resumes": gettext_lazy("Resumes"),
    "attempt": gettext_lazy("Attempt"),
    "done": gettext_lazy("Messages done"),
    "whole_request": gettext_lazy("Whole request"),
    "as_job": gettext_lazy("In the background"),
    "conversation_ids": gettext_lazy("Conversations"),
    "holds": gettext_lazy("Holds"),
    "error": gettext_lazy("Error"),
    "max_message_id": gettext_lazy("Newest message in scope"),
}
# Shown elsewhere on the page (the scope summary) or too bulky for a timeline line, or
# bookkeeping of the run that says nothing to a reader.


DETAIL_SKIPPED = {
    "scope",
    "batches",
    "longest_batch_ms",
    "checkpoint",
    "previous_worker_error",
    "phase",
    "from_conversation",
    "to_conversation",
}


def timeline_row(event: AuditEvent) -> dict[str, Any]:
    details = []
    for key, value in (event.details or {}).items():
        if key in DETAIL_SKIPPED or value in (None, "", [], {}):
            continue
        if key == "held_excluded" and not value:
            continue  # nothing was held: nothing to say
        details.append((DETAIL_LABELS.get(key, key), detail_value(key, value)))
    return {
        "event": event,
        "action": event.get_event_type_display(),
        "actor": event.actor_name or _("system"),
        "details": details,
    }


def detail_value(key: str, value: Any) -> str:
    if key == "role":
        return role_label(value)
    if key == "method" and value in RequestMethod.values:
        return RequestMethod(value).label
    if key == "was" and value in RequestStatus.values:
        return RequestStatus(value).label
    if key == "kind" and value in HoldKind.values:
        return HoldKind(value).label
    if key == "kind" and value in ExecutionKind.values:
        return ExecutionKind(value).label
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if key == "holds" and isinstance(value, list):
        return "；".join(str(h.get("reason", h)) if isinstance(h, dict) else str(h) for h in value)
    if key == "scheduled_for":
        try:
            return timezone.localtime(datetime.fromisoformat(value)).strftime("%Y-%m-%d %H:%M")
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, list):
        return "、".join(str(v) for v in value)
    return str(value)
