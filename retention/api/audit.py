"""The audit log over the API: the explorer's events, chain verification and the daily
digests. Auditors and admins only; everyone else gets 403.

Reading is all it offers, apart from asking for a verification run (which only reads the
chain and records that it did).
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.events import EventType
from audit.log import client_ip
from audit.models import AuditEvent, ChainDigest, ChainVerification
from audit.selectors import MAX_PAGE_SIZE, PAGE_SIZE, filtered_events
from audit.verification import latest_verification, pending_verification
from retention.access.predicates import may_read_audit_log
from retention.api.pagination import _whole_number
from retention.api.requests import FIELD_ERRORS, FORBIDDEN
from retention.api.views import check_filters
from retention.dates import EARLIEST_DAY, LATEST_DAY, YEAR_PREFIX_PATTERN
from retention.records.filters import AuditFilterForm
from retention.reports.links import object_link
from retention.reports.verification_runs import do_request_verification


class ReadsAuditLog(BasePermission):
    message = _("Only auditors and admins read the audit log.")

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and may_read_audit_log(user))


class EventCursorPagination(CursorPagination):
    """Newest first by id: a cursor is a position, so pages stay stable while events are
    appended, and a deep page costs what the first one does."""

    ordering = "-id"
    page_size = PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def decode_cursor(self, request):
        # DRF answers a cursor it cannot read with a 404; it is bad input, like a bad filter.
        try:
            return super().decode_cursor(request)
        except NotFound as exc:
            raise ValidationError(
                {"cursor": [_("That page link is not valid; start from the newest.")]}
            ) from exc

    def get_page_size(self, request) -> int:
        # A bad page_size is a 400 that says the bound, as on every other list.
        size = _whole_number(request.query_params, "page_size", maximum=self.max_page_size)
        return self.page_size if size is None else size

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == "page_size":
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}
        return parameters


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name", help_text="The actor's user name then.")
    action = serializers.IntegerField(source="event_type")
    action_label = serializers.CharField(source="label")
    object_type = serializers.CharField(source="target_type")
    object_id = serializers.CharField(source="target_id")
    link = serializers.SerializerMethodField(
        help_text="The page of the request, conversation or rule the event is about."
    )

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "actor_id",
            "action",
            "action_label",
            "object_type",
            "object_id",
            "department_id",
            "ip_address",
            "details",
            "prev_hash",
            "hash",
            "link",
        ]

    def get_link(self, event: AuditEvent) -> str | None:
        return object_link(event)


EVENT_FILTERS = [
    OpenApiParameter(
        "since",
        OpenApiTypes.DATETIME,
        pattern=YEAR_PREFIX_PATTERN,
        description=f"From this moment on ({EARLIEST_DAY} to {LATEST_DAY})",
    ),
    OpenApiParameter(
        "until",
        OpenApiTypes.DATETIME,
        pattern=YEAR_PREFIX_PATTERN,
        description=f"Before this moment ({EARLIEST_DAY} to {LATEST_DAY})",
    ),
    OpenApiParameter("actor", OpenApiTypes.STR, description="The actor's user name"),
    OpenApiParameter("action", OpenApiTypes.INT, enum=sorted(EventType.values)),
    OpenApiParameter("department", OpenApiTypes.INT),
    OpenApiParameter("include_subdepartments", OpenApiTypes.BOOL, description="Default true"),
    OpenApiParameter("request", OpenApiTypes.INT, description="Events of a deletion request"),
    OpenApiParameter("object_type", OpenApiTypes.STR, description="e.g. retention.conversation"),
    OpenApiParameter("object_id", OpenApiTypes.STR, description="Needs object_type"),
    OpenApiParameter("q", OpenApiTypes.STR, description="Text anywhere in the details"),
]


class AuditEventListView(generics.ListAPIView):
    """Audit events, newest first, with the explorer's filters and a cursor."""

    permission_classes = [IsAuthenticated, ReadsAuditLog]
    serializer_class = AuditEventSerializer
    pagination_class = EventCursorPagination
    filter_backends: list = []
    queryset = AuditEvent.objects.none()  # for the schema; requests use get_queryset

    @extend_schema(
        parameters=EVENT_FILTERS,
        responses={200: AuditEventSerializer(many=True), 400: FIELD_ERRORS, 403: FORBIDDEN},
        tags=["audit"],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        check_filters(
            self.request.query_params,
            [*(p.name for p in EVENT_FILTERS if p.name != "q"), "cursor"],
            booleans=("include_subdepartments",),
        )
        params = self.request.query_params.copy()
        for name in ("cursor", "page_size"):
            params.pop(name, None)
        form = AuditFilterForm(params, viewer=self.request.user)
        if not form.is_valid():
            raise ValidationError(form.errors.get_json_data())
        return filtered_events(form.event_filter())


class VerificationSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="Null for the scheduled runs.",
    )
    intact_up_to = serializers.IntegerField(
        source="last_good_id",
        allow_null=True,
        help_text="The last event whose link and hash held (null until a run has checked).",
    )

    class Meta:
        model = ChainVerification
        fields = [
            "id",
            "status",
            "requested_by",
            "requested_at",
            "started_at",
            "finished_at",
            "up_to_id",
            "events_checked",
            "digests_checked",
            "intact_up_to",
            "broken_id",
            "reason",
            "error",
        ]


class VerifyStatusSerializer(serializers.Serializer):
    latest = VerificationSerializer(allow_null=True, help_text="The newest finished run.")
    pending = VerificationSerializer(allow_null=True, help_text="A run queued or running.")


class AuditVerifyView(APIView):
    """GET: the latest verification of the chain. POST: run one now (a job); while one is
    queued or running, that one is returned."""

    permission_classes = [IsAuthenticated, ReadsAuditLog]

    @extend_schema(responses={200: VerifyStatusSerializer, 403: FORBIDDEN}, tags=["audit"])
    def get(self, request: Request) -> Response:
        return Response(
            VerifyStatusSerializer(
                {"latest": latest_verification(), "pending": pending_verification()}
            ).data
        )

    @extend_schema(
        request=None, responses={202: VerificationSerializer, 403: FORBIDDEN}, tags=["audit"]
    )
    def post(self, request: Request) -> Response:
        run = do_request_verification(
            acting_user=request.user, ip_address=client_ip(request._request)
        )
        return Response(VerificationSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class DigestSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChainDigest
        fields = ["day", "head_event_id", "head_hash", "recorded_at"]


class ChainDigestListView(generics.ListAPIView):
    """The head of the chain at the end of each finished day, newest first: keep copies,
    then check them with ``manage.py audit_verify --digest EVENT_ID:HASH``."""

    permission_classes = [IsAuthenticated, ReadsAuditLog]
    serializer_class = DigestSerializer
    filter_backends: list = []
    queryset = ChainDigest.objects.order_by("-day")

    @extend_schema(tags=["audit"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
