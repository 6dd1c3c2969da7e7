"""API of deletion governance: requests, holds, hides, notifications, policies, quota.

Thin: input serializers check shape, selectors decide what the caller sees (anything
else is a 404), and the actions decide everything else; ``errors.exception_handler``
turns their ValidationError / PermissionDenied / Conflict into 400 / 403 / 409.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from retention.access.predicates import holds_for, may_grant_quota, may_manage_holds, requests_for
from retention.access.second_factor import verified
from retention.api.inputs import (
    DecisionSerializer,
    HoldInputSerializer,
    HoldReleaseInputSerializer,
    NotificationsReadInputSerializer,
    QuotaGrantInputSerializer,
    RejectionSerializer,
    RequestInputSerializer,
    scope_data,
)
from retention.api.parsers import JSONParser
from retention.api.request_serializers import (
    DetailSerializer,
    HideResultSerializer,
    HoldSerializer,
    MarkedReadSerializer,
    NotificationSerializer,
    PoliciesSerializer,
    PreviewSerializer,
    QuotaGrantSerializer,
    RequestDetailSerializer,
    RequestSerializer,
)
from retention.api.views import check_filters
from retention.governance.decisions import do_approve_step, do_cancel_request, do_reject_request
from retention.governance.filing import do_file_request, do_restore_personal
from retention.governance.hides import do_hide_conversation, do_unhide_conversation
from retention.governance.policy_changes import do_grant_quota, do_update_policies
from retention.governance.protection import do_place_hold, do_release_hold
from retention.governance.scope import check_authority, compute_preview, resolve_scope
from retention.governance.selectors import notifications_for
from retention.models import ApprovalStep, Conversation, DeletionRequest, Hold, Member, Notification
from retention.notifications.notify import do_mark_notifications_read
from retention.policies import all_policies
from retention.records import selectors

IDEMPOTENCY_KEY_MAX = DeletionRequest._meta.get_field("idempotency_key").max_length

# Error bodies, for the schema.
FIELD_ERRORS = OpenApiResponse(
    OpenApiTypes.OBJECT, description='Bad input: {"field": ["message", ...], ...}'
)
FORBIDDEN = OpenApiResponse(DetailSerializer, description="The caller's role or scope forbids it.")
NOT_FOUND = OpenApiResponse(DetailSerializer, description="Missing, or outside the caller's view.")
CONFLICT = OpenApiResponse(DetailSerializer, description="Not in a state that allows this.")


def _render(request: Request, deletion_request: DeletionRequest, code: int = 200) -> Response:
    context = {"viewer": request.user}
    return Response(RequestDetailSerializer(deletion_request, context=context).data, status=code)


def _visible_request(request: Request, request_id: int) -> DeletionRequest:
    return get_object_or_404(requests_for(request.user), pk=request_id)


def visible_among(queryset: QuerySet, ids: list[int], field: str) -> list[Model]:
    """The objects with these ids among those the caller may see; unknown and invisible
    ids are refused alike, naming the field."""
    found = list(queryset.filter(pk__in=ids))
    if len(found) != len(set(ids)):
        raise ValidationError({field: [_("One or more ids are unknown.")]})
    return found


# --- requests ----------------------------------------------------------------------------


class RequestListView(generics.ListAPIView):
    """Deletion requests the caller may see, newest first; POST files one."""

    parser_classes = [JSONParser]
    serializer_class = RequestSerializer
    queryset = DeletionRequest.objects.none()  # for the schema; requests use get_queryset
    filterset_fields = ["status", "method"]

    def get_queryset(self) -> QuerySet[DeletionRequest]:
        check_filters(self.request.query_params, self.filterset_fields)
        steps = ApprovalStep.objects.select_related("approver")
        return requests_for(self.request.user).prefetch_related(Prefetch("steps", steps))

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "viewer": self.request.user}

    @extend_schema(responses={200: RequestSerializer(many=True)}, tags=["requests"])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Deletion requests the caller may see, newest first (without timelines)."""
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=RequestInputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description=(
                    f"Up to {IDEMPOTENCY_KEY_MAX} characters. Sending the same key again "
                    "with the same body returns the request it filed (200) instead of filing "
                    "another; with a different body it is refused (409)."
                ),
            )
        ],
        responses={
            201: RequestDetailSerializer,
            200: OpenApiResponse(RequestDetailSerializer, description="An Idempotency-Key replay."),
            400: FIELD_ERRORS,
            403: FORBIDDEN,
            409: OpenApiResponse(
                DetailSerializer,
                description="The Idempotency-Key was already used for a different request.",
            ),
        },
        tags=["requests"],
    )
    def post(self, request: Request) -> Response:
        """File a deletion request; a personal deletion takes effect at once."""
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > IDEMPOTENCY_KEY_MAX:
            message = _("Use at most %(n)d characters.") % {"n": IDEMPOTENCY_KEY_MAX}
            raise ValidationError({"Idempotency-Key": [message]})
        form = RequestInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        scope = resolve_scope(data["method"], scope_data(data), request.user)
        filed, created = do_file_request(
            requester=request.user, scope=scope, reason=data["reason"], idempotency_key=key
        )
        return _render(request, filed, status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class RequestPreviewView(APIView):
    """What a request with this body would delete and leave out; nothing is filed."""

    parser_classes = [JSONParser]

    @extend_schema(
        request=RequestInputSerializer,
        responses={200: PreviewSerializer, 400: FIELD_ERRORS, 403: FORBIDDEN},
        tags=["requests"],
    )
    def post(self, request: Request) -> Response:
        form = RequestInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        scope = resolve_scope(data["method"], scope_data(data), request.user)
        check_authority(request.user, scope)
        return Response(compute_preview(scope, requester=request.user))


class RequestDetailView(APIView):
    @extend_schema(responses={200: RequestDetailSerializer, 404: NOT_FOUND}, tags=["requests"])
    def get(self, request: Request, request_id: int) -> Response:
        return _render(request, _visible_request(request, request_id))


DECISION_RESPONSES = {
    200: RequestDetailSerializer,
    400: FIELD_ERRORS,
    403: FORBIDDEN,
    404: NOT_FOUND,
    409: CONFLICT,
}
STEP_DECISION_RESPONSES = {
    **DECISION_RESPONSES,
    409: OpenApiResponse(
        DetailSerializer,
        description=(
            "Not waiting for a decision, or waiting for another step than the body's `step`; "
            "nothing was changed."
        ),
    ),
}


class RequestApproveView(APIView):
    """Approve the request's current step; the last approval schedules the run. Send the
    step's order as ``step`` so that a stale or repeated click cannot approve the next one."""

    parser_classes = [JSONParser]

    @extend_schema(request=DecisionSerializer, responses=STEP_DECISION_RESPONSES, tags=["requests"])
    def post(self, request: Request, request_id: int) -> Response:
        target = _visible_request(request, request_id)
        form = DecisionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        do_approve_step(
            target,
            acting_user=request.user,
            verified_second_factor=verified(request),
            step_order=data["step"],
            comment=data["comment"],
        )
        target.refresh_from_db()
        return _render(request, target)


class RequestRejectView(APIView):
    """Reject the request at its current step (``step``: as for approve); the reason goes
    to the requester."""

    parser_classes = [JSONParser]

    @extend_schema(
        request=RejectionSerializer, responses=STEP_DECISION_RESPONSES, tags=["requests"]
    )
    def post(self, request: Request, request_id: int) -> Response:
        target = _visible_request(request, request_id)
        form = RejectionSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        do_reject_request(
            target,
            acting_user=request.user,
            verified_second_factor=verified(request),
            reason=data["reason"],
            step_order=data["step"],
        )
        target.refresh_from_db()
        return _render(request, target)


class RequestCancelView(APIView):
    """The requester (or an admin) withdraws a request until its run starts."""

    parser_classes = [JSONParser]

    @extend_schema(request=None, responses=DECISION_RESPONSES, tags=["requests"])
    def post(self, request: Request, request_id: int) -> Response:
        target = _visible_request(request, request_id)
        do_cancel_request(target, acting_user=request.user)
        target.refresh_from_db()
        return _render(request, target)


class RequestRestoreView(APIView):
    """Bring one's own personal deletion back, within the recycle-bin period."""

    parser_classes = [JSONParser]

    @extend_schema(request=None, responses=DECISION_RESPONSES, tags=["requests"])
    def post(self, request: Request, request_id: int) -> Response:
        target = _visible_request(request, request_id)
        do_restore_personal(target, acting_user=request.user)
        target.refresh_from_db()
        return _render(request, target)


# --- holds -------------------------------------------------------------------------------


class HoldListView(generics.ListAPIView):
    """Holds the caller may see, newest first; POST places one (security officers)."""

    parser_classes = [JSONParser]
    serializer_class = HoldSerializer
    queryset = Hold.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self) -> QuerySet[Hold]:
        return holds_for(self.request.user)

    @extend_schema(responses={200: HoldSerializer(many=True)}, tags=["holds"])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Holds the caller may see, newest first."""
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=HoldInputSerializer,
        responses={201: HoldSerializer, 400: FIELD_ERRORS, 403: FORBIDDEN},
        tags=["holds"],
    )
    def post(self, request: Request) -> Response:
        """Place a hold on conversations and/or department subtrees (security officers)."""
        if not may_manage_holds(request.user):
            # Before any lookup, so the ids in the body tell a refused member nothing.
            raise PermissionDenied(_("Only security officers place holds."))
        form = HoldInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        viewer = request.user
        conversations = selectors.conversations_for(viewer)
        hold = do_place_hold(
            acting_user=viewer,
            verified_second_factor=verified(request),
            kind=data["kind"],
            reason=data["reason"],
            conversations=visible_among(
                conversations, data.get("conversations", []), "conversations"
            ),
            departments=visible_among(
                selectors.departments_for(viewer), data.get("departments", []), "departments"
            ),
        )
        return Response(HoldSerializer(hold).data, status=status.HTTP_201_CREATED)


class HoldReleaseView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        request=HoldReleaseInputSerializer,
        responses={
            200: HoldSerializer,
            400: FIELD_ERRORS,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: CONFLICT,
        },
        tags=["holds"],
    )
    def post(self, request: Request, hold_id: int) -> Response:
        hold = get_object_or_404(holds_for(request.user), pk=hold_id)
        form = HoldReleaseInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        released = do_release_hold(
            hold,
            acting_user=request.user,
            verified_second_factor=verified(request),
            reason=form.validated_data["reason"],
        )
        return Response(HoldSerializer(released).data)


# --- hide --------------------------------------------------------------------------------


def _visible_conversation(request: Request, conversation_id: int) -> Conversation:
    return get_object_or_404(selectors.conversations_for(request.user), pk=conversation_id)


HIDE_RESPONSES = {200: HideResultSerializer, 403: FORBIDDEN, 404: NOT_FOUND}


class ConversationHideView(APIView):
    """Fold a conversation away for oneself; nothing is deleted."""

    parser_classes = [JSONParser]

    @extend_schema(request=None, responses=HIDE_RESPONSES, tags=["conversations"])
    def post(self, request: Request, conversation_id: int) -> Response:
        conversation = _visible_conversation(request, conversation_id)
        changed = do_hide_conversation(conversation, acting_user=request.user)
        return Response({"conversation": conversation.pk, "hidden": True, "changed": changed})


class ConversationUnhideView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=None, responses=HIDE_RESPONSES, tags=["conversations"])
    def post(self, request: Request, conversation_id: int) -> Response:
        conversation = _visible_conversation(request, conversation_id)
        changed = do_unhide_conversation(conversation, acting_user=request.user)
        return Response({"conversation": conversation.pk, "hidden": False, "changed": changed})


# --- notifications -----------------------------------------------------------------------


class NotificationListView(generics.ListAPIView):
    """The caller's notifications, newest first, in the caller's language."""

    serializer_class = NotificationSerializer
    queryset = Notification.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self) -> QuerySet[Notification]:
        return notifications_for(self.request.user)

    @extend_schema(responses={200: NotificationSerializer(many=True)}, tags=["notifications"])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class NotificationReadView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(
        request=NotificationsReadInputSerializer,
        responses={200: MarkedReadSerializer, 400: FIELD_ERRORS},
        tags=["notifications"],
    )
    def post(self, request: Request) -> Response:
        form = NotificationsReadInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        marked = do_mark_notifications_read(request.user, form.validated_data.get("ids"))
        return Response({"marked": marked})


# --- policies and quota ------------------------------------------------------------------


class PolicyView(APIView):
    """Every policy and its value: any member reads them, admins change them."""

    parser_classes = [JSONParser]

    @extend_schema(responses={200: PoliciesSerializer}, tags=["policies"])
    def get(self, request: Request) -> Response:
        return Response(all_policies())

    @extend_schema(
        request=PoliciesSerializer,
        responses={200: PoliciesSerializer, 400: FIELD_ERRORS, 403: FORBIDDEN},
        tags=["policies"],
    )
    def patch(self, request: Request) -> Response:
        return Response(
            do_update_policies(
                actor=request.user,
                changes=request.data,
                verified_second_factor=verified(request),
            )
        )


class QuotaGrantView(APIView):
    """Admins grant a member extra personal deletions for the current month."""

    parser_classes = [JSONParser]

    @extend_schema(
        request=QuotaGrantInputSerializer,
        responses={201: QuotaGrantSerializer, 400: FIELD_ERRORS, 403: FORBIDDEN},
        tags=["policies"],
    )
    def post(self, request: Request) -> Response:
        if not may_grant_quota(request.user):
            # Before any lookup, so a non-admin cannot probe which usernames exist.
            raise PermissionDenied(_("Only an admin may grant more personal deletions."))
        form = QuotaGrantInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        member = Member.objects.filter(username=data["username"]).first()
        if member is None:
            raise ValidationError({"username": [_("No member has this username.")]})
        grant = do_grant_quota(
            actor=request.user,
            member=member,
            extra=data["extra"],
            reason=data["reason"],
            verified_second_factor=verified(request),
        )
        return Response(QuotaGrantSerializer(grant).data, status=status.HTTP_201_CREATED)
