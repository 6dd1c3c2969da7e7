"""POST /api/v1/ingest/messages/: put a batch of chat records in (see docs/formats.md)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import (
    OpenApiExample,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.exceptions import ParseError
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import log as audit
from retention.api.parsers import IngestJSONParser
from retention.models import Message
from retention.records.ingest import INGEST_PERMISSION, do_ingest
from retention.records.ingest_errors import IngestError, flatten_errors, record_error
from retention.records.ingest_validation import (
    ConversationRecordSerializer,
    MessageRecordSerializer,
    StrictCharField,
    StrictSerializer,
)


class CanIngest(BasePermission):
    message = gettext_lazy("You may not ingest chat records.")

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.has_perm(INGEST_PERMISSION))


class RawField(serializers.Field):
    """Any JSON value, passed through as parsed."""

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="IngestRecord",
        serializers={
            "conversation": ConversationRecordSerializer,
            "message": MessageRecordSerializer,
        },
        resource_type_field_name="type",
        many=True,
    )
)
class RecordsField(serializers.ListField):
    """The records stay raw here: do_ingest validates each one and names it in errors."""

    def __init__(self, **kwargs: Any):
        super().__init__(child=RawField(), allow_empty=False, **kwargs)


class IngestBatchSerializer(StrictSerializer):
    """A batch: where the records come from, and the records."""

    source = StrictCharField(
        max_length=Message._meta.get_field("source").max_length,
        help_text='The system the records come from, e.g. "qianniu". Ids are unique per source.',
    )
    records = RecordsField(help_text="Conversation and message records, in any order.")


class IngestResultSerializer(serializers.Serializer):
    """What the batch stored."""

    conversations_created = serializers.IntegerField()
    messages_created = serializers.IntegerField()
    duplicates_skipped = serializers.IntegerField(
        help_text="Records already stored, or repeated in the batch; skipped."
    )
    conversation_ids = serializers.ListField(
        child=serializers.IntegerField(), help_text="Conversations created or given messages."
    )


class IngestErrorItemSerializer(serializers.Serializer):
    """One problem: which record, which field, what is wrong."""

    record = serializers.JSONField(
        allow_null=True, help_text="Index of the record in `records`; null for the whole body."
    )
    id = serializers.CharField(allow_null=True, help_text="The record's source id, if known.")
    field = serializers.CharField(allow_null=True, help_text='e.g. "body", "attachments[0].name"')
    message = serializers.CharField()


class IngestErrorSerializer(serializers.Serializer):
    """The batch was refused; nothing of it was written."""

    detail = serializers.CharField()
    errors = IngestErrorItemSerializer(many=True)


def _bad_request(detail: str, errors: list[dict[str, Any]]) -> Response:
    return Response({"detail": detail, "errors": errors}, status=status.HTTP_400_BAD_REQUEST)


EXAMPLE = {
    "source": "qianniu",
    "records": [
        {
            "type": "conversation",
            "id": "c-20240301-0001",
            "kind": "customer",
            "title": "买家 tb_88231 咨询",
            "department": "公司/华东区/杭州西湖店",
            "participants": ["xiaowang"],
            "customer": "tb_88231",
        },
        {
            "type": "message",
            "id": "m-1",
            "conversation": "c-20240301-0001",
            "sender": None,
            "sender_name": "tb_88231",
            "sent_at": "2024-03-01T09:30:00+08:00",
            "body": "亲，我的订单什么时候发货？",
        },
    ],
}


class IngestMessagesView(APIView):
    """Store a batch of conversations and messages: all of it, or on any error none of it.

    Records already stored for the source (same id) are skipped, so a batch may be sent
    again safely. 201 when something was created, 200 when everything was a duplicate.
    """

    permission_classes = [IsAuthenticated, CanIngest]
    # JSON only: records are nested objects that form encodings cannot carry.
    parser_classes = [IngestJSONParser]

    @extend_schema(
        request=IngestBatchSerializer,
        responses={
            201: IngestResultSerializer,
            200: IngestResultSerializer,
            400: IngestErrorSerializer,
        },
        examples=[OpenApiExample("Customer chat", value=EXAMPLE, request_only=True)],
        tags=["ingest"],
    )
    def post(self, request: Request) -> Response:
        try:
            body = request.data  # IngestJSONParser refuses an oversized body with 413
        except ParseError as exc:
            return _bad_request(str(exc.detail), [record_error(None, None, None, str(exc.detail))])
        form = IngestBatchSerializer(data=body)
        if not form.is_valid():
            errors = [
                record_error(None, None, name, message)
                for name, message in flatten_errors(form.errors)
            ]
            return _bad_request(_("The request body is not valid."), errors)
        try:
            result = do_ingest(
                actor=request.user,
                source=form.validated_data["source"],
                records=form.validated_data["records"],
                ip_address=audit.client_ip(request._request),
            )
        except IngestError as exc:
            return _bad_request(exc.summary, exc.errors)
        return Response(
            IngestResultSerializer(result.as_dict()).data,
            status=status.HTTP_201_CREATED if result.created_anything else status.HTTP_200_OK,
        )
