"""Quarters and years as reports and reviews name them ("2026-Q4", "2026"), bounded by
local midnights in the site's time zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from django.utils import timezone
from django.utils.translation import gettext as _

from retention.dates import EARLIEST_DAY, LATEST_DAY

QUARTER_PATTERN = re.compile(r"(\d{4})-Q([1-4])")
YEAR_PATTERN = re.compile(r"\d{4}")
FIRST_YEAR, LAST_YEAR = EARLIEST_DAY.year, LATEST_DAY.year


class BadPeriod(ValueError):
    """A quarter or year that does not parse; its message says what is expected."""


@dataclass(frozen=True)
class Quarter:
    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> Quarter:
        matched = QUARTER_PATTERN.fullmatch(text or "")
        if not matched or not FIRST_YEAR <= int(matched[1]) <= LAST_YEAR:
            raise BadPeriod(
                _("“%(text)s” is not a quarter: write it as YYYY-Qn, for example 2026-Q4.")
                % {"text": text}
            )
        return cls(int(matched[1]), int(matched[2]))

    @classmethod
    def of(cls, moment: datetime) -> Quarter:
        day = timezone.localtime(moment).date()
        return cls(day.year, (day.month - 1) // 3 + 1)

    def __str__(self) -> str:
        return f"{self.year}-Q{self.number}"

    @property
    def start(self) -> datetime:
        return local_midnight(date(self.year, 3 * self.number - 2, 1))

    @property
    def end(self) -> datetime:
        return self.previous(-1).start

    def previous(self, n: int = 1) -> Quarter:
        index = self.year * 4 + self.number - 1 - n
        return Quarter(index // 4, index % 4 + 1)


def parse_year(text: str) -> int:
    if not YEAR_PATTERN.fullmatch(text or "") or not FIRST_YEAR <= int(text) <= LAST_YEAR:
        raise BadPeriod(
            _("“%(text)s” is not a year: write it as YYYY, for example 2026.") % {"text": text}
        )
    return int(text)


def local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, datetime.min.time()))
