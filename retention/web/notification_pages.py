"""The member's notifications, marking them read, and the navigation's badges."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from retention.access.predicates import is_approver, requests_for, steps_awaiting
from retention.governance.selectors import notifications_for
from retention.notifications.notify import do_mark_notifications_read, text_of

NOTIFICATIONS_PER_PAGE = 30


@require_GET
@login_required
def notification_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(notifications_for(request.user), NOTIFICATIONS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    visible = set(
        requests_for(request.user)
        .filter(pk__in=[n.request_id for n in page if n.request_id])
        .values_list("pk", flat=True)
    )
    rows = [
        {"notification": n, "text": text_of(n), "linked": n.request_id in visible} for n in page
    ]
    return render(request, "retention/notifications.html", {"page": page, "rows": rows})


@require_POST
@login_required
def notifications_mark_read(request: HttpRequest) -> HttpResponse:
    do_mark_notifications_read(request.user)
    return redirect("notifications")


@require_GET
@login_required
def nav_counts(request: HttpRequest) -> HttpResponse:
    """The navigation's badges, swapped in out of band by htmx."""
    user = request.user
    return render(
        request,
        "retention/requests/_nav_counts.html",
        {
            # None: the member approves nothing, and the page has no badge to fill.
            "approvals_waiting": (steps_awaiting(user).count() if is_approver(user) else None),
            "unread": notifications_for(user).filter(read_at__isnull=True).count(),
        },
    )
