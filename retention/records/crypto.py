"""Encryption at rest: one AES-256-GCM data key per conversation, wrapped by the master key.

Destroying a conversation's wrapped key makes every copy of its ciphertext in the live
database and storage unreadable at once: crypto-shredding. A backup taken earlier still
holds the wrapped key, under the master key of its day; rotating the master key
(``manage.py rotate_master_key``) re-wraps every live data key and lets the old master
key be destroyed, after which those backups read nothing either.

A wrapped key is ``b"QK1" ‖ master key id (8 bytes) ‖ nonce ‖ ciphertext``, so each
names the master key that can open it. Export files (a request's or conversation's, and
the audit log's) have data keys of their own, wrapped the same way and bound to their
export and its kind (see ``retention.exports.sealed``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import sys
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from retention.models import DataKey

NONCE_BYTES = 12
WRAP_FORMAT = b"QK1"
KEY_ID_BYTES = 8


class KeyDestroyedError(Exception):
    """The conversation's data key is gone; its records can never be read again."""


class DecryptionError(Exception):
    """Ciphertext failed authentication: wrong key, wrong conversation, or tampered bytes."""


def _parse_master_key(text: str, name: str = "QINGLI_MASTER_KEY") -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImproperlyConfigured(f"{name} must be base64 of 32 random bytes") from exc
    if len(key) != 32:
        raise ImproperlyConfigured(f"{name} must decode to 32 bytes (AES-256), not {len(key)}")
    return key


def forget_keys() -> None:
    """Drop cached master keys (after the configuration changed, e.g. in tests)."""
    master_key.cache_clear()
    master_keys.cache_clear()


def master_key_id(key: bytes) -> bytes:
    """A short public name for a master key (never the key itself)."""
    return hashlib.sha256(b"qingli:master-key-id:" + key).digest()[:KEY_ID_BYTES]


@lru_cache(maxsize=1)
def master_keys() -> dict[bytes, bytes]:
    """Every master key that may unwrap: the current one and any being retired."""
    keys = {master_key_id(master_key()): master_key()}
    for i, text in enumerate(settings.QINGLI_RETIRED_MASTER_KEYS):
        key = _parse_master_key(text, f"QINGLI_RETIRED_MASTER_KEYS[{i}]")
        keys.setdefault(master_key_id(key), key)
    return keys


def wrapped_with(wrapped: bytes) -> bytes:
    """The id of the master key a wrapped data key was made with."""
    return bytes(wrapped)[len(WRAP_FORMAT) : len(WRAP_FORMAT) + KEY_ID_BYTES]


@lru_cache(maxsize=1)
def master_key() -> bytes:
    if settings.QINGLI_MASTER_KEY:
        return _parse_master_key(settings.QINGLI_MASTER_KEY)
    if not settings.QINGLI_ALLOW_LOCAL_MASTER_KEY:
        raise ImproperlyConfigured(
            "QINGLI_MASTER_KEY is not set. Production needs it (base64 of 32 random bytes, "
            "kept outside the database and its backups); set QINGLI_ALLOW_LOCAL_MASTER_KEY=true "
            "only to try Qingli out with a generated key file."
        )
    path = settings.QINGLI_MASTER_KEY_FILE
    try:
        # O_EXCL: of two processes starting at once, exactly one creates the key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(AESGCM.generate_key(bit_length=256)).decode())
        sys.stderr.write(
            f"Qingli: QINGLI_MASTER_KEY is not set; generated a local master key in {path}. "
            "Fine for trying Qingli out; set QINGLI_MASTER_KEY in production.\n"
        )
    return _parse_master_key(path.read_text())


def _wrap_aad(conversation_id: int) -> bytes:
    return b"qingli:data-key:%d" % conversation_id


def _record_aad(conversation_id: int) -> bytes:
    return b"qingli:record:%d" % conversation_id


def _export_wrap_aad(export_id: int, kind: str = "export") -> bytes:
    """``kind``: "export" (a request's or conversation's) or "audit-export" (the audit
    log's); a key wrapped for one kind never unwraps as the other's."""
    if kind not in ("export", "audit-export"):
        raise ValueError(f"unknown kind of export key: {kind!r}")
    return b"qingli:data-key:%s:%d" % (kind.encode(), export_id)


