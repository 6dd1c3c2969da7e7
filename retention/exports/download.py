"""Downloading an export: the ready file decrypted as it streams, each download audited,
and the HTTP response it goes out in (the site's pages and the API both use it).

An expired export is :class:`ExportExpired` (HTTP 410 over the API): its file and key
are gone for good.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Generator, Iterator

from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.db import models, transaction
from django.http import StreamingHttpResponse
from django.utils import formats, timezone
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _

from audit.events import EventType
from retention.errors import Conflict
from retention.exports import trail
from retention.exports.sealed import opened
from retention.exports.service import may_download
from retention.models import Export, ExportFormat, ExportStatus, Member
from retention.records import crypto
from retention.records.crypto import DecryptionError, KeyDestroyedError

logger = logging.getLogger(__name__)

CONTENT_TYPES = {
    ExportFormat.JSONL: "application/jsonl; charset=utf-8",
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.HTML: "text/html; charset=utf-8",
}


class ExportExpired(Conflict):
    """The export's file and key are gone for good (HTTP 410 over the API)."""


def open_download(
    export: Export, member: Member, *, ip_address: str | None = None
) -> Iterator[bytes]:
    """The export's plaintext, decrypted a chunk at a time as it streams, with the
    download audited. The key and the first chunk are checked before anything is audited
    or sent; a later chunk that does not authenticate stops the stream with
    DecryptionError, never with garbage."""
    if not may_download(export, member):
        raise PermissionDenied(_("You may not download this export."))

    def record(export: Export) -> None:
        trail.record(
            EventType.EXPORT_DOWNLOADED,
            export,
            actor=member,
            ip_address=ip_address,
            sha256=export.sha256,
        )

    return open_sealed(
        export, ready=ExportStatus.READY, expired=ExportStatus.EXPIRED, record=record
    )


def open_sealed(
    row: models.Model,
    *,
    ready: str,
    expired: str,
    record: Callable[[models.Model], None],
    kind: str = "export",
) -> Iterator[bytes]:
    """A sealed file's plaintext (a request export's or an audit-log export's), decrypted
    a chunk at a time as it streams, with ``record(row)`` writing the download's audit
    event. The key and the first chunk are checked before anything is audited or sent; a
    later chunk that does not authenticate stops the stream with DecryptionError, never
    with garbage. Who may download is the caller's to decide."""
    if row.status == expired:
        expired_on = formats.date_format(timezone.localtime(row.expired_at), "DATE_FORMAT")
        raise ExportExpired(
            _(
                "This export expired on %(date)s: its file was deleted. "
                "Ask for a new export if you need one."
            )
            % {"date": expired_on}
        )
    if row.status != ready or not row.file:
        raise Conflict(_("This export is not ready."))
    try:
        handle = default_storage.open(row.file.name, "rb")
    except FileNotFoundError as exc:
        raise Conflict(_("This export's file is missing.")) from exc
    try:
        data_key = crypto.export_key(row.pk, row.wrapped_key, kind=kind)
        chunks = opened(handle, data_key, row.pk, kind=kind)
        first = next(chunks, b"")
    except (DecryptionError, KeyDestroyedError) as exc:
        handle.close()
        logger.error("%s %s cannot be decrypted: %s", kind, row.pk, exc)
        raise Conflict(
            _("This export's file cannot be decrypted: it is damaged or was altered.")
        ) from exc
    try:
        with transaction.atomic():
            record(row)
    except Exception:
        chunks.close()
        raise
    return _streamed(row, kind, first, chunks)


def _streamed(
    row: models.Model, kind: str, first: bytes, rest: Generator[bytes, None, None]
) -> Iterator[bytes]:
    try:
        if first:
            yield first
        yield from rest
    except DecryptionError:
        logger.error("%s %s: a chunk failed authentication mid-download", kind, row.pk)
        raise
    finally:
        rest.close()


def file_response(export: Export, chunks: Iterator[bytes]) -> StreamingHttpResponse:
    """The file as an attachment, decrypted as it streams, with its recorded checksum
    (for the API too). Content-Length is the plaintext's: a download cut short by a chunk
    that does not authenticate shows as incomplete."""
    response = StreamingHttpResponse(chunks, content_type=CONTENT_TYPES[export.format])
    response["Content-Disposition"] = content_disposition_header(True, export.download_name)
    response["Content-Length"] = str(export.size)
    response["X-Content-SHA256"] = export.sha256
    digest = base64.b64encode(bytes.fromhex(export.sha256)).decode()
    response["Repr-Digest"] = f"sha-256=:{digest}:"
    response["Cache-Control"] = "no-store"
    # Never run as a page of this site, should a browser open it anyway.
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response
