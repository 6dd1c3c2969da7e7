"""Compliance reviews over the API: auditors and admins read them; auditors sign them off
or flag them with a finding."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import ComplianceReview, ReviewStatus
from retention.access.predicates import may_read_reviews
from retention.api.inputs import StrictSerializer
from retention.api.parsers import JSONParser
from retention.api.requests import CONFLICT, FIELD_ERRORS, FORBIDDEN, NOT_FOUND
from retention.api.views import check_filters
from retention.reports import reviews


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="The auditor who decided it; null while it is open.",
    )
    overdue = serializers.SerializerMethodField()
    summary = serializers.DictField(
        read_only=True,
        help_text="What was deleted (counts, departments, id range), the approvals, the "
        "exports made and the holds that kept records.",
    )

    class Meta:
        model = ComplianceReview
        fields = [
            "id",
            "kind",
            "request",
            "period",
            "status",
            "opened_at",
            "overdue",
            "summary",
            "reviewer",
            "reviewed_at",
            "finding",
        ]
        read_only_fields = fields

    def get_overdue(self, review: ComplianceReview) -> bool:
        return reviews.is_overdue(review, self.context["due_before"])


class BinReviewInputSerializer(StrictSerializer):
    quarter = serializers.CharField(max_length=7, help_text="Like 2026-Q4.")


class DecisionInputSerializer(StrictSerializer):
    finding = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=reviews.FINDING_MAX_LENGTH,
        help_text="Flag: what is wrong (required). Sign-off: an optional note.",
    )


def _readable(request: Request) -> QuerySet[ComplianceReview]:
    # Checked before any lookup: a refused member learns nothing of which reviews exist.
    if not may_read_reviews(request.user):
        raise exceptions.PermissionDenied("Only auditors and admins read compliance reviews.")
    return reviews.reviews_for(request.user)


def _render(review: ComplianceReview) -> Response:
    return Response(ReviewSerializer(review, context={"due_before": reviews.due_before()}).data)


class ReviewListView(generics.ListAPIView):
    """Compliance reviews, oldest first; ``status`` and ``overdue`` narrow the list."""

    serializer_class = ReviewSerializer
    queryset = ComplianceReview.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self) -> QuerySet[ComplianceReview]:
        chosen = _readable(self.request)
        check_filters(self.request.query_params, ["status", "overdue"], booleans=("overdue",))
        status = self.request.query_params.get("status")
        if status is not None:
            if status not in ReviewStatus.values:
                raise exceptions.ValidationError(
                    {"status": [f"Choose one of: {', '.join(ReviewStatus.values)}."]}
                )
            chosen = chosen.filter(status=status)
        if self.request.query_params.get("overdue") == "true":
            chosen = chosen.filter(reviews.overdue_q())
        return chosen.order_by("opened_at", "pk")

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "due_before": reviews.due_before()}

    @extend_schema(
        parameters=[
            OpenApiParameter("status", enum=ReviewStatus.values),
            OpenApiParameter("overdue", bool, description="Only open reviews past their due."),
        ],
        responses={200: ReviewSerializer(many=True), 400: FIELD_ERRORS, 403: FORBIDDEN},
        tags=["compliance reviews"],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class ReviewDetailView(APIView):
    @extend_schema(
        responses={200: ReviewSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
        tags=["compliance reviews"],
    )
    def get(self, request: Request, review_id: int) -> Response:
        return _render(get_object_or_404(_readable(request), pk=review_id))


class ReviewDecisionView(APIView):
    """An auditor signs the review off (optionally with a note), or flags it with a
    finding (the admins are told). A review is decided once."""

    parser_classes = [JSONParser]
    decision = ReviewStatus.SIGNED_OFF  # each route says which

    @extend_schema(
        request=DecisionInputSerializer,
        responses={
            200: ReviewSerializer,
            400: FIELD_ERRORS,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: CONFLICT,
        },
        tags=["compliance reviews"],
    )
    def post(self, request: Request, review_id: int) -> Response:
        review = get_object_or_404(_readable(request), pk=review_id)
        form = DecisionInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        decided = reviews.do_decide_review(
            review,
            acting_user=request.user,
            decision=self.decision,
            finding=form.validated_data.get("finding", ""),
        )
        return _render(decided)


class RecycleBinReviewView(APIView):
    """An auditor opens (or gets back) the review of a quarter's recycle bin: what entered,
    was restored, was purged and when, and anything purged early or kept too long."""

    parser_classes = [JSONParser]

    @extend_schema(
        request=BinReviewInputSerializer,
        responses={200: ReviewSerializer, 400: FIELD_ERRORS, 403: FORBIDDEN},
        tags=["compliance reviews"],
    )
    def post(self, request: Request) -> Response:
        _readable(request)
        form = BinReviewInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        review = reviews.do_open_recycle_bin_review(
            acting_user=request.user, quarter=form.validated_data["quarter"]
        )
        return _render(review)