def _wrap(aad: bytes, data_key: bytes) -> bytes:
    key = master_key()
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, data_key, aad)
    return WRAP_FORMAT + master_key_id(key) + nonce + sealed


def _unwrap(aad: bytes, wrapped: bytes, owner: str) -> bytes:
    """The data key of ``owner`` ("conversation 7", "export 3"), for error messages."""
    if not wrapped.startswith(WRAP_FORMAT):
        raise DecryptionError(f"{owner}: unknown key format")
    key = master_keys().get(wrapped_with(wrapped))
    if key is None:
        raise DecryptionError(
            f"{owner}: its key was wrapped by a master key that is no longer configured (retired)"
        )
    body = wrapped[len(WRAP_FORMAT) + KEY_ID_BYTES :]
    try:
        return AESGCM(key).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise DecryptionError(f"{owner}: cannot unwrap key") from exc


def new_wrapped_key(conversation_id: int) -> bytes:
    """A fresh data key for a conversation, returned wrapped by the current master key."""
    return _wrap(_wrap_aad(conversation_id), AESGCM.generate_key(bit_length=256))


def rewrapped(conversation_id: int, wrapped: bytes | memoryview) -> bytes:
    """The same data key, wrapped by the current master key (for rotation)."""
    aad = _wrap_aad(conversation_id)
    return _wrap(aad, _unwrap(aad, bytes(wrapped), f"conversation {conversation_id}"))


# An export file has a data key of its own, wrapped the same way but bound to the export.


def new_export_key(export_id: int, *, kind: str = "export") -> tuple[bytes, bytes]:
    """A fresh data key for an export's file: (the key, the key wrapped by the current
    master key, for the export's row)."""
    data_key = AESGCM.generate_key(bit_length=256)
    return data_key, _wrap(_export_wrap_aad(export_id, kind), data_key)


def export_key(
    export_id: int, wrapped: bytes | memoryview | None, *, kind: str = "export"
) -> bytes:
    """The data key of an export's file. None (destroyed when it expired) is gone."""
    if wrapped is None:
        raise KeyDestroyedError(f"{kind} {export_id}: data key destroyed")
    return _unwrap(_export_wrap_aad(export_id, kind), bytes(wrapped), f"{kind} {export_id}")


def rewrapped_export_key(
    export_id: int, wrapped: bytes | memoryview, *, kind: str = "export"
) -> bytes:
    """An export's data key, wrapped by the current master key (for rotation)."""
    return _wrap(_export_wrap_aad(export_id, kind), export_key(export_id, wrapped, kind=kind))


def rewrapped_audit_export_key(export_id: int, wrapped: bytes | memoryview) -> bytes:
    """An audit-log export's data key, wrapped by the current master key (for rotation)."""
    return rewrapped_export_key(export_id, wrapped, kind="audit-export")


def current_master_key_id() -> bytes:
    return master_key_id(master_key())


class ConversationCipher:
    """Encrypts and decrypts the records of one conversation."""

    def __init__(self, conversation_id: int, wrapped_key: bytes | memoryview | None):
        if wrapped_key is None:
            raise KeyDestroyedError(f"conversation {conversation_id}: data key destroyed")
        data_key = _unwrap(
            _wrap_aad(conversation_id), bytes(wrapped_key), f"conversation {conversation_id}"
        )
        self._aead = AESGCM(data_key)
        self._aad = _record_aad(conversation_id)
        self.conversation_id = conversation_id

    @classmethod
    def for_conversation(cls, conversation) -> ConversationCipher:
        wrapped = (
            DataKey.objects.filter(conversation_id=conversation.pk)
            .values_list("wrapped_key", flat=True)
            .first()
        )
        return cls(conversation.pk, wrapped)

    def encrypt(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, self._aad)

    def decrypt(self, blob: bytes | memoryview) -> bytes:
        blob = bytes(blob)
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], self._aad)
        except InvalidTag as exc:
            raise DecryptionError(f"conversation {self.conversation_id}: bad ciphertext") from exc

    def encrypt_text(self, text: str) -> bytes:
        return self.encrypt(text.encode())

    def decrypt_text(self, blob: bytes | memoryview) -> str:
        return self.decrypt(blob).decode()
