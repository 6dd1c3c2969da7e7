"""Sign-in lockouts: admins see who is locked out and lift a lockout (audited)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from retention.access import signin
from retention.access.predicates import may_lift_lockouts, require
from retention.web.request_forms import errors_of


class LiftLockoutForm(forms.Form):
    username = forms.CharField(required=False, max_length=150, label=gettext_lazy("Username"))
    ip_address = forms.GenericIPAddressField(required=False, label=gettext_lazy("Address"))


@require_GET
@login_required
def lockout_list(request: HttpRequest) -> HttpResponse:
    require(may_lift_lockouts(request.user))
    return render(
        request,
        "retention/lockouts.html",
        {
            "lockouts": signin.active_lockouts(),
            "limit": signin.failure_limit(),
            "minutes": signin.cool_off_minutes(),
        },
    )


@require_POST
@login_required
def lockout_lift(request: HttpRequest) -> HttpResponse:
    require(may_lift_lockouts(request.user))
    form = LiftLockoutForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(m for ms in form.errors.values() for m in ms))
        return redirect("lockouts")
    try:
        signin.do_lift_lockout(actor=request.user, **form.cleaned_data)
    except ValidationError as exc:
        messages.error(request, " ".join(m for ms in errors_of(exc).values() for m in ms))
    else:
        messages.success(
            request,
            _("Lockout lifted: %(who)s may sign in again.")
            % {"who": form.cleaned_data["username"] or form.cleaned_data["ip_address"]},
        )
    return redirect("lockouts")
