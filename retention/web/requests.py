"""The pages of one deletion request and the list of them: the detail page with its
decision, cancel and restore buttons, and the approvals inbox.

Thin: predicates say who may see and do what (anything out of sight is a 404), the
actions write (their PermissionDenied is a 403 page), presenters shape what is shown.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from retention.access.predicates import (
    is_approver,
    may_cancel,
    may_decide,
    may_file,
    may_restore_personal,
    refusal_to_decide,
    requests_for,
    require,
    rules_awaiting,
    steps_awaiting,
)
from retention.access.second_factor import verified
from retention.errors import Conflict
from retention.governance import approvals
from retention.governance.decisions import do_approve_step, do_cancel_request, do_reject_request
from retention.governance.filing import do_restore_personal
from retention.governance.selectors import request_timeline
from retention.models import DeletionRequest, Member, RequestStatus
from retention.web.progress import progress_context
from retention.web.request_forms import ApproveForm, RejectForm, RequestFilterForm
from retention.web.request_presenters import (
    STEP_BECAUSE,
    held_rows,
    role_label,
    scope_summary,
    timeline_row,
)

REQUESTS_PER_PAGE = 25


def visible_request(request: HttpRequest, request_id: int) -> DeletionRequest:
    return get_object_or_404(requests_for(request.user), pk=request_id)


def to_request_page(deletion: DeletionRequest) -> HttpResponse:
    return redirect("request", request_id=deletion.pk)


@require_GET
@login_required
def request_list(request: HttpRequest) -> HttpResponse:
    form = RequestFilterForm(request.GET or None)
    requests = requests_for(request.user)
    if form.is_valid():
        if form.cleaned_data["status"]:
            requests = requests.filter(status=form.cleaned_data["status"])
        if form.cleaned_data["method"]:
            requests = requests.filter(method=form.cleaned_data["method"])
    elif form.is_bound:
        requests = requests.none()
    page = Paginator(requests, REQUESTS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "retention/requests/list.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "may_file": may_file(request.user),
        },
    )


@require_GET
@login_required
def request_detail(request: HttpRequest, request_id: int) -> HttpResponse:
    viewer = request.user
    deletion = visible_request(request, request_id)
    current = approvals.current_step(deletion)
    return render(
        request,
        "retention/requests/detail.html",
        {
            "deletion": deletion,
            "scope": scope_summary(deletion),
            "preview": deletion.preview,
            "held": held_rows(deletion.preview, viewer),
            "steps": [
                {
                    "step": s,
                    "because": STEP_BECAUSE.get(s.because, s.because),
                    "role": role_label(s.role),
                }
                for s in deletion.steps.select_related("approver", "department")
            ],
            "current": current,
            "timeline": [timeline_row(e) for e in request_timeline(deletion)],
            "may_decide": may_decide(current, viewer),
            "may_cancel": may_cancel(deletion, viewer),
            "may_restore": may_restore_personal(deletion, viewer),
            # The decision forms name the step they decide (see do_approve_step).
            "approve_form": ApproveForm(initial={"step": current.order if current else None}),
            "reject_form": RejectForm(initial={"step": current.order if current else None}),
            "run": progress_context(deletion),
        },
    )


@require_POST
@login_required
def request_approve(request: HttpRequest, request_id: int) -> HttpResponse:
    deletion = visible_request(request, request_id)
    form = ApproveForm(request.POST)
    if not form.is_valid():
        approvals_gate(deletion, request.user)
        messages.error(request, " ".join(m for errors in form.errors.values() for m in errors))
        return to_request_page(deletion)
    try:
        deletion = do_approve_step(
            deletion,
            acting_user=request.user,
            verified_second_factor=verified(request),
            step_order=form.cleaned_data["step"],
            comment=form.cleaned_data["comment"],
        )
    except Conflict as exc:
        messages.error(request, str(exc))
    else:
        if deletion.status == RequestStatus.APPROVED:
            messages.success(request, _("Approved. The deletion is scheduled."))
        else:
            messages.success(request, _("Step approved. The request moves to the next step."))
    return to_request_page(deletion)


@require_POST
@login_required
def request_reject(request: HttpRequest, request_id: int) -> HttpResponse:
    deletion = visible_request(request, request_id)
    form = RejectForm(request.POST)
    try:
        if not form.is_valid():
            raise ValidationError({name: list(errors) for name, errors in form.errors.items()})
        do_reject_request(
            deletion,
            acting_user=request.user,
            verified_second_factor=verified(request),
            reason=form.cleaned_data["reason"],
            step_order=form.cleaned_data["step"],
        )
    except (Conflict, ValidationError) as exc:
        approvals_gate(deletion, request.user)
        messages.error(
            request, " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        )
    else:
        messages.success(request, _("Rejected. The requester has been told why."))
    return to_request_page(deletion)


def approvals_gate(deletion: DeletionRequest, member: Member) -> None:
    """A refused decision is a 403 even when its input was also bad."""
    current = approvals.current_step(deletion)
    if current is not None:
        refusal = refusal_to_decide(current, member)
        if refusal is not None:
            raise PermissionDenied(refusal)


def _run_on_request(request: HttpRequest, request_id: int, action, success: str) -> HttpResponse:
    """Run a body-less action on a visible request; a state conflict becomes a message."""
    deletion = visible_request(request, request_id)
    try:
        action(deletion, acting_user=request.user)
    except Conflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success)
    return to_request_page(deletion)


@require_POST
@login_required
def request_cancel(request: HttpRequest, request_id: int) -> HttpResponse:
    return _run_on_request(request, request_id, do_cancel_request, _("Request cancelled."))


@require_POST
@login_required
def request_restore(request: HttpRequest, request_id: int) -> HttpResponse:
    return _run_on_request(
        request,
        request_id,
        do_restore_personal,
        _("Restored: the records are back in your view."),
    )


@require_GET
@login_required
def approvals_inbox(request: HttpRequest) -> HttpResponse:
    require(is_approver(request.user))
    steps = list(steps_awaiting(request.user).select_related("request__scope_root"))
    return render(
        request,
        "retention/requests/inbox.html",
        {
            "rows": [{"step": s, "role": role_label(s.role)} for s in steps],
            "rules": rules_awaiting(request.user),
        },
    )
