"""The recycle bin: what batch deletions took, who may see it, and restoring it.

Restoring flips tombstones back, one row per conversation range, so a request of a
million messages comes back in a few statements: up to ``RESTORE_BATCH`` ranges at once,
more as a run of that many per batch on the wipes queue, so that no transaction grows
with the size of the request, and no purge starts on the request while it runs.
"""

from __future__ import annotations

from functools import reduce
from operator import or_

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum, Window
from django.db.models.functions import RowNumber
from django.utils import timezone
from django.utils.translation import gettext as _

import audit.log as audit
from audit.events import EventType
from retention.access.predicates import OVERSIGHT_ROLES, may_restore_from_bin, restorable_q
from retention.access.second_factor import enforce
from retention.errors import Conflict
from retention.models import (
    DeletionRequest,
    Execution,
    ExecutionKind,
    ExecutionStatus,
    Member,
    PersonalRemoval,
    RequestMethod,
    Tombstone,
    TombstoneState,
)
from retention.models.roles import Role
from retention.records.selectors import managed_department_paths
from retention.records.store import refresh_last_message
from retention.wipes.move import RESTORE_BATCH
from retention.wipes.purge import purge_running
from retention.wipes.runner import enqueue_run


def binned_visible_to(viewer: Member) -> QuerySet[Tombstone]:
    """Binned records the viewer may see: all of them for admins, auditors and security
    officers, a manager's subtree for a manager, nothing for anyone else."""
    binned = Tombstone.objects.filter(state=TombstoneState.BINNED)
    if viewer.has_role(*OVERSIGHT_ROLES):
        return binned
    return binned.filter(_in_managed_subtrees(viewer))


def _in_managed_subtrees(member: Member) -> Q:
    """Tombstones in the subtrees the member manages (none for a member who manages none).
    What they manage, not what they may see: a manager who is also a security officer
    sees the whole company but manages one subtree."""
    return reduce(
        or_,
        [
            Q(conversation__department__path__startswith=path)
            for path in managed_department_paths(member)
        ],
        Q(pk__in=[]),
    )


def bin_requests_for(viewer: Member) -> QuerySet[DeletionRequest]:
    """Requests with records in the recycle bin that the viewer may see, with the totals
    of just those records (a request can reach beyond a manager's subtree)."""
    visible = binned_visible_to(viewer)
    summary = visible.filter(request=OuterRef("pk")).values("request")
    return (
        DeletionRequest.objects.filter(pk__in=visible.values("request"))
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


def _by_conversation(tombstones: QuerySet[Tombstone]) -> QuerySet:
    return (
        tombstones.values(
            "request_id", "conversation_id", "conversation__title", "conversation__department__name"
        )
        .annotate(messages=Sum("messages"), bytes=Sum("bytes"), purge_after=Max("purge_after"))
        .order_by("conversation_id")
    )


def bin_conversations(request: DeletionRequest, viewer: Member) -> QuerySet:
    """A request's binned conversations that the viewer may see, with their counts."""
    return _by_conversation(binned_visible_to(viewer).filter(request=request))


def bin_items(requests: list[DeletionRequest], viewer: Member, *, each: int) -> dict[int, list]:
    """The first ``each`` binned conversations of every request that the viewer may see,
    for a page of requests in one query."""
    ranked = _by_conversation(binned_visible_to(viewer).filter(request__in=requests)).annotate(
        place=Window(RowNumber(), partition_by=F("request_id"), order_by="conversation_id")
    )
    items: dict[int, list] = {r.pk: [] for r in requests}
    for row in ranked.filter(place__lte=each):
        items[row["request_id"]].append(row)
    return items


def personal_bin_for(viewer: Member) -> QuerySet[PersonalRemoval]:
    """The viewer's own personal deletions that can still be restored."""
    return (
        PersonalRemoval.objects.filter(restorable_q(), member=viewer)
        .select_related("conversation", "request")
        .order_by("restorable_until")
    )


def do_restore_from_bin(
    request: DeletionRequest,
    *,
    acting_user: Member,
    verified_second_factor: bool,
    conversation_ids: list[int] | None = None,
) -> dict:
    """Bring a batch deletion back, whole or for chosen conversations. Managers restore
    within their subtree, admins anywhere; auditors only look."""
    if not may_restore_from_bin(acting_user):
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
        if purge_running(request.pk):
            raise Conflict(_("These records are being purged; what is left cannot be restored."))
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
        if (
            not acting_user.has_role(Role.ADMIN)
            and chosen.exclude(_in_managed_subtrees(acting_user)).exists()
        ):
            raise PermissionDenied(
                _("Part of this is outside your departments; choose conversations of yours.")
            )
        totals = chosen.aggregate(
            messages=Sum("messages"),
            conversations=Count("conversation_id", distinct=True),
            ranges=Count("pk"),
        )
        conversations = sorted(set(chosen.values_list("conversation_id", flat=True)))
        as_job = totals["ranges"] > RESTORE_BATCH
        details = {
            "messages": totals["messages"] or 0,
            "conversations": totals["conversations"],
            "whole_request": conversation_ids is None,
            "conversation_ids": conversations[:50],
            "as_job": as_job,
        }
        audit.record(
            EventType.RECYCLE_RESTORED,
            actor=acting_user,
            target=request,
            department_id=request.scope_root_id,
            details=details,
        )
        if not as_job:
            # One short statement, under the request's lock (a purge start takes it too):
            # the records are back, and can no longer be purged, when this commits.
            chosen.update(
                state=TombstoneState.RESTORED, restored_at=timezone.now(), restored_by=acting_user
            )
            refresh_last_message(conversations)
            return details
        # Larger: a run of short batches on the wipes queue. Until it ends, no purge starts
        # on this request (a purge start looks for it under the same lock), so what this
        # event says is restored is restored.
        try:
            with transaction.atomic():
                run = Execution.objects.create(
                    request=request,
                    kind=ExecutionKind.RESTORE,
                    total_messages=totals["messages"] or 0,
                    acting_member=acting_user,
                    conversation_ids=None if conversation_ids is None else sorted(wanted),
                )
        except IntegrityError:
            raise Conflict(_("A restore of this request is already under way.")) from None
        enqueue_run(run)
    return details
