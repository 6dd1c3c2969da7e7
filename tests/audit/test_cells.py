"""audit/cells.py: the one guard every CSV and XLSX goes through, and the audit log's CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from audit import cells
from audit import log as audit
from audit.event_exports import csv_chunks
from audit.events import EventType
from audit.selectors import EventFilter
from retention.models.roles import Role
from tests.conftest import make_member


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_text_that_starts_like_a_formula_gets_an_apostrophe_in_a_csv(start):
    out = io.StringIO()
    cells.CsvWriter(out).writerow([start + "1+1", "ok", 7, -3, 1.5, None])
    assert next(csv.reader(io.StringIO(out.getvalue()))) == [
        "'" + start + "1+1",
        "ok",
        "7",
        "-3",  # a number, not text: it stays a number
        "1.5",
        "",
    ]


def test_an_xlsx_row_keeps_text_as_text_and_numbers_as_numbers():
    book = Workbook()
    cells.xlsx_append(book.active, ["=1+1", "#N/A", "bell\x07", 42, -1.5, None, "普通"])
    out = io.BytesIO()
    book.save(out)
    row = next(load_workbook(out).active.iter_rows())
    assert [c.value for c in row] == ["=1+1", "#N/A", "bell\ufffd", 42, -1.5, None, "普通"]
    assert [c.data_type for c in row][:3] == ["s", "s", "s"]
    assert [c.quotePrefix for c in row][:2] == [True, False]


@pytest.mark.django_db
def test_the_audit_log_csv_defuses_an_actor_name_that_starts_like_a_formula(org):
    member = make_member("@SUM", org.company, Role.ADMIN)
    event = audit.record(
        EventType.POLICY_CHANGED,
        actor=member,
        target_type="policy",
        target_id="-1",
        details={"note": "=HYPERLINK(1)"},
    )
    body = b"".join(csv_chunks(EventFilter()))
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(body.decode("utf-8-sig")))}
    row = rows[str(event.pk)]
    assert (row["actor"], row["object_id"]) == ("'@SUM", "'-1")
    assert row["details"] == '{"note": "=HYPERLINK(1)"}'  # JSON text: starts with "{"


def test_every_csv_and_xlsx_is_written_through_the_one_guarded_writer():
    """No module but audit/cells.py makes its own csv.writer or fills XLSX cells itself."""
    root = Path(__file__).resolve().parents[2]
    own = [
        f"{path.relative_to(root)}: {needle}"
        for app in ("retention", "audit")
        for path in (root / app).rglob("*.py")
        if path != root / "audit" / "cells.py"
        for needle in ("csv.writer(", "csv.DictWriter(", "sheet.append(", "def _cell(")
        if needle in path.read_text()
    ]
    assert own == []
