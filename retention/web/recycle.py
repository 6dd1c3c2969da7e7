"""The recycle bin pages: what batch deletions took, how long it stays, and restoring it.

Managers see and restore their subtree's, admins everything; auditors and security
officers look without restoring. Everyone sees their own personal deletions.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from retention.access.predicates import may_restore_from_bin
from retention.access.second_factor import verified
from retention.errors import Conflict
from retention.wipes.recycle import (
    bin_conversations,
    bin_requests_for,
    do_restore_from_bin,
    personal_bin_for,
)

BIN_CONVERSATIONS_PER_PAGE = 200


@require_GET
@login_required
def recycle_bin(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "retention/recycle/list.html",
        {
            "entries": bin_requests_for(request.user),
            "personal": personal_bin_for(request.user),
            "may_restore": may_restore_from_bin(request.user),
            "now": timezone.now(),
        },
    )


@require_GET
@login_required
def recycle_bin_request(request: HttpRequest, request_id: int) -> HttpResponse:
    entry = get_object_or_404(bin_requests_for(request.user), pk=request_id)
    return render(
        request,
        "retention/recycle/detail.html",
        {
            "entry": entry,
            "page": Paginator(
                bin_conversations(entry, request.user), BIN_CONVERSATIONS_PER_PAGE
            ).get_page(request.GET.get("page")),
            "may_restore": may_restore_from_bin(request.user),
            "now": timezone.now(),
        },
    )


@require_POST
@login_required
def recycle_bin_restore(request: HttpRequest, request_id: int) -> HttpResponse:
    entry = get_object_or_404(bin_requests_for(request.user), pk=request_id)
    chosen = request.POST.getlist("conversations")
    try:
        ids = [int(value) for value in chosen] if chosen else None
    except ValueError:
        messages.error(request, _("Choose conversations from the list."))
        return redirect("recycle-bin-request", request_id=entry.pk)
    try:
        outcome = do_restore_from_bin(
            entry,
            acting_user=request.user,
            verified_second_factor=verified(request),
            conversation_ids=ids,
        )
    except (Conflict, ValidationError) as exc:
        text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        messages.error(request, text)
        return redirect("recycle-bin-request", request_id=entry.pk)
    if outcome["as_job"]:
        said = ngettext(
            "Restoring %(messages)s messages in %(conversations)s conversation: they come "
            "back in short batches over the next moments.",
            "Restoring %(messages)s messages in %(conversations)s conversations: they come "
            "back in short batches over the next moments.",
            outcome["conversations"],
        )
    else:
        said = ngettext(
            "Restored %(messages)s messages in %(conversations)s conversation.",
            "Restored %(messages)s messages in %(conversations)s conversations.",
            outcome["conversations"],
        )
    messages.success(
        request, said % {"messages": outcome["messages"], "conversations": outcome["conversations"]}
    )
    # Back to what is left of the request in the bin, or to the bin when nothing is.
    if bin_requests_for(request.user).filter(pk=entry.pk).exists():
        return redirect("recycle-bin-request", request_id=entry.pk)
    return redirect("recycle-bin")
