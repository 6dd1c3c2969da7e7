"""Exports: a deletion request's frozen scope, or a conversation, as a file (JSON Lines,
CSV or an HTML transcript): the backup before a deletion and the evidence of it.

Asking for one (``do_request_export``) is an action: permission, a queued ``Export`` row
and the audit event in one transaction, the build job (``retention.exports.build``)
enqueued on commit. Every download is audited, and decrypted as it streams
(``retention.exports.download``).

A running export whose heartbeat stopped (a killed worker) is queued again and starts
from scratch, and a queued export whose job Redis lost is enqueued again
(``requeue_stalled_exports``). After the ``export_keep_days`` policy an export expires:
its file is deleted, its key destroyed, and its row and checksum stay (``expire_exports``).

Who may export (and download): for a request, its requester, whoever approved one of
its steps or may decide its current step, auditors and admins; for a conversation,
whoever may read its bodies, and auditors. The selectors make anything else a 404;
seeing a target without being allowed to export it is a PermissionDenied (403).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Max, Q, QuerySet
from django.utils import translation
from django.utils.translation import gettext as _

from audit import log as audit
from audit.events import EventType
from retention.access.predicates import may_decide_request, requests_for
from retention.exports import build, trail
from retention.exports.sealed import expire_sealed
from retention.models import (
    Conversation,
    DeletionRequest,
    Export,
    ExportFormat,
    ExportStatus,
    Member,
    Message,
    StepStatus,
)
from retention.models.roles import Role
from retention.records.selectors import can_read_bodies, conversations_for

logger = logging.getLogger(__name__)

Target = DeletionRequest | Conversation


# --- who may ------------------------------------------------------------------------------


def may_export(target: Target, member: Member) -> bool:
    if not member.is_authenticated or not member.is_active:
        return False
    if isinstance(target, Conversation):
        return can_read_bodies(member, target)
    if member.has_role(Role.AUDITOR, Role.ADMIN) or target.requester_id == member.pk:
        return True
    if target.steps.filter(approver=member, status=StepStatus.APPROVED).exists():
        return True
    return may_decide_request(target, member)


def may_download(export: Export, member: Member) -> bool:
    """Whoever may export the target now (not whoever asked once)."""
    return may_export(export.target, member)


def exports_for(viewer: Member) -> QuerySet[Export]:
    """Exports whose request or conversation the viewer can see; anything else is a 404."""
    return Export.objects.filter(
        Q(request__in=requests_for(viewer).values("pk"))
        | Q(conversation__in=conversations_for(viewer).values("pk"))
    ).select_related("request", "conversation", "requested_by")


def exports_of(target: Target) -> QuerySet[Export]:
    field = "request" if isinstance(target, DeletionRequest) else "conversation"
    return Export.objects.filter(**{field: target}).select_related("requested_by")


# --- asking for one -----------------------------------------------------------------------


def do_request_export(
    target: Target, *, fmt: str, acting_user: Member, on_behalf_of_system: bool = False
) -> Export:
    """Queue an export of a request's frozen scope or of a conversation.

    ``on_behalf_of_system``: the run engine asks for the evidence an archiving retention
    rule needs; the export is in the rule approver's name (``acting_user``)."""
    if not on_behalf_of_system and not may_export(target, acting_user):
        raise PermissionDenied(_("You may not export this."))
    if fmt not in ExportFormat.values:
        raise ValidationError(
            {"format": [_("Choose one of: %(formats)s.") % {"formats": ", ".join(ExportFormat)}]}
        )
    is_request = isinstance(target, DeletionRequest)
    if not on_behalf_of_system:
        _check_bounds(target, acting_user)
    with transaction.atomic():
        export = Export.objects.create(
            request=target if is_request else None,
            conversation=None if is_request else target,
            format=fmt,
            requested_by=acting_user,
            system=on_behalf_of_system,
            language=translation.get_language() or settings.LANGUAGE_CODE,
            max_message_id=target.max_message_id if is_request else _newest_id(target),
        )
        audit.record(
            EventType.EXPORT_REQUESTED,
            actor=None if on_behalf_of_system else acting_user,
            target=target,
            department_id=trail.department_id(target),
            details={"export": export.pk, "format": fmt}
            | ({"by_system": True} if on_behalf_of_system else {}),
        )
        build.LEASE.enqueue(export.pk)
    return export


def _check_bounds(target: Target, member: Member) -> None:
    """One member cannot make the workers write without end: at most
    ``QINGLI_MAX_OPEN_EXPORTS`` of their exports wait or run at once, and one export holds
    at most ``QINGLI_MAX_EXPORT_MESSAGES`` messages."""
    waiting = Export.objects.filter(
        requested_by=member, system=False, status__in=[ExportStatus.QUEUED, ExportStatus.RUNNING]
    ).count()
    if waiting >= settings.QINGLI_MAX_OPEN_EXPORTS:
        message = _(
            "%(n)d of your exports are still being written; ask for another once one is ready."
        )
        raise ValidationError({"export": [message % {"n": waiting}]})
    if isinstance(target, DeletionRequest):
        size = int((target.preview or {}).get("messages") or 0)
    else:
        size = Message.all_rows.filter(conversation=target).count()
    if size > settings.QINGLI_MAX_EXPORT_MESSAGES:
        message = _("This export would hold %(n)d messages; one export holds at most %(max)d.")
        raise ValidationError(
            {"export": [message % {"n": size, "max": settings.QINGLI_MAX_EXPORT_MESSAGES}]}
        )


def _newest_id(conversation: Conversation) -> int:
    newest = Message.all_rows.filter(conversation=conversation).aggregate(n=Max("id"))["n"]
    return newest or 0


def requeue_stalled_exports(*, now: datetime | None = None) -> list[int]:
    """Every five minutes: a running export with no heartbeat for ``STALLED_AFTER`` was
    left by a dead worker. It is queued again (audited) and its job enqueued on commit;
    the new run starts from scratch. After ``MAX_ATTEMPTS`` runs it fails instead, its
    file deleted. A queued export whose job Redis lost is enqueued again, so that a
    request waiting for it as evidence does not wait for ever (``build.LEASE``)."""
    return build.LEASE.sweep(now=now)


def expire_exports(*, now: datetime | None = None) -> list[int]:
    """Daily: a ready export written more than ``export_keep_days`` ago expires. Its key
    is destroyed first (so the file is unreadable even if deleting it fails), then its
    file is deleted; the row, its checksum and counts stay, and each expiry is audited.
    A file written before exports were encrypted (no key) expires at once."""

    def record(export: Export, keep_days: int) -> None:
        trail.record(
            EventType.EXPORT_EXPIRED,
            export,
            sha256=export.sha256,
            finished_at=export.finished_at.isoformat() if export.finished_at else None,
            keep_days=keep_days,
            encrypted=export.wrapped_key is not None,
        )

    return expire_sealed(
        Export,
        ready=ExportStatus.READY,
        expired=ExportStatus.EXPIRED,
        record=record,
        now=now,
        related=("request", "conversation"),
    )
