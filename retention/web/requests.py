"""Pages of deletion requests, approvals, holds, policies, notifications and the
participant's own actions on a conversation.

Thin: forms validate, selectors read (and apply the viewer's scope: anything outside it
is a 404), actions write and decide who may (their PermissionDenied is a 403 page).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit.models import AuditEvent
from retention.access.second_factor import verified
from retention.governance import approvals
from retention.governance.actions import (
    Conflict,
    do_approve_step,
    do_cancel_request,
    do_file_request,
    do_hide_conversation,
    do_mark_notifications_read,
    do_place_hold,
    do_reject_request,
    do_release_hold,
    do_restore_personal,
    do_unhide_conversation,
)
from retention.governance.policy_changes import do_update_policies
from retention.governance.scope import (
    check_authority,
    compute_preview,
    resolve_scope,
    scope_root,
)
from retention.governance.selectors import (
    holds_for,
    notifications_for,
    request_timeline,
    requests_for,
)
from retention.models import (
    Conversation,
    ConversationHide,
    DeletionRequest,
    Department,
    ExecutionKind,
    HoldKind,
    Member,
    Message,
    RequestMethod,
    RequestStatus,
)
from retention.models.roles import Role
from retention.notifications.notify import text_of
from retention.policies import all_policies, consecutive_signin_days, get_policy, server_cost_cny
from retention.records.selectors import conversations_for
from retention.rules.actions import rules_awaiting
from retention.web.request_forms import (
    JSON_POLICIES,
    POLICY_ERROR_FIELDS,
    POLICY_LABELS,
    ApproveForm,
    HoldForm,
    PersonalDeletionForm,
    PolicyForm,
    RejectForm,
    ReleaseHoldForm,
    RequestFilterForm,
    RequestWizardForm,
    add_service_errors,
    errors_of,
    methods_for,
)
from retention.web.runs import progress_context

REQUESTS_PER_PAGE = 25
NOTIFICATIONS_PER_PAGE = 30
APPROVER_ROLES = (Role.MANAGER, Role.SECURITY, Role.ADMIN)
HOLD_VIEWER_ROLES = (Role.MANAGER, Role.SECURITY, Role.ADMIN, Role.AUDITOR)
STEP_BECAUSE = {
    approvals.HIGH_SENSITIVITY: gettext_lazy("high-sensitivity records in scope"),
    approvals.NO_MANAGER_ABOVE: gettext_lazy("no other manager above the scope"),
}


def require_role(member: Member, *roles: Role) -> None:
    if not member.has_role(*roles):
        raise PermissionDenied(_("Your roles do not allow this action."))


def visible_request(request: HttpRequest, request_id: int) -> DeletionRequest:
    return get_object_or_404(requests_for(request.user), pk=request_id)


def to_request_page(deletion: DeletionRequest) -> HttpResponse:
    return redirect("request", request_id=deletion.pk)


# --- the wizard and its live preview ---------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def request_new(request: HttpRequest) -> HttpResponse:
    viewer = request.user
    if not methods_for(viewer):
        raise PermissionDenied(_("Your roles do not allow filing deletion requests."))
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
    if not methods_for(request.user):
        raise PermissionDenied(_("Your roles do not allow filing deletion requests."))
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


def form_error_list(form: RequestWizardForm) -> list[str]:
    errors = []
    for name, messages_ in form.errors.items():
        label = form.fields[name].label if name in form.fields else ""
        errors += [f"{label}: {m}" if label else m for m in messages_]
    return errors


def flat_errors(form: RequestWizardForm, exc: ValidationError) -> list[str]:
    errors = []
    for key, messages_ in errors_of(exc).items():
        field = form.fields.get(key) if key else None
        errors += [f"{field.label}: {m}" if field else m for m in messages_]
    return errors


def step_row(step: dict) -> dict:
    return {
        "role": Role(step["role"]).label,
        "department": step["department"],
        "because": STEP_BECAUSE.get(step["because"], step["because"]),
    }


def held_rows(preview: dict, viewer: Member) -> list[dict]:
    items = preview.get("excluded", {}).get("held", {}).get("items", [])
    titles = dict(
        conversations_for(viewer)
        .filter(pk__in=[i["conversation"] for i in items])
        .values_list("pk", "title")
    )
    return [{**i, "title": titles.get(i["conversation"], "")} for i in items]


def protected_rows(preview: dict) -> list[dict]:
    """Protected conversations in scope: those still to confirm, and those confirmed (so
    their boxes stay ticked while the scope is edited)."""
    rows = [{**p, "confirmed": False} for p in preview["excluded"]["protected_unconfirmed"]]
    confirmed = Conversation.objects.filter(pk__in=preview["protected_confirmed"]).order_by("pk")
    rows += [
        {"conversation": c.pk, "title": c.title, "messages": None, "confirmed": True}
        for c in confirmed
    ]
    return rows


# --- requests -----------------------------------------------------------------------------


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
            "may_file": bool(methods_for(request.user)),
        },
    )


@require_GET
@login_required
def request_detail(request: HttpRequest, request_id: int) -> HttpResponse:
    viewer = request.user
    deletion = visible_request(request, request_id)
    current = approvals.current_step(deletion)
    may_decide = current is not None and approvals.refusal_to_decide(current, viewer) is None
    may_cancel = deletion.status in (RequestStatus.PENDING, RequestStatus.APPROVED) and (
        deletion.requester_id == viewer.pk or viewer.has_role(Role.ADMIN)
    )
    may_restore = (
        deletion.method == RequestMethod.PERSONAL
        and deletion.requester_id == viewer.pk
        and deletion.removals.filter(
            restored_at__isnull=True, restorable_until__gt=timezone.now()
        ).exists()
    )
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
            "may_decide": may_decide,
            "may_cancel": may_cancel,
            "may_restore": may_restore,
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
        refusal = approvals.refusal_to_decide(current, member)
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
    require_role(request.user, *APPROVER_ROLES)
    steps = list(approvals.steps_awaiting(request.user).select_related("request__scope_root"))
    return render(
        request,
        "retention/requests/inbox.html",
        {
            "rows": [{"step": s, "role": role_label(s.role)} for s in steps],
            "rules": rules_awaiting(request.user),
        },
    )


# --- holds --------------------------------------------------------------------------------


@require_GET
@login_required
def hold_list(request: HttpRequest) -> HttpResponse:
    require_role(request.user, *HOLD_VIEWER_ROLES)
    return render_holds(request, HoldForm(viewer=request.user))


def render_holds(request: HttpRequest, form: HoldForm, *, status: int = 200) -> HttpResponse:
    return render(
        request,
        "retention/holds/list.html",
        {
            "holds": holds_for(request.user),
            "form": form if request.user.has_role(Role.SECURITY) else None,
            "release_form": ReleaseHoldForm(),
        },
        status=status,
    )


@require_POST
@login_required
def hold_place(request: HttpRequest) -> HttpResponse:
    require_role(request.user, Role.SECURITY)
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
    require_role(request.user, Role.SECURITY)
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


# --- policies -----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def policies(request: HttpRequest) -> HttpResponse:
    current = all_policies()
    is_admin = request.user.has_role(Role.ADMIN)
    form = PolicyForm(current=current) if is_admin else None
    status = 200
    if request.method == "POST":
        require_role(request.user, Role.ADMIN)
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


# --- notifications and the navigation badges --------------------------------------------------


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
            "approvals_waiting": (
                approvals.steps_awaiting(user).count() if user.has_role(*APPROVER_ROLES) else None
            ),
            "unread": notifications_for(user).filter(read_at__isnull=True).count(),
        },
    )


# --- a participant's own actions on a conversation ---------------------------------------------


def participating_conversation(request: HttpRequest, conversation_id: int) -> Conversation:
    """The conversation (404 outside the viewer's scope), if the viewer takes part (403)."""
    conversation = get_object_or_404(conversations_for(request.user), pk=conversation_id)
    if not conversation.participant_set.filter(member=request.user).exists():
        raise PermissionDenied(_("Only participants act on their own side of a conversation."))
    return conversation


@require_GET
@login_required
def conversation_controls(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """The participant's panel on the conversation page (an htmx partial; empty for
    members who only oversee the conversation)."""
    conversation = get_object_or_404(conversations_for(request.user), pk=conversation_id)
    participant = conversation.participant_set.filter(member=request.user).exists()
    return render(
        request,
        "retention/requests/_conversation_controls.html",
        {
            "conversation": conversation,
            "participant": participant,
            "hidden": participant
            and ConversationHide.objects.filter(
                member=request.user, conversation=conversation
            ).exists(),
            "recycle_bin_days": get_policy("recycle_bin_days"),
            "form": PersonalDeletionForm(),
        },
    )


@require_POST
@login_required
def conversation_hide(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = participating_conversation(request, conversation_id)
    do_hide_conversation(conversation, acting_user=request.user)
    messages.success(
        request,
        _("Hidden: it no longer shows in your conversation list. Nothing was deleted."),
    )
    return redirect("conversation", conversation_id=conversation.pk)


@require_POST
@login_required
def conversation_unhide(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = participating_conversation(request, conversation_id)
    do_unhide_conversation(conversation, acting_user=request.user)
    messages.success(request, _("Shown again in your conversation list."))
    return redirect("conversation", conversation_id=conversation.pk)


@require_POST
@login_required
def conversation_delete_mine(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = participating_conversation(request, conversation_id)
    deletion = file_personal(request, {"conversations": [conversation.pk]})
    if deletion is None:
        return redirect("conversation", conversation_id=conversation.pk)
    messages.success(
        request,
        _(
            "The conversation is deleted on your side; the others keep their copy. "
            "You can restore it here for %(days)s days."
        )
        % {"days": get_policy("recycle_bin_days")},
    )
    return to_request_page(deletion)


@require_POST
@login_required
def message_delete_mine(
    request: HttpRequest, conversation_id: int, message_id: int
) -> HttpResponse:
    conversation = participating_conversation(request, conversation_id)
    message = get_object_or_404(Message.objects.filter(conversation=conversation), pk=message_id)
    deletion = file_personal(request, {"messages": [message.pk]})
    if deletion is not None:
        messages.success(
            request,
            _(
                "Message deleted on your side (request #%(id)s); the others keep their copy. "
                "You can restore it from the request page."
            )
            % {"id": deletion.pk},
        )
    return redirect("conversation", conversation_id=conversation.pk)


def file_personal(request: HttpRequest, data: dict) -> DeletionRequest | None:
    """File a personal deletion; a refusal (quota, hold) becomes a message, not an error."""
    form = PersonalDeletionForm(request.POST)
    reason = (form.cleaned_data["reason"] if form.is_valid() else "") or _(
        "Deleted on my side from the conversation page."
    )
    try:
        scope = resolve_scope(RequestMethod.PERSONAL, data, request.user)
        deletion, _created = do_file_request(requester=request.user, scope=scope, reason=reason)
    except (PermissionDenied, ValidationError) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", None) or [str(exc)]))
        return None
    return deletion


# --- presentation helpers --------------------------------------------------------------------


def policy_display(key: str, value: Any) -> str:
    if key == "execution_window":
        return f"{value['start']}–{value['end']}" if value else _("any time")
    if key in JSON_POLICIES:
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return _("on") if value else _("off")
    return str(value)


def role_label(role: str) -> str:
    return Role(role).label if role in Role.values else role


def scope_summary(deletion: DeletionRequest) -> dict[str, Any]:
    scope = deletion.scope
    return {
        "departments": list(
            Department.objects.filter(pk__in=scope.get("departments", [])).order_by("path")
        ),
        "include_subdepartments": scope.get("include_subdepartments", True),
        "whole_company": scope.get("whole_company", False),
        "conversations": list(
            Conversation.objects.filter(pk__in=scope.get("conversations", [])).order_by("pk")
        ),
        "messages": scope.get("messages", []),
        "sent_after": scope.get("sent_after"),
        "sent_before": scope.get("sent_before"),
    }


DETAIL_LABELS = {
    "method": gettext_lazy("Method"),
    "reason": gettext_lazy("Reason"),
    "comment": gettext_lazy("Comment"),
    "step": gettext_lazy("Step"),
    "role": gettext_lazy("Role"),
    "messages": gettext_lazy("Messages"),
    "conversations": gettext_lazy("Conversations"),
    "held_excluded": gettext_lazy("Held messages left out"),
    "scheduled_for": gettext_lazy("Scheduled for"),
    "approvers": gettext_lazy("Approvers"),
    "was": gettext_lazy("Previous status"),
    "hold": gettext_lazy("Hold"),
    "kind": gettext_lazy("Kind"),
    "message": gettext_lazy("Message"),
    "conversation": gettext_lazy("Conversation"),
    "high_sensitivity": gettext_lazy("High-sensitivity messages"),
    "export": gettext_lazy("Export"),
    "format": gettext_lazy("Format"),
    "sha256": gettext_lazy("SHA-256 checksum"),
    "size": gettext_lazy("Size (bytes)"),
    "unreadable": gettext_lazy("Unreadable messages"),
    "approved_messages": gettext_lazy("Approved messages"),
    "deleted_messages": gettext_lazy("Deleted messages"),
    "deleted_conversations": gettext_lazy("Conversations done"),
    "held_messages": gettext_lazy("Held messages kept"),
    "held_conversations": gettext_lazy("Held conversations kept"),
    "gone_before_run": gettext_lazy("Already gone before the run"),
    "attachments_removed": gettext_lazy("Attachments removed"),
    "keys_destroyed": gettext_lazy("Data keys destroyed"),
    "keys": gettext_lazy("Data keys destroyed"),
    "kept_key_for_records_outside_scope": gettext_lazy(
        "Conversations keeping their key (records outside the scope)"
    ),
    "resumes": gettext_lazy("Resumes"),
    "attempt": gettext_lazy("Attempt"),
    "done": gettext_lazy("Messages done"),
    "whole_request": gettext_lazy("Whole request"),
    "as_job": gettext_lazy("In the background"),
    "conversation_ids": gettext_lazy("Conversations"),
    "holds": gettext_lazy("Holds"),
    "error": gettext_lazy("Error"),
    "max_message_id": gettext_lazy("Newest message in scope"),
}
# Shown elsewhere on the page (the scope summary) or too bulky for a timeline line, or
# bookkeeping of the run that says nothing to a reader.
DETAIL_SKIPPED = {
    "scope",
    "batches",
    "longest_batch_ms",
    "checkpoint",
    "previous_worker_error",
    "phase",
    "from_conversation",
    "to_conversation",
}


def timeline_row(event: AuditEvent) -> dict[str, Any]:
    details = []
    for key, value in (event.details or {}).items():
        if key in DETAIL_SKIPPED or value in (None, "", [], {}):
            continue
        if key == "held_excluded" and not value:
            continue  # nothing was held: nothing to say
        details.append((DETAIL_LABELS.get(key, key), detail_value(key, value)))
    return {
        "event": event,
        "action": event.get_event_type_display(),
        "actor": event.actor_name or _("system"),
        "details": details,
    }


def detail_value(key: str, value: Any) -> str:
    if key == "role":
        return role_label(value)
    if key == "method" and value in RequestMethod.values:
        return RequestMethod(value).label
    if key == "was" and value in RequestStatus.values:
        return RequestStatus(value).label
    if key == "kind" and value in HoldKind.values:
        return HoldKind(value).label
    if key == "kind" and value in ExecutionKind.values:
        return ExecutionKind(value).label
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if key == "holds" and isinstance(value, list):
        return "；".join(str(h.get("reason", h)) if isinstance(h, dict) else str(h) for h in value)
    if key == "scheduled_for":
        try:
            return timezone.localtime(datetime.fromisoformat(value)).strftime("%Y-%m-%d %H:%M")
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, list):
        return "、".join(str(v) for v in value)
    return str(value)
