"""Read API for the store and sessions. Thin: selectors decide what the caller sees."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from retention.access import second_factor
from retention.access.activity import do_record_failed_sign_in
from retention.access.tokens import do_issue_token, do_revoke_token, tokens_for
from retention.api.parsers import FormParser, JSONParser, MultiPartParser
from retention.api.request_serializers import DetailSerializer
from retention.api.serializers import (
    ApiTokenSerializer,
    ConversationDetailSerializer,
    ConversationSerializer,
    DepartmentSerializer,
    MeSerializer,
    MessageSerializer,
    TokenRequestSerializer,
    TokenSerializer,
)
from retention.dates import DAY_PATTERN, EARLIEST_DAY, LATEST_DAY
from retention.models import ApiToken, Conversation, DataKey, Department, Message
from retention.records import selectors
from retention.records.crypto import KeyDestroyedError
from retention.records.filters import ConversationFilterForm


@extend_schema(exclude=True)
class NotFoundView(APIView):
    """A path under the API that names no operation (or an id that is not a number): the
    same JSON 404 as a missing object, whatever the method. An API view like the others,
    so a browser's session must send its CSRF token here too (a token client need not),
    and the body is never read."""

    permission_classes = [AllowAny]
    throttle_classes: list = []

    def http_method_not_allowed(self, request: Request, *args, **kwargs) -> Response:
        raise NotFound

    def options(self, request: Request, *args, **kwargs) -> Response:
        raise NotFound


class TokenThrottle(AnonRateThrottle):
    scope = "token"


class ObtainTokenView(APIView):
    """Exchange a username and password (and, for a member with an authenticator, its
    current code as ``otp``) for a new API token; audited either way. Each call issues a
    new named token; list and revoke them under /api/v1/auth/tokens/.

    Only a token issued with a valid ``otp`` may take the sensitive actions (approve or
    reject, holds, policies, quota, restore, retention-rule approval) while the
    ``require_second_factor`` policy is on. A member who has an authenticator must send
    its code to get any token at all, as when signing in in the browser.

    Failures count toward the sign-in lockout, as in the browser: past the limit the
    answer is 429 ``{"detail": ...}`` (retention/access/signin.py), even for the right password."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [TokenThrottle]
    parser_classes = [JSONParser, FormParser, MultiPartParser]

    @extend_schema(
        request=TokenRequestSerializer,
        responses={
            200: TokenSerializer,
            400: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description='A field missing, or "Username or password is not correct."',
            ),
            429: OpenApiResponse(
                DetailSerializer, description="Too many attempts from this address; wait."
            ),
        },
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        form = TokenRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        member = authenticate(
            request._request, username=data["username"], password=data["password"]
        )
        if member is None:
            do_record_failed_sign_in(username=data["username"], request=request._request, via="api")
            return Response(
                {"detail": _("Username or password is not correct.")},
                status=status.HTTP_400_BAD_REQUEST,
            )
        code = data.get("otp", "")
        if code:
            # Raises ValidationError (400 {"otp": [...]}), audited, on a wrong code.
            try:
                second_factor.check_code(member, code, request=request._request, via="api")
            except DjangoValidationError as exc:
                raise ValidationError({"otp": exc.messages}) from exc
        elif second_factor.has_device(member):
            raise ValidationError(
                {"otp": [_("This member has an authenticator: send its current code as otp.")]}
            )
        issued = do_issue_token(
            member=member,
            name=data.get("name", ""),
            second_factor_verified=bool(code),
            request=request._request,
            via="api",
        )
        return Response(
            {
                "token": issued.key,
                "id": issued.token.pk,
                "name": issued.token.name,
                "second_factor_verified": issued.token.second_factor_verified,
            }
        )


class TokenListView(generics.ListAPIView):
    """The caller's live API tokens (an admin's: everyone's; ``?member=<id>`` narrows it).
    Keys are never shown again: only their first characters."""

    serializer_class = ApiTokenSerializer
    queryset = ApiToken.objects.none()  # for the schema; requests use get_queryset

    @extend_schema(
        parameters=[OpenApiParameter("member", OpenApiTypes.INT, description="admins only")],
        tags=["auth"],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        check_filters(self.request.query_params, ["member"])
        qs = tokens_for(self.request.user).filter(revoked_at__isnull=True)
        member = self.request.query_params.get("member")
        if member is not None:
            if not member.isdigit():
                raise ValidationError({"member": [_("Give a member's id.")]})
            qs = qs.filter(member_id=int(member))
        return qs.order_by("-created_at", "-id")


class TokenRevokeView(APIView):
    """Revoke a token at once: its owner or an admin. Anyone else's token is a 404."""

    @extend_schema(
        request=None,
        responses={200: ApiTokenSerializer, 404: None, 409: None},
        tags=["auth"],
    )
    def post(self, request: Request, token_id: int) -> Response:
        token = get_object_or_404(tokens_for(request.user), pk=token_id)
        revoked = do_revoke_token(token, acting_user=request.user, request=request._request)
        return Response(ApiTokenSerializer(revoked).data)


class MeView(APIView):
    @extend_schema(responses=MeSerializer)
    def get(self, request: Request) -> Response:
        return Response(MeSerializer(request.user).data)


class DepartmentListView(generics.ListAPIView):
    """The part of the department tree the caller may see."""

    serializer_class = DepartmentSerializer
    queryset = Department.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):
        return selectors.departments_for(self.request.user).order_by("path")


