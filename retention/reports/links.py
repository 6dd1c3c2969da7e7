"""Links from an audit event to the page of what it is about, for the audit log explorer
and its API alike."""

from __future__ import annotations

from django.urls import reverse

from audit.models import AuditEvent

# The pages an event's object has, by the object's type.
OBJECT_PAGES = {
    "retention.deletionrequest": "request",
    "retention.conversation": "conversation",
    "retention.retentionrule": "rule",
}


def object_link(event: AuditEvent) -> str | None:
    """The page of what the event is about (a request, conversation or rule), if any."""
    name = OBJECT_PAGES.get(event.target_type)
    if name and event.target_id.isdigit():
        return reverse(name, args=[int(event.target_id)])
    return None
