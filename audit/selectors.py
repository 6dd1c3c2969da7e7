from __future__ import annotations

from django.db.models import QuerySet

from audit.models import AuditEvent


def recent_events(*, limit: int = 10) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.order_by("-id")[:limit]
