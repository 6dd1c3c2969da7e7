"""Request bodies of the API, bounded.

Every API view parses through the parsers here, and ``BoundedContentNegotiation`` checks
the declared length against the chosen parser's bound before DRF reads a byte: a body
over it is a 413 that says the bound, and nothing is read or changed. Django never reads
past ``CONTENT_LENGTH`` (nor anything without one), so the declared length bounds what a
client can make the server read. JSON nested too deep for the parser is a 400, not a crash.

DRF reads JSON (and form) bodies through ``request.body``, which Django also caps at
``DATA_UPLOAD_MAX_MEMORY_SIZE``; ingest batches are larger than that, so their parser
reads the stream itself.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework import exceptions, parsers, status
from rest_framework.negotiation import DefaultContentNegotiation


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = gettext_lazy("Request body too large.")
    default_code = "too_large"


class Bounded:
    """A parser with a bound on the body it reads (``limit_setting``)."""

    limit_setting = "QINGLI_MAX_API_BODY_BYTES"
    advice = gettext_lazy("Request body too large: send at most %(n)d bytes.")

    def limit(self) -> int:
        return getattr(settings, self.limit_setting)

    def check_length(self, request) -> int:
        limit = self.limit()
        length = request.META.get("CONTENT_LENGTH") or ""
        if length.isdigit() and int(length) > limit:
            raise RequestTooLarge(self.advice % {"n": limit})
        return limit


class BoundedContentNegotiation(DefaultContentNegotiation):
    def select_parser(self, request, parsers):
        parser = super().select_parser(request, parsers)
        if isinstance(parser, Bounded):
            parser.check_length(request)
        return parser


def _loads(text: str):
    try:
        return json.loads(text, parse_constant=_no_constants)
    except RecursionError as exc:
        raise exceptions.ParseError(_("JSON parse error - nested too deeply.")) from exc
    except ValueError as exc:
        raise exceptions.ParseError(_("JSON parse error - %(e)s") % {"e": exc}) from exc


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


class JSONParser(Bounded, parsers.JSONParser):
    """JSON bodies up to ``QINGLI_MAX_API_BODY_BYTES``."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding) if stream is not None else ""
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError(_("The body is not %(e)s text.") % {"e": encoding}) from exc
        return _loads(text)


class FormParser(Bounded, parsers.FormParser):
    pass


class MultiPartParser(Bounded, parsers.MultiPartParser):
    pass


class IngestJSONParser(Bounded, parsers.BaseParser):
    """Ingest batches carry message bodies: up to ``QINGLI_MAX_INGEST_BODY_BYTES``."""

    media_type = "application/json"
    limit_setting = "QINGLI_MAX_INGEST_BODY_BYTES"
    advice = gettext_lazy("Request body too large; send smaller batches (at most %(n)d bytes).")

    def parse(self, stream, media_type=None, parser_context=None):
        limit = self.limit()
        data = stream.read(limit + 1) if stream is not None else b""
        if len(data) > limit:  # a length that lied
            raise RequestTooLarge(self.advice % {"n": limit})
        try:
            text = data.decode(settings.DEFAULT_CHARSET)
        except UnicodeDecodeError as exc:
            raise exceptions.ParseError(_("The body is not %(e)s text.") % {"e": "UTF-8"}) from exc
        return _loads(text)
