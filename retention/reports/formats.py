"""The quarterly report and the annual assessment as tables, CSV, XLSX and PDF.

Every format is drawn from the same tables (:func:`quarterly_tables`,
:func:`annual_tables`), which are drawn from the report's dict: a number cannot differ
between the page, the API and a download.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from django.template.loader import render_to_string
from django.utils.translation import gettext as _

from audit import cells
from retention.models.roles import Role
from retention.reports import reviews


@dataclass(frozen=True)
class Table:
    key: str  # a stable, untranslated name: the XLSX sheet and the CSV section
    title: str
    headers: list[str]
    rows: list[list[Any]]


def role_label(role: str) -> str:
    return str(Role(role).label) if role in Role.values else role


def quarterly_tables(report: dict[str, Any]) -> list[Table]:
    d = report["deletions"]
    counts = [_("Deletions"), _("Messages"), _("Conversations"), _("Bytes")]
    a = report["anomalies"]
    return [
        Table(
            "summary",
            _("Summary"),
            [_("Figure"), _("Value")],
            [
                [_("Quarter"), report["period"]],
                [_("Deletions"), d["total"]["deletions"]],
                [_("Messages deleted"), d["total"]["messages"]],
                [_("Conversations touched"), d["total"]["conversations"]],
                [_("Bytes deleted"), d["total"]["bytes"]],
                [_("Rejections"), report["rejections"]["count"]],
                [_("Quota overrides"), report["quota_overrides"]["count"]],
                [_("Eligibility and quota refusals"), report["refusals"]["count"]],
                [_("Holds placed"), report["holds"]["placed"]["count"]],
                [_("Holds released"), report["holds"]["released"]["count"]],
                [_("Restores"), report["restores"]["count"]],
                [_("Failed jobs"), report["jobs"]["failed"]["count"]],
                [_("Resumed jobs"), report["jobs"]["resumed"]["count"]],
                [_("Retention-rule runs"), report["rule_runs"]["count"]],
                [_("Failed retention-rule runs"), report["rule_runs"]["failed"]],
                [_("Anomalies"), a["count"]],
                [
                    _("Personal deletions held for frequent deletions"),
                    a["counts"]["frequent_deletions"],
                ],
            ],
        ),
        Table(
            "by_method",
            _("Deletions by method"),
            [_("Method"), *counts],
            [
                [m["label"], m["deletions"], m["messages"], m["conversations"], m["bytes"]]
                for m in d["by_method"]
            ],
        ),
        Table(
            "by_department",
            _("Deletions by department"),
            [_("Department"), *counts],
            [
                [e["name"], e["deletions"], e["messages"], e["conversations"], e["bytes"]]
                for e in d["by_department"]
            ],
        ),
        Table(
            "by_person",
            _("Deletions by person"),
            [_("Member"), *counts],
            [
                [e["username"], e["deletions"], e["messages"], e["conversations"], e["bytes"]]
                for e in d["by_person"]
            ],
        ),
        Table(
            "approval_latency",
            _("Approval latency per step"),
            [_("Step"), _("Role"), _("Approvals"), _("Median (s)"), _("90th percentile (s)")],
            [
                [
                    s["step"],
                    role_label(s["role"]),
                    s["approvals"],
                    s["median_seconds"],
                    s["p90_seconds"],
                ]
                for s in report["approval_latency"]
            ],
        ),
        Table(
            "rejections",
            _("Rejections"),
            [_("Request"), _("Step"), _("Role"), _("By"), _("Reason"), _("Time")],
            [
                [r["request"], r["step"], role_label(r["role"]), r["by"], r["reason"], r["at"]]
                for r in report["rejections"]["items"]
            ],
        ),
        Table(
            "quota_overrides",
            _("Quota overrides"),
            [_("Member"), _("Extra deletions"), _("Reason"), _("By"), _("Time")],
            [
                [q["member"], q["extra"], q["reason"], q["by"], q["at"]]
                for q in report["quota_overrides"]["items"]
            ],
        ),
        Table(
            "refusals",
            _("Eligibility and quota refusals"),
            [_("Member"), _("Why"), _("Time")],
            [[r["member"], r["why"], r["at"]] for r in report["refusals"]["items"]],
        ),
        Table(
            "holds",
            _("Holds placed and released"),
            [_("Hold"), _("Event"), _("Reason"), _("By"), _("Time")],
            [
                [h["hold"], _("placed"), h["reason"], h["by"], h["at"]]
                for h in report["holds"]["placed"]["items"]
            ]
            + [
                [h["hold"], _("released"), h["reason"], h["by"], h["at"]]
                for h in report["holds"]["released"]["items"]
            ],
        ),
        Table(
            "restores",
            _("Restores from the recycle bin"),
            [_("Request"), _("By"), _("Messages"), _("Conversations"), _("Time")],
            [
                [r["request"], r["by"], r["messages"], r["conversations"], r["at"]]
                for r in report["restores"]["items"]
            ],
        ),
        Table(
            "jobs",
            _("Failed and resumed jobs"),
            [_("Request"), _("Event"), _("Detail"), _("Time")],
            [
                [j["request"], _("failed"), j["reason"], j["at"]]
                for j in report["jobs"]["failed"]["items"]
            ]
            + [
                [j["request"], _("resumed"), j["attempt"], j["at"]]
                for j in report["jobs"]["resumed"]["items"]
            ],
        ),
        Table(
            "anomalies",
            _("Anomalies"),
            [_("Kind"), _("Subject"), _("Detail")],
            [
                [_("Deletion outside the execution window"), o["request"], o["at"]]
                for o in a["outside_window"]
            ]
            + [
                [
                    _("More than %(n)d deletions by one person") % {"n": a["person_threshold"]},
                    h["username"],
                    h["deletions"],
                ]
                for h in a["heavy_deleters"]
            ]
            + [
                [
                    _("Restore of records due to be purged soon"),
                    r["request"],
                    _("%(hours)s h before the purge") % {"hours": r["hours_left"]},
                ]
                for r in a["restores_near_purge"]
            ]
            + [
                [
                    _("Approval within %(n)d s") % {"n": a["fast_approval_seconds"]},
                    f["request"],
                    _("step %(step)s by %(who)s in %(s)s s")
                    % {"step": f["step"], "who": f["approver"], "s": f["seconds"]},
                ]
                for f in a["fast_approvals"]
            ]
            + [
                [
                    _("Personal deletion held: frequent deletions"),
                    f["username"],
                    _("request %(request)s, after %(n)s deletions")
                    % {"request": f["request"], "n": f["deletions"]},
                ]
                for f in a["frequent_deletions"]
            ],
        ),
        _recycle_bin_review_table(report["recycle_bin_review"]),
    ]


def _recycle_bin_review_table(review: dict[str, Any] | None) -> Table:
    if review is None:
        rows = [[_("Status"), _("Not opened yet")]]
    else:
        rows = [
            [_("Status"), review["status_label"]],
            [_("Reviewer"), review["reviewer"] or "—"],
            [_("Decided"), review["reviewed_at"] or "—"],
            [_("Finding or note"), review["finding"] or "—"],
        ]
        figures = review["figures"] or {}
        rows += [
            [
                label,
                _("%(m)s messages in %(c)s conversations")
                % {"m": figures[key]["messages"], "c": figures[key]["conversations"]},
            ]
            for key, label in reviews.BIN_FIGURES
            if key in figures
        ]
    return Table("recycle_bin_review", _("Recycle-bin review"), [_("Figure"), _("Value")], rows)


def annual_tables(assessment: dict[str, Any]) -> list[Table]:
    chain = assessment["chain"]
    quarter_headers = [
        _("Quarter"),
        _("Deletions"),
        _("Messages"),
        _("Bytes"),
        _("Rejections"),
        _("Refusals"),
        _("Quota overrides"),
        _("Holds placed"),
        _("Holds released"),
        _("Restores"),
        _("Failed jobs"),
        _("Resumed jobs"),
        _("Retention-rule runs"),
        _("Anomalies"),
    ]
    return [
        Table(
            "quarters",
            _("The four quarters"),
            quarter_headers,
            [list(q.values()) for q in assessment["quarters"]],
        ),
        Table(
            "chain",
            _("Audit chain verification"),
            [_("Figure"), _("Value")],
            [
                [_("Chain intact"), _("yes") if chain["intact"] else _("no")],
                [_("Events checked"), chain["events_checked"]],
                [_("First broken event"), chain["broken_id"] or ""],
                [_("Why"), chain["reason"]],
                [_("Verified at"), chain["verified_at"] or ""],
            ],
        ),
        Table(
            "open_findings",
            _("Open findings"),
            [_("Review"), _("Kind"), _("Status"), _("Request"), _("Opened"), _("Finding")],
            [
                [f["review"], f["kind"], f["status"], f["request"], f["opened_at"], f["finding"]]
                for f in assessment["open_findings"]
            ],
        ),
        Table(
            "policy_changes",
            _("Policy changes during the year"),
            [_("Policy"), _("Old value"), _("New value"), _("By"), _("Time")],
            [
                [
                    p["key"],
                    json.dumps(p["old"], ensure_ascii=False),
                    json.dumps(p["new"], ensure_ascii=False),
                    p["by"],
                    p["at"],
                ]
                for p in assessment["policy_changes"]
            ],
        ),
    ]


def to_csv(tables: list[Table]) -> bytes:
    """One CSV: each table's rows prefixed with its key, after a header row of its own.
    UTF-8 with a byte-order mark, so that Excel opens the Chinese text as it is. Cells go
    through the product's one guarded writer (:mod:`audit.cells`)."""
    out = io.StringIO()
    writer = cells.CsvWriter(out)
    for table in tables:
        writer.writerow(["section", *table.headers])
        writer.writerows([table.key, *row] for row in table.rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(tables: list[Table]) -> bytes:
    """One sheet per table, named by the table's key; text cells are text, never formulas
    (:mod:`audit.cells`)."""
    # openpyxl takes about 0.1 s to import and only XLSX downloads need it.
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for table in tables:
        sheet = book.create_sheet(table.key[:31])
        cells.xlsx_append(sheet, [table.title], bold=True)
        cells.xlsx_append(sheet, table.headers, bold=True)
        for row in table.rows:
            cells.xlsx_append(sheet, row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


class PdfUnavailable(RuntimeError):
    """The server lacks what WeasyPrint needs to draw a PDF."""


# A PDF is for reading: its lists stop here (the CSV and XLSX have every row), which also
# keeps a busy quarter's PDF to a few seconds of WeasyPrint.
PDF_ROWS = 50


def to_pdf(*, title: str, tables: list[Table], charts: list[dict[str, Any]] | None = None) -> bytes:
    """A printable PDF of the tables. Its text is set in Noto Sans CJK (Debian's
    fonts-noto-cjk), so Chinese renders; without that font the Chinese would be boxes."""
    try:
        from weasyprint import HTML
    except (OSError, ImportError) as exc:  # WeasyPrint loads Pango's libraries on import
        raise PdfUnavailable(
            _(
                "PDF downloads need Pango and the CJK fonts on the server "
                "(Debian: apt-get install libpangoft2-1.0-0 fonts-noto-cjk). "
                "The CSV and XLSX downloads work without them."
            )
        ) from exc

    shown = [
        {
            "table": Table(t.key, t.title, t.headers, t.rows[:PDF_ROWS]),
            "more": len(t.rows) - PDF_ROWS,
        }
        for t in tables
    ]
    html = render_to_string(
        "retention/reports/pdf.html", {"title": title, "tables": shown, "charts": charts or []}
    )
    return HTML(string=html).write_pdf()


def bar_charts(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The page's charts as plain bars (label, value, width in %) for the PDF, which runs
    no JavaScript."""

    def bars(title: str, pairs: list[tuple[str, float]]) -> dict[str, Any]:
        top = max((v for _label, v in pairs), default=0) or 1
        return {
            "title": title,
            "bars": [{"label": k, "value": v, "width": round(100 * v / top, 1)} for k, v in pairs],
        }

    d = report["deletions"]
    return [
        bars(
            _("Messages deleted by method"), [(m["label"], m["messages"]) for m in d["by_method"]]
        ),
        bars(
            _("Messages deleted by department"),
            [(e["name"], e["messages"]) for e in d["by_department"][:12]],
        ),
    ]
