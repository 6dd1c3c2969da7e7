"""Model fields of our own."""

from __future__ import annotations

from django.db import models

# The moments a stored bound is read back as when it lies beyond them. Both are outside
# every range Qingli accepts (retention.dates), so a clamped bound still reads as out of
# range and is refused where it would be used; the days of margin leave room for any
# time-zone offset, so converting one to local time cannot overflow.
READ_FLOOR = "'0001-01-02 00:00:00+00'::timestamptz"
READ_CEILING = "'9999-12-30 00:00:00+00'::timestamptz"


class BoundDateTimeField(models.DateTimeField):
    """A scope's date bound (``sent_after``, ``sent_before``), always readable.

    PostgreSQL stores moments Python cannot hold: a BC timestamp (year 1 at midnight in
    Asia/Shanghai), one past year 9999, ±infinity. Loading such a row raised "timestamp too
    small", and every list that held the row failed with it. Here every SELECT of the column
    reads it clamped into Python's range; filters, updates and the stored value are
    untouched. A column like any other to migrations (``deconstruct``).
    """

    def select_format(self, compiler, sql: str, params):
        if compiler.connection.vendor != "postgresql":
            # SQLite stores moments as Python wrote them: never outside Python's range.
            return sql, params
        return (
            f"CASE WHEN {sql} < {READ_FLOOR} THEN {READ_FLOOR} "
            f"WHEN {sql} > {READ_CEILING} THEN {READ_CEILING} ELSE {sql} END",
            (*params, *params, *params),
        )

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.DateTimeField", args, kwargs
