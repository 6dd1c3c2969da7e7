"""The policies page: every member reads the policies, admins change them."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from retention.access.predicates import may_change_policies, require
from retention.access.second_factor import verified
from retention.governance.policy_changes import do_update_policies
from retention.policies import all_policies
from retention.web.request_forms import (
    JSON_POLICIES,
    POLICY_ERROR_FIELDS,
    POLICY_LABELS,
    PolicyForm,
    add_service_errors,
)


@require_http_methods(["GET", "POST"])
@login_required
def policies(request: HttpRequest) -> HttpResponse:
    current = all_policies()
    form = PolicyForm(current=current) if may_change_policies(request.user) else None
    status = 200
    if request.method == "POST":
        require(may_change_policies(request.user))
        form = PolicyForm(request.POST, current=current)
        if form.is_valid():
            try:
                do_update_policies(
                    actor=request.user,
                    changes=form.changes(),
                    verified_second_factor=verified(request),
                )
            except ValidationError as exc:
                add_service_errors(form, exc, aliases=POLICY_ERROR_FIELDS)
            else:
                messages.success(request, _("Policies saved."))
                return redirect("policies")
        status = 400
    rows = [
        {"key": key, "label": POLICY_LABELS[key], "value": policy_display(key, value)}
        for key, value in current.items()
    ]
    return render(request, "retention/policies.html", {"rows": rows, "form": form}, status=status)


def policy_display(key: str, value: Any) -> str:
    if key == "execution_window":
        return f"{value['start']}–{value['end']}" if value else _("any time")
    if key in JSON_POLICIES:
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return _("on") if value else _("off")
    return str(value)
