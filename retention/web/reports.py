"""The quarterly audit report and the annual assessment in the browser (auditors, admins).

Thin: the numbers come from :mod:`retention.reports.quarterly` and
:mod:`retention.reports.annual`, every format from :mod:`retention.reports.formats`,
both drawn from the same dict.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from retention.access.predicates import require_report_reader
from retention.reports import formats, periods
from retention.reports.annual import annual_assessment
from retention.reports.periods import Quarter
from retention.reports.quarterly import quarterly_report

CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


def period_view(parse: Callable[[str], Any]):
    """An auditor's or admin's GET of a report: the role first, then the period in the
    URL parsed (a bad one is a 404 page that says what is expected)."""

    def decorate(view):
        @wraps(view)
        @require_GET
        @login_required
        def wrapper(request: HttpRequest, period: str, **kwargs: Any) -> HttpResponse:
            require_report_reader(request.user)
            try:
                parsed = parse(period)
            except periods.BadPeriod as error:
                return render(
                    request, "retention/reports/bad_period.html", {"error": error}, status=404
                )
            return view(request, parsed, **kwargs)

        return wrapper

    return decorate


def _download(tables, *, title: str, filename: str, fmt: str, charts=None) -> HttpResponse:
    if fmt == "csv":
        body = formats.to_csv(tables)
    elif fmt == "xlsx":
        body = formats.to_xlsx(tables)
    else:
        try:
            body = formats.to_pdf(title=title, tables=tables, charts=charts)
        except formats.PdfUnavailable as exc:
            return HttpResponse(str(exc), status=503, content_type="text/plain; charset=utf-8")
    response = HttpResponse(body, content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    return response


@require_GET
@login_required
def report_index(request: HttpRequest) -> HttpResponse:
    require_report_reader(request.user)
    return redirect("report-quarterly", period=str(Quarter.of(timezone.now())))


@period_view(Quarter.parse)
def quarterly(request: HttpRequest, period: Quarter) -> HttpResponse:
    year, q = period.year, period.number
    report = quarterly_report(year, q)
    previous = (year, q - 1) if q > 1 else (year - 1, 4)
    following = (year, q + 1) if q < 4 else (year + 1, 1)
    return render(
        request,
        "retention/reports/quarterly.html",
        {
            "report": report,
            "tables": formats.quarterly_tables(report),
            "charts": {
                "method": {
                    "labels": [m["label"] for m in report["deletions"]["by_method"]],
                    "values": [m["messages"] for m in report["deletions"]["by_method"]],
                },
                "department": {
                    "labels": [e["name"] for e in report["deletions"]["by_department"][:12]],
                    "values": [e["messages"] for e in report["deletions"]["by_department"][:12]],
                },
                "latency": {
                    "labels": [f"{s['step']} · {s['role']}" for s in report["approval_latency"]],
                    "median": [s["median_seconds"] for s in report["approval_latency"]],
                    "p90": [s["p90_seconds"] for s in report["approval_latency"]],
                },
            },
            "previous": f"{previous[0]}-Q{previous[1]}",
            "following": f"{following[0]}-Q{following[1]}",
        },
    )


@period_view(Quarter.parse)
def quarterly_download(request: HttpRequest, period: Quarter, fmt: str) -> HttpResponse:
    report = quarterly_report(period.year, period.number)
    return _download(
        formats.quarterly_tables(report),
        title=_("Quarterly audit report %(period)s") % {"period": report["period"]},
        filename=f"qingli-audit-report-{report['period']}",
        fmt=fmt,
        charts=formats.bar_charts(report),
    )


@period_view(periods.parse_year)
def annual_download(request: HttpRequest, number: int, fmt: str) -> HttpResponse:
    assessment = annual_assessment(number)
    return _download(
        formats.annual_tables(assessment),
        title=_("Data-security assessment %(year)d") % {"year": number},
        filename=f"qingli-security-assessment-{number}",
        fmt=fmt,
    )
