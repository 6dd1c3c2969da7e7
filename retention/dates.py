"""The range of dates Qingli accepts, in one place: request scopes, list filters, report
periods, ingested and imported message times.

Chat records are neither older than 1990 nor from the next century. Outside this range a
date is a mistake, and far outside it a hazard: year 1 at local midnight in Asia/Shanghai
is a BC timestamp, which the database stores but Python cannot read back. Every input
that takes a date or a moment checks it here, and refuses it with a message that names
the range.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

EARLIEST_DAY = date(1990, 1, 1)
LATEST_DAY = date(2100, 12, 31)

# The years of the range as a pattern, for the API schema (so clients and the fuzzer see
# the bound); tests/governance/test_request_dates.py checks that it agrees with the two days above.
YEAR_PREFIX_PATTERN = r"^(199[0-9]|20[0-9][0-9]|2100)-"
DAY_PATTERN = YEAR_PREFIX_PATTERN + r"[0-9]{2}-[0-9]{2}$"

# A date picker's attributes: browsers offer only days of the range.
DAY_INPUT_ATTRS = {"type": "date", "min": EARLIEST_DAY.isoformat(), "max": LATEST_DAY.isoformat()}

RANGE_MESSAGE = _("Must be a date between %(earliest)s and %(latest)s.")


def range_message() -> str:
    """Why a date was refused, naming the range (in the active language)."""
    return str(RANGE_MESSAGE) % {
        "earliest": EARLIEST_DAY.isoformat(),
        "latest": LATEST_DAY.isoformat(),
    }


def day_in_range(day: date) -> bool:
    return EARLIEST_DAY <= day <= LATEST_DAY


def earliest_moment() -> datetime:
    """The first moment of the range: local midnight of its first day."""
    return _local_midnight(EARLIEST_DAY)


def end_moment() -> datetime:
    """The moment the range ends (exclusive): local midnight after its last day."""
    return _local_midnight(LATEST_DAY + timedelta(days=1))


def moment_in_range(moment: datetime) -> bool:
    """An aware moment between the first day's local midnight and the end of the last day.
    Compared as aware datetimes: no conversion that could leave Python's range."""
    return earliest_moment() <= moment < end_moment()


def validate_day(day: date | None) -> None:
    """A validator for form and serializer date fields (None: nothing given)."""
    if day is not None and not day_in_range(day):
        raise ValidationError(range_message(), code="date_range")


def validate_moment(moment: datetime | None) -> None:
    """A validator for date-and-time fields (aware, as Django's forms return them)."""
    if moment is not None and not moment_in_range(moment):
        raise ValidationError(range_message(), code="date_range")


def bounds_problem(sent_after: datetime | None, sent_before: datetime | None) -> str | None:
    """Why a stored date range cannot be used to delete anything (None: it can).

    A bound outside the range was never accepted, so it was stored by something else and
    means nothing sure; moving it into the range could widen what a run takes. Such a
    request is neither approved nor run.
    """
    for moment in (sent_after, sent_before):
        if moment is not None and not moment_in_range(moment):
            return str(
                _(
                    "This request's date range lies outside %(earliest)s to %(latest)s: it "
                    "cannot be approved or run. Reject or cancel it."
                )
            ) % {"earliest": EARLIEST_DAY.isoformat(), "latest": LATEST_DAY.isoformat()}
    return None


def _local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())
