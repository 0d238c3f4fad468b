"""Readers for the two encrypted layouts of the previous system (read-only).

This is the only module (with its test and test data) allowed to spell the
old brand tokens: every other module imports the constants below and speaks
of "the legacy layout". Nothing here writes these layouts; files are
migrated to ``format.py`` when they are rewritten (``dubbing migrate``, or
saving a character store).

Chunked files (``LEGACY_FILE_MAGIC``, 20-byte header)::

    0   7  magic b"ANV2ENC"
    7   1  layout version, always 0x01
    8   4  chunk size C (u32 big-endian)
    12  8  nonce prefix
    20  .. chunks: AESGCM(key).encrypt(prefix || u32(i), pt_i, aad = the 20 header bytes)

Every chunk but the last holds C plaintext bytes, the last 1..C; an empty
plaintext is one tag-only chunk. Nothing marks the final chunk, so a file
cut exactly at a chunk boundary decrypts silently short: that cannot be
detected here (migration records the length and digest it produced); a
trailing partial chunk is rejected with ``TruncatedError``.

Character stores (``LEGACY_STORE_MAGIC``, 21-byte header)::

    0   8  magic b"ANV2CHAR"
    8   1  store format version, always 0x01
    9   12 nonce
    21  .. AESGCM(key).encrypt(nonce, utf-8 JSON payload, LEGACY_STORE_AAD)

Legacy files carry no key id: each key of the keyring is tried.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dubbing_assets.core.crypto.errors import (
    ChunkOrderError,
    CorruptChunkError,
    HeaderTamperedError,
    TruncatedAtChunkBoundaryError,
    TruncatedError,
    TruncatedInChunkError,
    UnsupportedVersionError,
    WrongKeyError,
)

LEGACY_FILE_MAGIC = b"ANV2ENC"
LEGACY_FILE_VERSION = 1
LEGACY_FILE_HEADER_SIZE = 20
LEGACY_FILE_FORMAT = "legacy-chunked"

LEGACY_STORE_MAGIC = b"ANV2CHAR"
LEGACY_STORE_VERSION = 1
LEGACY_STORE_HEADER_SIZE = 21
LEGACY_STORE_AAD = b"character_store:v1"
LEGACY_STORE_FORMAT = "legacy-store"

#: Prefix of the previous system's temporary decrypted copies (cleanup must recognise it).
LEGACY_TEMP_PREFIX = "animev2_dec_"

#: Every legacy magic: a file starting with one of these is in a legacy layout.
LEGACY_MAGICS: tuple[bytes, ...] = (LEGACY_FILE_MAGIC, LEGACY_STORE_MAGIC)

TAG_SIZE = 16
_NONCE_PREFIX_SIZE = 8
_STORE_NONCE_SIZE = 12

_WRONG_KEY = ("none of the {n} key(s) in your keyring decrypts this legacy-layout file. Import the key it "
              "was written with (`dubbing keys import KEYFILE`); if you have, the file is damaged.")


def is_legacy(header_bytes: bytes) -> bool:
    """True if ``header_bytes`` (the first bytes of a file) start with a legacy magic."""
    return legacy_format(header_bytes) is not None


def legacy_format(header_bytes: bytes) -> str | None:
    """``LEGACY_FILE_FORMAT``, ``LEGACY_STORE_FORMAT`` or None for the first bytes of a file."""
    if header_bytes.startswith(LEGACY_STORE_MAGIC):
        return LEGACY_STORE_FORMAT
    if header_bytes.startswith(LEGACY_FILE_MAGIC):
        return LEGACY_FILE_FORMAT
    return None


@dataclass(frozen=True)
class LegacyFileHeader:
    """The 20-byte header of a legacy chunked file (``raw`` is the chunks' AAD)."""

    version: int
    chunk_size: int
    nonce_prefix: bytes
    raw: bytes


def parse_file_header(src: BinaryIO, *, path: Path | str | None = None) -> LegacyFileHeader:
    """Read the legacy chunked header at the start of ``src``."""
    raw = src.read(LEGACY_FILE_HEADER_SIZE) or b""
    if not raw.startswith(LEGACY_FILE_MAGIC):
        raise ValueError("not a legacy chunked file")  # callers sniff the magic first
    if len(raw) >= len(LEGACY_FILE_MAGIC) + 1 and raw[7] != LEGACY_FILE_VERSION:
        raise UnsupportedVersionError(
            f"legacy layout version {raw[7]} is unknown (only {LEGACY_FILE_VERSION} exists); "
            "the file is damaged or not from the previous system.", path=path)
    if len(raw) < LEGACY_FILE_HEADER_SIZE:
        raise TruncatedError("the legacy-layout file ends inside its header. Restore it from a backup.",
                             path=path, at_chunk_boundary=False)
    (chunk_size,) = struct.unpack_from(">I", raw, 8)
    if chunk_size == 0:
        raise HeaderTamperedError("the legacy-layout header has chunk size 0: it is damaged. "
                                  "Restore the file from a backup.", path=path)
    return LegacyFileHeader(raw[7], chunk_size, raw[12:20], raw)


def _stream_size(src: BinaryIO) -> int:
    here = src.tell()
    end = src.seek(0, 2)
    src.seek(here)
    return end


def _chunk_sizes(header: LegacyFileHeader, body: int, path: Path | str | None) -> list[int]:
    """On-disk chunk sizes for a body of ``body`` bytes; rejects a trailing partial chunk."""
    full = header.chunk_size + TAG_SIZE
    if body == 0:
        raise TruncatedAtChunkBoundaryError(
            "the legacy-layout file has a header but no chunk (even an empty plaintext has one): "
            "it was cut short. Restore it from a backup.", path=path)
    count = -(-body // full)
    last = body - (count - 1) * full
    minimum = TAG_SIZE if count == 1 else TAG_SIZE + 1
    if last < minimum:
        raise TruncatedInChunkError(
            f"the legacy-layout file ends with a partial chunk of {last} bytes (a chunk needs at least "
            f"{minimum}): it was cut short. Restore it from a backup.", path=path)
    return [full] * (count - 1) + [last]


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def _try(aes: AESGCM, header: LegacyFileHeader, index: int, data: bytes) -> bytes | None:
    try:
        return aes.decrypt(_nonce(header.nonce_prefix, index), data, header.raw)
    except InvalidTag:
        return None


def _other_index(aes: AESGCM, header: LegacyFileHeader, sizes: list[int], data: bytes,
                 position: int) -> int | None:
    for index, size in enumerate(sizes):
        if index != position and size == len(data) and _try(aes, header, index, data) is not None:
            return index
    return None


def decrypt_file_stream(src: BinaryIO, dst: BinaryIO | None, header: LegacyFileHeader, keys: Sequence[bytes],
                        *, path: Path | str | None = None) -> tuple[str, int]:
    """Decrypt a legacy chunked file (header already read) into ``dst``, one chunk at a time.

    ``src`` must be seekable (its size tells where the last chunk ends).
    Returns (plaintext sha256, plaintext length).
    """
    sizes = _chunk_sizes(header, _stream_size(src) - LEGACY_FILE_HEADER_SIZE, path)
    count = len(sizes)
    full = header.chunk_size + TAG_SIZE
    digest = hashlib.sha256()
    length = 0
    aes: AESGCM | None = None
    for index, size in enumerate(sizes):
        data = src.read(size)
        if len(data) != size:  # the file changed under us
            raise TruncatedInChunkError("the legacy-layout file shrank while it was read.", path=path)
        if aes is None:
            plain = None
            for key in keys:
                candidate = AESGCM(key)
                plain = _try(candidate, header, 0, data)
                if plain is not None:
                    aes = candidate
                    break
            if aes is None:
                for key in keys:
                    other = _other_index(AESGCM(key), header, sizes, data, 0)
                    if other is not None:
                        raise ChunkOrderError(
                            f"chunk 0 holds the data of chunk {other}: chunks were swapped or moved. "
                            "Restore the file from a backup.", position=0, belongs_at=other, path=path)
                raise WrongKeyError(_WRONG_KEY.format(n=len(keys)), path=path)
        else:
            plain = _try(aes, header, index, data)
        if plain is None:
            other = _other_index(aes, header, sizes, data, index)
            if other is not None:
                raise ChunkOrderError(
                    f"chunk {index} holds the data of chunk {other}: chunks were swapped or moved. "
                    "Restore the file from a backup.", position=index, belongs_at=other, path=path)
            if index == count - 1 and size < full:
                raise TruncatedInChunkError(
                    f"the last chunk ({size} bytes) does not authenticate: the file was cut inside it or "
                    "damaged. Restore it from a backup.", path=path)
            raise CorruptChunkError(
                f"chunk {index} of {count} fails authentication: it was modified or damaged. "
                "Restore the file from a backup.", index=index, path=path)
        digest.update(plain)
        length += len(plain)
        if dst is not None:
            dst.write(plain)
    return digest.hexdigest(), length


def plaintext_size(chunk_size: int, file_size: int) -> int | None:
    """Plaintext length of a legacy chunked file of ``file_size`` bytes (None if not well formed)."""
    body = file_size - LEGACY_FILE_HEADER_SIZE
    full = chunk_size + TAG_SIZE
    if body <= 0 or chunk_size <= 0:
        return None
    count = -(-body // full)
    last = body - (count - 1) * full
    if last < TAG_SIZE:
        return None
    return body - count * TAG_SIZE


def decrypt_store(blob: bytes, keys: Sequence[bytes], *, path: Path | str | None = None) -> bytes:
    """Decrypt a legacy character store; returns the UTF-8 JSON payload bytes."""
    if not blob.startswith(LEGACY_STORE_MAGIC):
        raise ValueError("not a legacy character store")  # callers sniff the magic first
    if len(blob) > len(LEGACY_STORE_MAGIC) and blob[8] != LEGACY_STORE_VERSION:
        raise UnsupportedVersionError(
            f"legacy store version {blob[8]} is unknown (only {LEGACY_STORE_VERSION} exists); "
            "the file is damaged or not from the previous system.", path=path)
    if len(blob) < LEGACY_STORE_HEADER_SIZE + TAG_SIZE:
        raise TruncatedInChunkError("the legacy-layout character store is cut short. "
                                    "Restore it from a backup.", path=path)
    nonce = blob[9:LEGACY_STORE_HEADER_SIZE]
    body = memoryview(blob)[LEGACY_STORE_HEADER_SIZE:]
    for key in keys:
        try:
            return AESGCM(key).decrypt(nonce, bytes(body), LEGACY_STORE_AAD)
        except InvalidTag:
            continue
    raise WrongKeyError(_WRONG_KEY.format(n=len(keys)), path=path)
