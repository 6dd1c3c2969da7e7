"""Encryption at rest: one AES-256-GCM data key per conversation, wrapped by the master key.

Destroying a conversation's wrapped key makes every copy of its ciphertext (database
rows, attachment files, backups of either) unreadable: crypto-shredding.
"""

from __future__ import annotations

import base64
import binascii
import os
import sys
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

NONCE_BYTES = 12


class KeyDestroyedError(Exception):
    """The conversation's data key is gone; its records can never be read again."""


class DecryptionError(Exception):
    """Ciphertext failed authentication: wrong key, wrong conversation, or tampered bytes."""


def _parse_master_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImproperlyConfigured("QINGLI_MASTER_KEY must be base64 of 32 random bytes") from exc
    if len(key) != 32:
        raise ImproperlyConfigured(
            f"QINGLI_MASTER_KEY must decode to 32 bytes (AES-256), not {len(key)}"
        )
    return key


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


def new_wrapped_key(conversation_id: int) -> bytes:
    """A fresh data key for a conversation, returned wrapped (nonce ‖ ciphertext)."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(master_key()).encrypt(nonce, data_key, _wrap_aad(conversation_id))


class ConversationCipher:
    """Encrypts and decrypts the records of one conversation."""

    def __init__(self, conversation_id: int, wrapped_key: bytes | memoryview | None):
        if wrapped_key is None:
            raise KeyDestroyedError(f"conversation {conversation_id}: data key destroyed")
        wrapped = bytes(wrapped_key)
        try:
            data_key = AESGCM(master_key()).decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_aad(conversation_id)
            )
        except InvalidTag as exc:
            raise DecryptionError(f"conversation {conversation_id}: cannot unwrap key") from exc
        self._aead = AESGCM(data_key)
        self._aad = _record_aad(conversation_id)
        self.conversation_id = conversation_id

    @classmethod
    def for_conversation(cls, conversation) -> ConversationCipher:
        from retention.models import DataKey

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
