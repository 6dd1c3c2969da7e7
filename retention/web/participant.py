"""A participant's own side of a conversation: hiding it, and deleting it or one message
for themselves (a personal deletion, restorable for a while).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from retention.access.predicates import require, takes_part_in
from retention.governance.filing import do_file_request
from retention.governance.hides import do_hide_conversation, do_unhide_conversation
from retention.governance.personal import held_notice
from retention.governance.scope import resolve_scope
from retention.models import (
    Conversation,
    ConversationHide,
    DeletionRequest,
    Message,
    RequestMethod,
    RequestStatus,
)
from retention.policies import get_policy
from retention.records.selectors import conversations_for
from retention.web.request_forms import PersonalDeletionForm
from retention.web.requests import to_request_page


def participating_conversation(request: HttpRequest, conversation_id: int) -> Conversation:
    """The conversation (404 outside the viewer's scope), if the viewer takes part (403)."""
    conversation = get_object_or_404(conversations_for(request.user), pk=conversation_id)
    require(
        takes_part_in(conversation, request.user),
        _("Only participants act on their own side of a conversation."),
    )
    return conversation


@require_GET
@login_required
def conversation_controls(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """The participant's panel on the conversation page (an htmx partial; empty for
    members who only oversee the conversation)."""
    conversation = get_object_or_404(conversations_for(request.user), pk=conversation_id)
    participant = takes_part_in(conversation, request.user)
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
    if deletion.status == RequestStatus.PENDING:
        return to_request_page(deletion)
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
    if deletion is not None and deletion.status != RequestStatus.PENDING:
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
    if deletion.status == RequestStatus.PENDING:
        messages.warning(request, held_notice(deletion))
    return deletion