DAYS = f"A day from {EARLIEST_DAY} to {LATEST_DAY}."
CONVERSATION_FILTERS = [
    OpenApiParameter("department", OpenApiTypes.INT),
    OpenApiParameter("include_subdepartments", OpenApiTypes.BOOL),
    OpenApiParameter("kind", OpenApiTypes.STR, enum=["direct", "group", "customer"]),
    OpenApiParameter("since", OpenApiTypes.DATE, pattern=DAY_PATTERN, description=DAYS),
    OpenApiParameter("until", OpenApiTypes.DATE, pattern=DAY_PATTERN, description=DAYS),
    OpenApiParameter("sensitivity", OpenApiTypes.INT, enum=[0, 1, 2]),
    OpenApiParameter("q", OpenApiTypes.STR, description="Title, customer or participant"),
]


def check_filters(params, names: list[str], *, booleans: tuple[str, ...] = ()) -> None:
    """Filters sent empty, twice, or as a boolean other than true/false are a mistake in a
    script (the browser form is lenient; the API is not a form): say so, rather than quietly
    not filtering."""
    errors = {}
    for name in names:
        values = params.getlist(name)
        if not values:
            continue
        if len(values) > 1:
            errors[name] = [_("Give this parameter once.")]
        elif not values[0].strip():
            errors[name] = [_("Leave the parameter out, or give it a value.")]
        elif name in booleans and values[0] not in ("true", "false"):
            errors[name] = [_("Give true or false.")]
    if errors:
        raise ValidationError(errors)


class ConversationListView(generics.ListAPIView):
    serializer_class = ConversationSerializer
    queryset = Conversation.objects.none()  # for the schema; requests use get_queryset

    @extend_schema(parameters=CONVERSATION_FILTERS)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        check_filters(
            self.request.query_params,
            [p.name for p in CONVERSATION_FILTERS if p.name != "q"],
            booleans=("include_subdepartments",),
        )
        form = ConversationFilterForm(self.request.query_params, viewer=self.request.user)
        if not form.is_valid():
            # The API's error shape: {"field": ["message", ...]}.
            raise ValidationError({name: list(errors) for name, errors in form.errors.items()})
        return selectors.conversation_list(self.request.user, **form.selector_kwargs())


def visible_conversation(request: Request, conversation_id: int) -> Conversation:
    """The conversation if the caller may see it; a 404 otherwise, the same as a missing one."""
    return get_object_or_404(
        selectors.conversations_for(request.user).select_related("department"),
        pk=conversation_id,
    )


class ConversationDetailView(APIView):
    @extend_schema(responses=ConversationDetailSerializer)
    def get(self, request: Request, conversation_id: int) -> Response:
        conversation = visible_conversation(request, conversation_id)
        conversation.participant_count = conversation.participant_set.count()
        conversation.message_count = conversation.messages.count()
        conversation.can_read_bodies = selectors.can_read_bodies(request.user, conversation)
        conversation.key_destroyed = not DataKey.objects.filter(
            conversation=conversation, wrapped_key__isnull=False
        ).exists()
        return Response(ConversationDetailSerializer(conversation).data)


class ConversationMessagesView(generics.ListAPIView):
    """Messages oldest first; ``body`` is null where the caller may not read it."""

    serializer_class = MessageSerializer
    queryset = Message.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):
        self.conversation = visible_conversation(self.request, self.kwargs["conversation_id"])
        return selectors.messages_of(self.conversation, self.request.user)

    def get_serializer(self, *args, **kwargs):
        bodies = self._bodies(args[0]) if args else {}  # no args: schema generation
        kwargs["context"] = {**self.get_serializer_context(), "bodies": bodies}
        return MessageSerializer(*args, **kwargs)

    def _bodies(self, messages) -> dict[int, str]:
        if not selectors.can_read_bodies(self.request.user, self.conversation):
            return {}
        try:
            return selectors.readable_bodies(self.conversation, messages)
        except KeyDestroyedError:
            return {}
