"""The request wizard and its live preview: choose a scope, see exactly what would go
and what stays, and the approval chain it would need, then file it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from retention.access.predicates import may_file, require
from retention.errors import Conflict
from retention.governance import approvals
from retention.governance.filing import do_file_request
from retention.governance.scope import check_authority, compute_preview, resolve_scope, scope_root
from retention.models import Member, RequestMethod
from retention.policies import consecutive_signin_days, get_policy, server_cost_cny
from retention.web.request_forms import RequestWizardForm, add_service_errors
from retention.web.request_presenters import (
    flat_errors,
    form_error_list,
    held_rows,
    protected_rows,
    step_row,
)
from retention.web.requests import to_request_page


@require_http_methods(["GET", "POST"])
@login_required
def request_new(request: HttpRequest) -> HttpResponse:
    viewer = request.user
    require(may_file(viewer), _("Your roles do not allow filing deletion requests."))
    status, refusal = 200, ""
    if request.method == "POST":
        form = RequestWizardForm(request.POST, viewer=viewer, require_reason=True)
        if form.is_valid():
            try:
                scope = resolve_scope(form.cleaned_data["method"], form.scope_data(), viewer)
                deletion, created = do_file_request(
                    requester=viewer,
                    scope=scope,
                    reason=form.cleaned_data["reason"],
                    idempotency_key=form.cleaned_data["idempotency_key"],
                )
            except ValidationError as exc:
                add_service_errors(form, exc, aliases={"scope": None})
            except PermissionDenied as exc:
                status, refusal = 403, str(exc)
            except Conflict as exc:  # its Idempotency-Key filed a different request
                form.add_error(None, str(exc))
                status = 409
            else:
                if created:
                    messages.success(
                        request, _("Deletion request #%(id)s filed.") % {"id": deletion.pk}
                    )
                else:
                    messages.info(
                        request,
                        _("This form was already filed as request #%(id)s.") % {"id": deletion.pk},
                    )
                return to_request_page(deletion)
        if status == 200:
            status = 400
        preview_form = RequestWizardForm(request.POST, viewer=viewer)
    else:
        form = preview_form = RequestWizardForm(viewer=viewer)
    context = {"form": form, "refusal": refusal, **preview_context(preview_form, viewer)}
    return render(request, "retention/requests/new.html", context, status=status)


@require_POST
@login_required
def request_preview(request: HttpRequest) -> HttpResponse:
    """The wizard's live preview panel (an htmx partial). Errors are part of the panel."""
    require(may_file(request.user), _("Your roles do not allow filing deletion requests."))
    form = RequestWizardForm(request.POST, viewer=request.user)
    return render(request, "retention/requests/_preview.html", preview_context(form, request.user))


def preview_context(form: RequestWizardForm, viewer: Member) -> dict[str, Any]:
    """What the preview panel shows for the wizard's current input."""
    if not form.is_bound:
        return {"preview_state": "empty"}
    if not form.is_valid():
        return {"preview_state": "errors", "preview_errors": form_error_list(form)}
    if form.is_empty_scope():
        return {"preview_state": "empty"}
    method = form.cleaned_data["method"]
    try:
        scope = resolve_scope(method, form.scope_data(), viewer)
        check_authority(viewer, scope)
    except ValidationError as exc:
        return {"preview_state": "errors", "preview_errors": flat_errors(form, exc)}
    except PermissionDenied as exc:
        return {"preview_state": "errors", "preview_errors": [str(exc)]}
    preview = compute_preview(scope, requester=viewer)
    steps = approvals.plan_steps(
        method,
        root=scope_root(scope),
        requester=viewer,
        high_sensitivity=preview["high_sensitivity"],
    )
    context = {
        "preview_state": "ready",
        "preview": preview,
        "method": method,
        "planned_steps": [step_row(s) for s in steps],
        "security_step_added": any(s["because"] == approvals.HIGH_SENSITIVITY for s in steps),
        "cost_cny": server_cost_cny(preview["messages"])
        if method == RequestMethod.SERVER
        else None,
        "held": held_rows(preview, viewer),
        "protected": protected_rows(preview),
        "delay_hours": get_policy(
            "server_delay_hours" if method == RequestMethod.SERVER else "batch_delay_hours"
        ),
        "window": get_policy("execution_window"),
    }
    if method == RequestMethod.BATCH:
        needed = get_policy("batch_min_consecutive_signin_days")
        streak = consecutive_signin_days(viewer)
        if streak < needed:
            context["eligibility"] = {"needed": needed, "streak": streak}
    return context
