"""Pages of every API list: a bad ``page`` or ``page_size`` is a 400 that says what is
wrong, never a silent default (a client asking for 100000 rows learns the bound)."""

from __future__ import annotations

from django.utils.translation import gettext as _
from rest_framework import pagination
from rest_framework.exceptions import ValidationError

MAX_PAGE_SIZE = 200
MAX_PAGE = 1_000_000_000


def _whole_number(params, name: str, *, maximum: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None:
        return None
    if len(params.getlist(name)) > 1:
        raise ValidationError({name: [_("Give this parameter once.")]})
    text = raw.strip()
    valid = text.isascii() and text.isdigit() and len(text) <= 10  # no 4,300-digit ints
    if not valid or not 1 <= int(text) <= (maximum or MAX_PAGE):
        if maximum:
            message = _("Give a whole number from 1 to %(max)d.") % {"max": maximum}
        else:
            message = _("Give a whole number from 1 to %(max)d.") % {"max": MAX_PAGE}
        raise ValidationError({name: [message]})
    return int(text)


class PageNumberPagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request) -> int:
        size = _whole_number(request.query_params, "page_size", maximum=self.max_page_size)
        return self.page_size if size is None else size

    def paginate_queryset(self, queryset, request, view=None):
        _whole_number(request.query_params, "page")  # a page past the last one is a 404
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == "page":
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}
            elif parameter["name"] == "page_size":
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}
                parameter["description"] = _("Results per page: 1 to %(max)d (default %(n)d).") % {
                    "max": MAX_PAGE_SIZE,
                    "n": self.page_size or MAX_PAGE_SIZE,
                }
        return parameters
