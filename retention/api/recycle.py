"""The recycle bin over the API: what batch deletions took, and restoring it."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from retention.access.second_factor import verified
from retention.api.inputs import StrictSerializer, id_list
from retention.api.parsers import JSONParser
from retention.api.requests import CONFLICT, FIELD_ERRORS, FORBIDDEN, NOT_FOUND
from retention.models import DeletionRequest
from retention.wipes.recycle import bin_items, bin_requests_for, do_restore_from_bin

# Conversations listed with each request (the request's page lists them all).
ITEMS_PER_ENTRY = 100


class BinConversationSerializer(serializers.Serializer):
    conversation = serializers.IntegerField(source="conversation_id")
    title = serializers.CharField(source="conversation__title")
    department = serializers.CharField(source="conversation__department__name")
    messages = serializers.IntegerField()
    bytes = serializers.IntegerField()


class BinEntrySerializer(serializers.ModelSerializer):
    """One request's records in the recycle bin."""

    request = serializers.IntegerField(source="pk")
    requester = serializers.SlugRelatedField(slug_field="username", read_only=True)
    messages = serializers.IntegerField(source="bin_messages")
    conversations = serializers.IntegerField(source="bin_conversations")
    bytes = serializers.IntegerField(source="bin_bytes")
    deleted_at = serializers.DateTimeField(source="binned_at")
    purge_after = serializers.DateTimeField(help_text="Purged for good after this moment.")
    items = serializers.SerializerMethodField(
        help_text=f"The first {ITEMS_PER_ENTRY} conversations the caller may see, by id; "
        "`conversations` counts them all."
    )

    class Meta:
        model = DeletionRequest
        fields = [
            "request",
            "requester",
            "reason",
            "messages",
            "conversations",
            "bytes",
            "deleted_at",
            "purge_after",
            "items",
        ]

    @extend_schema_field(BinConversationSerializer(many=True))
    def get_items(self, entry: DeletionRequest) -> list[dict[str, Any]]:
        return BinConversationSerializer(self.context["items"][entry.pk], many=True).data


class RestoreInputSerializer(StrictSerializer):
    conversations = id_list(
        allow_empty=False,
        help_text="Restore only these conversations (at most 1000); leave out to restore "
        "the whole request.",
    )


class RestoreResultSerializer(serializers.Serializer):
    messages = serializers.IntegerField()
    conversations = serializers.IntegerField()
    whole_request = serializers.BooleanField()
    as_job = serializers.BooleanField(help_text="Large restores finish in the background.")


class RecycleBinListView(generics.ListAPIView):
    """Requests with records in the recycle bin that the caller may see (managers: their
    subtree; admins, security officers and auditors: all), soonest purge first."""

    serializer_class = BinEntrySerializer
    queryset = DeletionRequest.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self) -> QuerySet[DeletionRequest]:
        return bin_requests_for(self.request.user)

    @extend_schema(tags=["recycle bin"])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        entries = self.paginate_queryset(self.get_queryset())
        items = bin_items(entries, request.user, each=ITEMS_PER_ENTRY)
        context = {**self.get_serializer_context(), "items": items}
        page = BinEntrySerializer(entries, many=True, context=context)
        return self.get_paginated_response(page.data)


class RecycleBinRestoreView(APIView):
    """Bring a batch deletion back, whole or for chosen conversations (managers within
    their subtree, admins anywhere)."""

    parser_classes = [JSONParser]

    @extend_schema(
        request=RestoreInputSerializer,
        responses={
            200: RestoreResultSerializer,
            400: FIELD_ERRORS,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: CONFLICT,
        },
        tags=["recycle bin"],
    )
    def post(self, request: Request, request_id: int) -> Response:
        entry = get_object_or_404(bin_requests_for(request.user), pk=request_id)
        form = RestoreInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        outcome = do_restore_from_bin(
            entry,
            acting_user=request.user,
            verified_second_factor=verified(request),
            conversation_ids=form.validated_data.get("conversations"),
        )
        return Response(RestoreResultSerializer(outcome).data)
