"""The recycle bin: what batch deletions took, who may see it, and restoring it.

Restoring flips tombstones back, one row per conversation range, so even a request of a
million messages comes back in a few statements; larger restores still run as a job in
bounded batches so that no transaction grows with the size of the request.
"""

from __future__ import annotations

from functools import reduce
from operator import or_

import django_rq
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

import audit.log as audit
from audit.events import EventType
from retention.deletion.errors import Conflict
from retention.models import (
    DeletionRequest,
    ExecutionKind,
    ExecutionStatus,
    Member,
    PersonalRemoval,
    RequestMethod,
    Tombstone,
    TombstoneState,
)
from retention.roles import Role
from retention.second_factor import enforce
from retention.selectors import departments_for, managed_department_paths
from retention.store import refresh_last_message

# Conversations whose last-message date is recomputed in one transaction; a restore of
# more leaves that to a job.
RESTORE_BATCH = 1000


def bin_requests_for(viewer: Member) -> QuerySet[DeletionRequest]:
    """Requests with records in the recycle bin that the viewer may see: managers their
    subtree's, admins and auditors all (auditors read only)."""
    if viewer.has_role(Role.ADMIN, Role.AUDITOR, Role.SECURITY):
        visible = DeletionRequest.objects.all()
    elif viewer.has_role(Role.MANAGER) and viewer.department_id:
        visible = DeletionRequest.objects.filter(
            tombstones__conversation__department__path__startswith=viewer.department.path
        ).distinct()
    else:
        return DeletionRequest.objects.none()
    binned = Tombstone.objects.filter(request=OuterRef("pk"), state=TombstoneState.BINNED)
    summary = binned.values("request")
    return (
        visible.filter(
            pk__in=Tombstone.objects.filter(state=TombstoneState.BINNED).values("request")
        )
        .select_related("requester", "scope_root")
        .annotate(
            bin_messages=Subquery(summary.annotate(n=Sum("messages")).values("n")),
            bin_conversations=Subquery(
                summary.annotate(n=Count("conversation_id", distinct=True)).values("n")
            ),
            bin_bytes=Subquery(summary.annotate(n=Sum("bytes")).values("n")),
            binned_at=Subquery(summary.annotate(n=Min("created_at")).values("n")),
            purge_after=Subquery(summary.annotate(n=Max("purge_after")).values("n")),
        )
        .order_by("purge_after", "pk")
    )


def bin_conversations(request: DeletionRequest, viewer: Member) -> list[dict]:
    """A request's binned conversations that the viewer may see, with their counts."""
    rows = (
        _visible_tombstones(request, viewer)
        .values("conversation_id", "conversation__title", "conversation__department__name")
        .annotate(messages=Sum("messages"), bytes=Sum("bytes"), purge_after=Max("purge_after"))
        .order_by("conversation_id")
    )
    return list(rows)


def _visible_tombstones(request: DeletionRequest, viewer: Member) -> QuerySet[Tombstone]:
    binned = Tombstone.objects.filter(request=request, state=TombstoneState.BINNED)
    if viewer.has_role(Role.ADMIN, Role.AUDITOR, Role.SECURITY):
        return binned
    return binned.filter(conversation__department__in=departments_for(viewer).values("pk"))


def personal_bin_for(viewer: Member) -> QuerySet[PersonalRemoval]:
    """The viewer's own personal deletions that can still be restored."""
    return (
        PersonalRemoval.objects.filter(
            member=viewer, restored_at__isnull=True, restorable_until__gt=timezone.now()
        )
        .select_related("conversation", "request")
        .order_by("restorable_until")
    )


def may_restore(viewer: Member) -> bool:
    return viewer.has_role(Role.MANAGER, Role.ADMIN) and not viewer.has_role(Role.AUDITOR)


def do_restore_from_bin(
    request: DeletionRequest,
    *,
    acting_user: Member,
    verified_second_factor: bool,
    conversation_ids: list[int] | None = None,
) -> dict:
    """Bring a batch deletion back, whole or for chosen conversations. Managers restore
    within their subtree, admins anywhere; auditors only look."""
    if not may_restore(acting_user):
        raise PermissionDenied(_("Only managers and admins restore from the recycle bin."))
    enforce(acting_user, verified_second_factor=verified_second_factor, action="restore")
    if request.method != RequestMethod.BATCH:
        raise Conflict(_("Only batch deletions sit in the shared recycle bin."))
    with transaction.atomic():
        DeletionRequest.objects.select_for_update().get(pk=request.pk)
        if request.executions.filter(
            kind=ExecutionKind.MOVE, status__in=[ExecutionStatus.QUEUED, ExecutionStatus.RUNNING]
        ).exists():
            raise Conflict(_("This deletion is still running; restore it once it has finished."))
        binned = Tombstone.objects.filter(request=request, state=TombstoneState.BINNED)
        if not binned.exists():
            raise Conflict(_("Nothing of this request is in the recycle bin any more."))
        chosen = binned
        if conversation_ids is not None:
            wanted = set(conversation_ids)
            present = set(
                binned.filter(conversation_id__in=wanted).values_list("conversation_id", flat=True)
            )
            if not wanted or wanted - present:
                raise ValidationError(
                    {
                        "conversations": [
                            _("Not in this request's recycle bin: %(ids)s")
                            % {"ids": ", ".join(str(i) for i in sorted(wanted - present)) or "-"}
                        ]
                    }
                )
            chosen = binned.filter(conversation_id__in=wanted)
        if not acting_user.has_role(Role.ADMIN):
            # The subtree the member manages: not what they may see (a manager who is
            # also a security officer sees the whole company, but manages one subtree).
            managed = reduce(
                or_,
                [
                    Q(conversation__department__path__startswith=path)
                    for path in managed_department_paths(acting_user)
                ],
                Q(pk__in=[]),
            )
            if chosen.exclude(managed).exists():
                raise PermissionDenied(
                    _("Part of this is outside your departments; choose conversations of yours.")
                )
        totals = chosen.aggregate(
            messages=Sum("messages"), conversations=Count("conversation_id", distinct=True)
        )
        conversations = sorted(set(chosen.values_list("conversation_id", flat=True)))
        # One statement, under the request's lock (a purge start takes it too): the
        # records are back, and can no longer be purged, when this commits.
        chosen.update(
            state=TombstoneState.RESTORED, restored_at=timezone.now(), restored_by=acting_user
        )
        details = {
            "messages": totals["messages"] or 0,
            "conversations": totals["conversations"],
            "whole_request": conversation_ids is None,
            "conversation_ids": conversations[:50],
            "as_job": len(conversations) > RESTORE_BATCH,
        }
        audit.record(
            EventType.RECYCLE_RESTORED,
            actor=acting_user,
            target=request,
            department_id=request.scope_root_id,
            details=details,
        )
        if len(conversations) <= RESTORE_BATCH:
            refresh_last_message(conversations)
        else:
            # Only the conversations' "last message" dates are left: recomputed in batches.
            transaction.on_commit(
                lambda: django_rq.get_queue("wipes").enqueue(
                    "retention.jobs.refresh_last_messages", conversations
                )
            )
    return details


def refresh_last_messages(conversation_ids: list[int]) -> None:
    """Recompute the conversations' last-message dates, a batch per transaction."""
    for start in range(0, len(conversation_ids), RESTORE_BATCH):
        with transaction.atomic():
            refresh_last_message(conversation_ids[start : start + RESTORE_BATCH])
