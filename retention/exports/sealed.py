"""Export files at rest: AES-256-GCM in fixed-size chunks, under the export's own data key.

An export can be far larger than memory, so it is sealed and opened a chunk at a time::

    file   = header ‖ chunk₀ ‖ chunk₁ ‖ … ‖ chunkₙ
    header = b"QEX1" ‖ chunk size (4 bytes, big-endian; 65 536)
    chunk  = nonce (12 random bytes) ‖ AES-256-GCM ciphertext ‖ tag (16 bytes)

Every chunk but the last holds exactly ``chunk size`` bytes of plaintext; the last holds
1 to ``chunk size`` (0 only for an empty file), so a file always has a last chunk. Each
chunk's associated data is ``b"qingli:export:<export id>:chunk:<index>:<last|more>"``: a
chunk moved to another place, another file or another export, a file cut short at a chunk
boundary, or bytes added after the last chunk, all fail authentication like a changed byte.

The data key is wrapped by the master key and kept on the export's row
(``crypto.new_export_key``); destroying it there makes the file unreadable.

Audit-log CSV exports are sealed the same way with ``kind="audit-export"``: their chunks'
associated data (and their keys' wrapping) name that kind instead of ``export``, so a
file or key of one kind never opens as the other's, whatever their ids.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Generator
from datetime import datetime, timedelta
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.files.storage import default_storage
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from retention.policies import get_policy
from retention.records.crypto import NONCE_BYTES, DecryptionError

logger = logging.getLogger(__name__)

MAGIC = b"QEX1"
CHUNK_BYTES = 64 * 1024
# A header may not make a reader take more than this at once (a damaged file).
MAX_CHUNK_BYTES = 16 * 1024 * 1024
TAG_BYTES = 16
HEADER = struct.Struct(">4sI")


# The kinds of sealed file: a request's or conversation's export, an audit-log export.
KINDS = ("export", "audit-export")


def _aad(kind: str, export_id: int, index: int, last: bool) -> bytes:
    if kind not in KINDS:
        raise ValueError(f"unknown kind of sealed file: {kind!r}")
    return b"qingli:%s:%d:chunk:%d:%s" % (
        kind.encode(),
        export_id,
        index,
        b"last" if last else b"more",
    )


class SealedWriter:
    """Writes plaintext to ``handle`` as sealed chunks; ``close()`` seals the last one.

    Holds at most one chunk of plaintext, whatever the size of the writes."""

    def __init__(
        self,
        handle: IO[bytes],
        data_key: bytes,
        export_id: int,
        chunk_bytes: int | None = None,
        *,
        kind: str = "export",
    ) -> None:
        _aad(kind, export_id, 0, True)  # an unknown kind fails before any byte is written
        self.handle = handle
        self.kind = kind
        self.export_id = export_id
        self.chunk_bytes = chunk_bytes or CHUNK_BYTES
        self._aead = AESGCM(data_key)
        self._buffer = bytearray()
        self._index = 0
        self._closed = False
        handle.write(HEADER.pack(MAGIC, self.chunk_bytes))

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("the export file is already sealed")
        self._buffer += data
        # Keep at least one byte back: only close() knows which chunk is the last.
        full = (len(self._buffer) - 1) // self.chunk_bytes
        if full <= 0:
            return
        with memoryview(self._buffer) as view:
            for i in range(full):
                start = i * self.chunk_bytes
                self._seal(bytes(view[start : start + self.chunk_bytes]), last=False)
        del self._buffer[: full * self.chunk_bytes]

    def close(self) -> None:
        if not self._closed:
            self._seal(bytes(self._buffer), last=True)
            self._buffer.clear()
            self._closed = True

    def _seal(self, plaintext: bytes, *, last: bool) -> None:
        nonce = os.urandom(NONCE_BYTES)
        aad = _aad(self.kind, self.export_id, self._index, last)
        self.handle.write(nonce + self._aead.encrypt(nonce, plaintext, aad))
        self._index += 1


def opened(
    handle: IO[bytes], data_key: bytes, export_id: int, *, kind: str = "export"
) -> Generator[bytes, None, None]:
    """The plaintext of a sealed file, a chunk at a time. A chunk that does not
    authenticate (or a file cut short) raises DecryptionError before any of its bytes
    are yielded; the handle is closed when the iterator ends or is closed."""
    try:
        header = _read(handle, HEADER.size)
        if len(header) != HEADER.size:
            raise DecryptionError(f"export {export_id}: the file has no header")
        magic, chunk_bytes = HEADER.unpack(header)
        if magic != MAGIC or not 0 < chunk_bytes <= MAX_CHUNK_BYTES:
            raise DecryptionError(f"export {export_id}: not a sealed export file")
        aead = AESGCM(data_key)
        sealed_bytes = NONCE_BYTES + chunk_bytes + TAG_BYTES
        chunk = _read(handle, sealed_bytes)
        index = 0
        while True:
            # The last chunk is the one nothing follows: read one ahead to know.
            following = _read(handle, sealed_bytes) if len(chunk) == sealed_bytes else b""
            last = not following
            if len(chunk) < NONCE_BYTES + TAG_BYTES:
                raise DecryptionError(f"export {export_id}: chunk {index} is cut short")
            try:
                plaintext = aead.decrypt(
                    chunk[:NONCE_BYTES], chunk[NONCE_BYTES:], _aad(kind, export_id, index, last)
                )
            except InvalidTag as exc:
                raise DecryptionError(
                    f"export {export_id}: chunk {index} fails authentication"
                ) from exc
            if plaintext:
                yield plaintext
            if last:
                return
            chunk, index = following, index + 1
    finally:
        handle.close()


def _read(handle: IO[bytes], size: int) -> bytes:
    """``size`` bytes, fewer only at the end of the file (storages may return less)."""
    data = handle.read(size)
    while data and len(data) < size:
        more = handle.read(size - len(data))
        if not more:
            break
        data += more
    return data


def expire_sealed(
    model: type[models.Model],
    *,
    ready: str,
    expired: str,
    record: Callable[[models.Model, int], None],
    now: datetime | None = None,
    related: tuple[str, ...] = (),
) -> list[int]:
    """Expire the ready sealed files of ``model`` finished more than ``export_keep_days``
    ago (and any written before they were sealed: no key). Each row's key is destroyed
    first, in the transaction that records the expiry (``record(row, keep_days)``), so the
    file is unreadable even if deleting it fails; then the file is deleted. The row, its
    checksum and counts stay. Running it again expires nothing twice."""
    now = now or timezone.now()
    keep_days = get_policy("export_keep_days")
    due = model.objects.filter(
        Q(finished_at__lt=now - timedelta(days=keep_days)) | Q(wrapped_key__isnull=True),
        status=ready,
    )
    done = []
    for row in list(due.select_related(*related).order_by("pk")):
        with transaction.atomic():
            taken = model.objects.filter(pk=row.pk, status=ready).update(
                status=expired, expired_at=now, wrapped_key=None, file=""
            )
            if not taken:
                continue
            record(row, keep_days)
        done.append(row.pk)
        if row.file.name:
            try:
                default_storage.delete(row.file.name)
            except Exception:
                logger.exception(
                    "%s %s expired (key destroyed) but %s could not be deleted",
                    model._meta.verbose_name,
                    row.pk,
                    row.file.name,
                )
    return done
