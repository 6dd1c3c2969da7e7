"""The API's exception handler: domain errors become the HTTP answers clients expect.

- django ``ValidationError`` → 400 ``{"field": ["message", ...]}``
- django ``PermissionDenied`` → 403 ``{"detail": "why"}``
- ``Http404`` → 404 ``{"detail": "Not found."}``, never naming the model or the query
- ``Conflict`` (the object is in the wrong state) → 409 ``{"detail": "why"}``
- ``ExportExpired`` (its file was deleted) → 410 ``{"detail": "why"}``

Everything else is DRF's default handling.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import exception_handler as drf_exception_handler

from retention.errors import Conflict
from retention.exports.download import ExportExpired


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = _("The object is not in a state that allows this.")
    default_code = "conflict"


class GoneError(exceptions.APIException):
    status_code = status.HTTP_410_GONE
    default_detail = _("This export expired: its file was deleted.")
    default_code = "gone"


def as_api_exception(exc: Exception) -> Exception:
    """The DRF exception that answers ``exc`` (``exc`` itself if DRF knows it already)."""
    if isinstance(exc, DjangoValidationError):
        return exceptions.ValidationError(detail=as_serializer_error(exc))
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(*exc.args)
    if isinstance(exc, Http404):
        # get_object_or_404 says "No DeletionRequest matches the given query.": too much.
        return exceptions.NotFound()
    if isinstance(exc, ExportExpired):  # a Conflict that will never clear
        return GoneError(*exc.args)
    if isinstance(exc, Conflict):
        return ConflictError(*exc.args)
    return exc


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    return drf_exception_handler(as_api_exception(exc), context)
