"""The holds page: who sees which holds, and security officers placing and releasing them."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from retention.access.predicates import holds_for, may_manage_holds, may_see_holds, require
from retention.access.second_factor import verified
from retention.errors import Conflict
from retention.governance.protection import do_place_hold, do_release_hold
from retention.web.request_forms import HoldForm, ReleaseHoldForm, add_service_errors


@require_GET
@login_required
def hold_list(request: HttpRequest) -> HttpResponse:
    require(may_see_holds(request.user))
    return render_holds(request, HoldForm(viewer=request.user))


def render_holds(request: HttpRequest, form: HoldForm, *, status: int = 200) -> HttpResponse:
    return render(
        request,
        "retention/holds/list.html",
        {
            "holds": holds_for(request.user),
            "form": form if may_manage_holds(request.user) else None,
            "release_form": ReleaseHoldForm(),
        },
        status=status,
    )


@require_POST
@login_required
def hold_place(request: HttpRequest) -> HttpResponse:
    require(may_manage_holds(request.user))
    form = HoldForm(request.POST, viewer=request.user)
    if form.is_valid():
        try:
            hold = do_place_hold(
                acting_user=request.user,
                verified_second_factor=verified(request),
                kind=form.cleaned_data["kind"],
                reason=form.cleaned_data["reason"],
                conversations=form.cleaned_data["conversations"],
                departments=list(form.cleaned_data["departments"]),
            )
        except ValidationError as exc:
            add_service_errors(form, exc, aliases={"scope": None})
        else:
            messages.success(request, _("Hold #%(id)s placed.") % {"id": hold.pk})
            return redirect("holds")
    return render_holds(request, form, status=400)


@require_POST
@login_required
def hold_release(request: HttpRequest, hold_id: int) -> HttpResponse:
    hold = get_object_or_404(holds_for(request.user), pk=hold_id)
    require(may_manage_holds(request.user))
    form = ReleaseHoldForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors.get("reason", [])))
        return redirect("holds")
    try:
        do_release_hold(
            hold,
            acting_user=request.user,
            verified_second_factor=verified(request),
            reason=form.cleaned_data["reason"],
        )
    except Conflict as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Hold #%(id)s released.") % {"id": hold.pk})
    return redirect("holds")
