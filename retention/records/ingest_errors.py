"""The errors of a rejected ingest batch, in the one shape the API and the import command
report: a list of entries naming the record, its id, the field and the problem."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from rest_framework.settings import api_settings

# A batch with thousands of bad lines is one mistake repeated: report enough to fix it.
MAX_REPORTED_ERRORS = 100


def record_error(
    record: int | str | None, record_id: str | None, field_name: str | None, message: str
) -> dict[str, Any]:
    """One entry of an error list, in the shape the API and the command report."""
    return {"record": record, "id": record_id, "field": field_name, "message": message}


class IngestError(Exception):
    """The batch is invalid; nothing of it was written.

    ``errors`` holds at most :data:`MAX_REPORTED_ERRORS` entries shaped by
    :func:`record_error`; ``total`` is how many problems were found in all.
    """

    def __init__(self, errors: list[dict[str, Any]], *, total: int | None = None):
        self.errors = errors[:MAX_REPORTED_ERRORS]
        self.total = len(errors) if total is None else total
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        if self.total > len(self.errors):
            return _(
                "%(total)d problems in the batch (first %(shown)d listed); nothing was written."
            ) % {"total": self.total, "shown": len(self.errors)}
        return ngettext(
            "%(total)d problem in the batch; nothing was written.",
            "%(total)d problems in the batch; nothing was written.",
            self.total,
        ) % {"total": self.total}


def flatten_errors(detail: Any, path: str = "") -> Iterator[tuple[str | None, str]]:
    """(field path, message) pairs from a nested DRF error detail, e.g.
    ``attachments[0].data_base64``."""
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            if key in ("", api_settings.NON_FIELD_ERRORS_KEY):
                child = path
            elif isinstance(key, int):
                child = f"{path}[{key}]"
            else:
                child = f"{path}.{key}" if path else str(key)
            yield from flatten_errors(value, child)
    elif isinstance(detail, list):
        for item in detail:
            yield from flatten_errors(item, path)
    else:
        yield (path or None, str(detail))
