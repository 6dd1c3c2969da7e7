"""Personal deletions: removing records from one member's own view (at once, or once their
manager approves a deletion held because they delete often), and who deletes often.

A member whose personal deletions within the policy's window have reached
``frequent_deletion_threshold`` has further personal deletions held as requests with one
manager step (see ``filing`` and ``decisions``); the security officer's dashboard lists
such members.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _

from audit import log as audit
from audit.events import EventType
from retention.errors import Conflict
from retention.models import (
    Conversation,
    DeletionRequest,
    Member,
    Message,
    PersonalRemoval,
    RequestMethod,
    RequestStatus,
)
from retention.policies import get_policy
from retention.records.holds import hold_guard_shared, holds_covering


def window_start(now: datetime | None = None) -> datetime:
    """The start of the window in which frequent personal deletions are counted."""
    hours = get_policy("frequent_deletion_window_hours")
    return (now or timezone.now()) - timedelta(hours=hours)


def _carried_out_since(since: datetime):
    """Personal deletions that took effect since ``since`` (held ones count once approved)."""
    return DeletionRequest.objects.filter(
        method=RequestMethod.PERSONAL, status=RequestStatus.COMPLETED, decided_at__gte=since
    )


def deletions_in_window(member: Member) -> int:
    """The member's personal deletions that took effect within the window."""
    return _carried_out_since(window_start()).filter(requester=member).count()


def is_frequent(member: Member) -> tuple[bool, int, int]:
    """(whether the member's next personal deletion is held, deletions in the window,
    threshold). A threshold of 0 switches the check off."""
    threshold = get_policy("frequent_deletion_threshold")
    if not threshold:
        return False, 0, 0
    recent = deletions_in_window(member)
    return recent >= threshold, recent, threshold


@dataclass(frozen=True)
class FrequentDeleter:
    member: Member
    deletions: int
    held: int


def frequent_deleters() -> list[FrequentDeleter]:
    """Every member at or over the threshold now, most deletions first, with how many of
    their personal deletions await approval. For the security officer, who sees the whole
    company; empty when the check is off."""
    threshold = get_policy("frequent_deletion_threshold")
    if not threshold:
        return []
    counts = dict(
        _carried_out_since(window_start())
        .values("requester")
        .annotate(n=Count("pk"))
        .filter(n__gte=threshold)
        .values_list("requester", "n")
    )
    held = dict(
        DeletionRequest.objects.filter(
            requester__in=counts, method=RequestMethod.PERSONAL, status=RequestStatus.PENDING
        )
        .values("requester")
        .annotate(n=Count("pk"))
        .values_list("requester", "n")
    )
    members = Member.objects.select_related("department").in_bulk(list(counts))
    rows = [FrequentDeleter(members[pk], n, held.get(pk, 0)) for pk, n in counts.items()]
    return sorted(rows, key=lambda r: (-r.deletions, r.member.username))


def held_notice(request: DeletionRequest) -> str:
    """What the member reads while their personal deletion awaits their manager because
    they delete often ("" for any other request)."""
    if request.method != RequestMethod.PERSONAL or request.status != RequestStatus.PENDING:
        return ""
    return _(
        "Nothing was deleted yet: you reached %(n)d personal deletions within %(hours)d hours, "
        "so this one awaits your manager's approval. Once approved, it is deleted on your "
        "side only."
    ) % {
        "n": get_policy("frequent_deletion_threshold"),
        "hours": get_policy("frequent_deletion_window_hours"),
    }


def remove_for_requester(request: DeletionRequest, *, approved_by: Member | None = None) -> None:
    """Carry out a personal deletion: gone from the requester's view only, restorable for
    a while. It covers what the request's frozen scope names, up to the newest message
    when it was filed. Inside the caller's transaction; a Conflict when a hold now covers
    the conversation or the message no longer exists."""
    now = timezone.now()
    # Holds are read under the hold guard, as every deletion batch reads them: a hold
    # placed meanwhile either commits first (and is seen) or waits for this transaction.
    hold_guard_shared()
    scope = request.scope
    message = None
    if scope.get("messages"):
        message = (
            Message.objects.select_related("conversation").filter(pk=scope["messages"][0]).first()
        )
        if message is None:
            raise Conflict(_("This message no longer exists; there is nothing left to delete."))
        conversation = message.conversation
    else:
        conversation = Conversation.objects.filter(pk=scope["conversations"][0]).first()
        if conversation is None:
            raise Conflict(
                _("This conversation no longer exists; there is nothing left to delete.")
            )
    if approved_by is not None and holds_covering([conversation.pk]).exists():
        raise Conflict(
            _(
                "This conversation is on hold now: nothing in it can be deleted. Reject the "
                "request, or approve it once the hold is released."
            )
        )
    PersonalRemoval.objects.create(
        member=request.requester,
        conversation=conversation,
        message=message,
        up_to_message_id=request.max_message_id,
        request=request,
        restorable_until=now + timedelta(days=get_policy("recycle_bin_days")),
    )
    request.status = RequestStatus.COMPLETED
    request.decided_at = now
    request.save(update_fields=["status", "decided_at"])
    details = {
        "conversation": conversation.pk,
        "message": message.pk if message else None,
        "messages": request.preview["messages"],
    }
    if approved_by is not None:
        details["approved_by"] = approved_by.username
    audit.record(
        EventType.PERSONAL_DELETED,
        actor=request.requester,
        target=request,
        department_id=conversation.department_id,
        details=details,
    )
