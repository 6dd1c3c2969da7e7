"""The sealed export file format: chunks round-trip at any size and write pattern, and
every way of changing, moving, cutting or extending the file fails authentication before
any of the affected plaintext comes out."""

from __future__ import annotations

import io
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from retention.exports.sealed import HEADER, MAGIC, TAG_BYTES, SealedWriter, opened
from retention.records.crypto import NONCE_BYTES, DecryptionError

CHUNK = 64
SEALED = NONCE_BYTES + CHUNK + TAG_BYTES
KEY = AESGCM.generate_key(bit_length=256)


def seal(plaintext: bytes, *, export_id: int = 7, writes: int = 1, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    writer = SealedWriter(out, key, export_id, chunk_bytes=CHUNK)
    step = max(1, len(plaintext) // writes)
    for start in range(0, len(plaintext), step):
        writer.write(plaintext[start : start + step])
    writer.close()
    return out.getvalue()


def unseal(data: bytes, *, export_id: int = 7, key: bytes = KEY) -> bytes:
    return b"".join(opened(io.BytesIO(data), key, export_id))


def chunks_of(data: bytes) -> list[bytes]:
    body = data[HEADER.size :]
    return [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 10 * CHUNK + 5])
@pytest.mark.parametrize("writes", [1, 7, 1000])
def test_any_size_and_write_pattern_round_trips(size, writes):
    plaintext = os.urandom(size)
    data = seal(plaintext, writes=writes)
    assert data.startswith(MAGIC)
    assert unseal(data) == plaintext
    # Full chunks, then a last one of 1 to CHUNK bytes (one empty chunk for an empty file).
    expected_chunks = max(1, -(-size // CHUNK))
    assert len(chunks_of(data)) == expected_chunks
    assert len(data) == HEADER.size + size + expected_chunks * (NONCE_BYTES + TAG_BYTES)


def test_the_plaintext_is_nowhere_in_the_file():
    plaintext = "收货地址：杭州市西湖区文三路 398 号，电话 13800138000\n".encode() * 20
    data = seal(plaintext)
    assert b"13800138000" not in data
    assert "杭州".encode() not in data
    assert seal(plaintext) != data  # fresh nonces every time


def test_memory_stays_bounded_by_one_chunk():
    out = io.BytesIO()
    writer = SealedWriter(out, KEY, 1, chunk_bytes=CHUNK)
    writer.write(b"x" * (100 * CHUNK + 3))
    assert len(writer._buffer) <= CHUNK
    writer.close()
    reader = opened(io.BytesIO(out.getvalue()), KEY, 1)
    assert all(len(piece) <= CHUNK for piece in reader)


def tampered(data: bytes, how: str) -> bytes:
    chunks = chunks_of(data)
    header = data[: HEADER.size]
    if how == "flip a byte":
        middle = bytearray(chunks[1])
        middle[NONCE_BYTES + 3] ^= 0x01
        chunks[1] = bytes(middle)
    elif how == "swap two chunks":
        chunks[0], chunks[1] = chunks[1], chunks[0]
    elif how == "drop a chunk":
        del chunks[1]
    elif how == "cut at a chunk boundary":
        chunks = chunks[:2]
    elif how == "cut inside a chunk":
        chunks[-1] = chunks[-1][:-5]
    elif how == "append a chunk":
        chunks.append(chunks[1])
    elif how == "append bytes":
        chunks.append(b"\x00" * 10)
    elif how == "change the chunk size":
        header = HEADER.pack(MAGIC, CHUNK + 1)
    return header + b"".join(chunks)


@pytest.mark.parametrize(
    "how",
    [
        "flip a byte",
        "swap two chunks",
        "drop a chunk",
        "cut at a chunk boundary",
        "cut inside a chunk",
        "append a chunk",
        "append bytes",
        "change the chunk size",
    ],
)
def test_any_change_to_the_file_fails_closed(how):
    plaintext = os.urandom(4 * CHUNK + 10)
    data = tampered(seal(plaintext), how)
    received = b""
    with pytest.raises(DecryptionError):
        for piece in opened(io.BytesIO(data), KEY, 7):
            received += piece
    # What came out before the failure is the true beginning, never altered bytes.
    assert plaintext.startswith(received)
    assert len(received) < len(plaintext)


def test_a_file_opens_only_as_its_own_export_and_with_its_own_key():
    data = seal(b"evidence" * 30, export_id=7)
    with pytest.raises(DecryptionError):
        unseal(data, export_id=8)
    with pytest.raises(DecryptionError):
        unseal(data, key=AESGCM.generate_key(bit_length=256))


@pytest.mark.parametrize(
    "data", [b"", b"QEX", b"QEX2" + HEADER.pack(MAGIC, CHUNK)[4:], HEADER.pack(MAGIC, 1 << 30)]
)
def test_what_is_not_a_sealed_file_is_refused(data):
    with pytest.raises(DecryptionError):
        unseal(data)


def test_the_handle_is_closed_whether_reading_ends_or_stops():
    handle = io.BytesIO(seal(os.urandom(3 * CHUNK)))
    reader = opened(handle, KEY, 7)
    next(reader)
    reader.close()
    assert handle.closed
    handle = io.BytesIO(seal(b"abc"))
    assert b"".join(opened(handle, KEY, 7)) == b"abc"
    assert handle.closed
