"""Exports over the API: ask for one of a request or a conversation, read its status,
download its file.

Thin: the selectors make what the caller cannot see a 404, ``retention.exports.service`` decides
who may export or download (403) and audits; the job writes the file.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.log import client_ip
from retention.access.predicates import requests_for
from retention.api.inputs import StrictSerializer
from retention.api.parsers import JSONParser
from retention.api.request_serializers import DetailSerializer
from retention.api.requests import CONFLICT, FIELD_ERRORS, FORBIDDEN, NOT_FOUND
from retention.exports import service as exports
from retention.exports.download import CONTENT_TYPES, file_response, open_download
from retention.models import Export, ExportFormat, ExportStatus
from retention.records.selectors import conversations_for


class ExportInputSerializer(StrictSerializer):
    format = serializers.ChoiceField(
        choices=ExportFormat.choices,
        error_messages={"invalid_choice": _("Choose jsonl, csv or html.")},
    )


class ExportSerializer(serializers.ModelSerializer):
    request = serializers.IntegerField(
        source="request_id", allow_null=True, help_text="The exported request, or null."
    )
    conversation = serializers.IntegerField(
        source="conversation_id", allow_null=True, help_text="The exported conversation, or null."
    )
    format = serializers.ChoiceField(choices=ExportFormat.choices)
    # A plain string in the schema, as elsewhere: another "status" enum would collide.
    status = serializers.CharField(help_text="queued, running, ready, failed or expired")
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    sha256 = serializers.CharField(
        help_text="Hex SHA-256 of the file as downloaded; empty until ready, kept once expired."
    )
    size = serializers.IntegerField(help_text="Bytes of the file.")
    messages = serializers.IntegerField(help_text="Messages in the file.")
    unreadable = serializers.IntegerField(
        help_text="Messages written with a null body: key destroyed or record unreadable."
    )
    max_message_id = serializers.IntegerField(help_text="No message after this id is in it.")
    download = serializers.SerializerMethodField(help_text="The file's URL once ready.")

    class Meta:
        model = Export
        fields = [
            "id",
            "request",
            "conversation",
            "format",
            "status",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "expired_at",
            "sha256",
            "size",
            "messages",
            "unreadable",
            "max_message_id",
            "error",
            "download",
        ]

    def get_download(self, export: Export) -> str | None:
        if export.status != ExportStatus.READY:
            return None
        url = reverse("api-export-download", args=[export.pk])
        return self.context["request"].build_absolute_uri(url)


GONE = OpenApiResponse(
    DetailSerializer, description="The export expired: its file was deleted, its key destroyed."
)
EXPORT_STARTED = {202: ExportSerializer, 400: FIELD_ERRORS, 403: FORBIDDEN, 404: NOT_FOUND}


def _start(request: Request, target) -> Response:
    form = ExportInputSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    export = exports.do_request_export(
        target, fmt=form.validated_data["format"], acting_user=request.user
    )
    data = ExportSerializer(export, context={"request": request}).data
    return Response(data, status=status.HTTP_202_ACCEPTED)


class RequestExportView(APIView):
    """Export a request's frozen scope, recycle-bin records included (requester,
    approvers, auditors and admins). The file is written in the background."""

    parser_classes = [JSONParser]

    @extend_schema(request=ExportInputSerializer, responses=EXPORT_STARTED, tags=["exports"])
    def post(self, request: Request, request_id: int) -> Response:
        return _start(request, get_object_or_404(requests_for(request.user), pk=request_id))


class ConversationExportView(APIView):
    """Export a conversation as the caller sees it (those who read its bodies, and
    auditors). The file is written in the background."""

    parser_classes = [JSONParser]

    @extend_schema(request=ExportInputSerializer, responses=EXPORT_STARTED, tags=["exports"])
    def post(self, request: Request, conversation_id: int) -> Response:
        conversation = get_object_or_404(conversations_for(request.user), pk=conversation_id)
        return _start(request, conversation)


def _visible_export(request: Request, export_id: int) -> Export:
    return get_object_or_404(exports.exports_for(request.user), pk=export_id)


class ExportDetailView(APIView):
    @extend_schema(
        responses={200: ExportSerializer, 403: FORBIDDEN, 404: NOT_FOUND}, tags=["exports"]
    )
    def get(self, request: Request, export_id: int) -> Response:
        """An export's status, checksum, size and counts, and its download link when ready."""
        export = _visible_export(request, export_id)
        if not exports.may_download(export, request.user):
            raise PermissionDenied(_("You may not see this export."))
        return Response(ExportSerializer(export, context={"request": request}).data)


class ExportDownloadView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "X-Content-SHA256",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                description="Hex SHA-256 of the file (as downloaded, decrypted), as recorded "
                "when it was written.",
            )
        ],
        responses={
            # The file as an attachment, in its format's media type (each with charset=utf-8).
            **{
                (200, media_type.split(";")[0]): OpenApiResponse(
                    OpenApiTypes.BINARY, description=f"A {fmt} export, as an attachment."
                )
                for fmt, media_type in CONTENT_TYPES.items()
            },
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: CONFLICT,
            410: GONE,
        },
        tags=["exports"],
    )
    def get(self, request: Request, export_id: int) -> StreamingHttpResponse:
        """The export's file, decrypted as it streams. Every download is audited; an
        expired export is 410 Gone."""
        export = _visible_export(request, export_id)
        chunks = open_download(export, request.user, ip_address=client_ip(request))
        return file_response(export, chunks)
