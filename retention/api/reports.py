"""The quarterly audit report and the annual assessment over the API (auditors, admins)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from retention.access.predicates import require_report_reader
from retention.api.requests import FIELD_ERRORS, FORBIDDEN
from retention.reports import periods
from retention.reports.annual import annual_assessment
from retention.reports.periods import Quarter
from retention.reports.quarterly import quarterly_report

REPORT = OpenApiResponse(
    OpenApiTypes.OBJECT, description="The report, as docs/reports.md describes it."
)


class QuarterlyReportView(APIView):
    """A quarter's audit report, e.g. ``2026-Q4``: the same numbers as the page."""

    @extend_schema(responses={200: REPORT, 400: FIELD_ERRORS, 403: FORBIDDEN}, tags=["reports"])
    def get(self, request: Request, quarter: str) -> Response:
        require_report_reader(request.user)
        try:
            period = Quarter.parse(quarter)
        except periods.BadPeriod as error:
            raise exceptions.ValidationError({"quarter": [str(error)]}) from error
        return Response(quarterly_report(period.year, period.number))


class AnnualAssessmentView(APIView):
    """The year's data-security assessment: four quarters, chain, findings, policy changes."""

    @extend_schema(responses={200: REPORT, 400: FIELD_ERRORS, 403: FORBIDDEN}, tags=["reports"])
    def get(self, request: Request, year: str) -> Response:
        require_report_reader(request.user)
        try:
            number = periods.parse_year(year)
        except periods.BadPeriod as error:
            raise exceptions.ValidationError({"year": [str(error)]}) from error
        return Response(annual_assessment(number))
