"""Encryption at rest: a small surface that is hard to misuse.

Everything a caller needs is here::

    ring = Keyring.load_or_create(settings.keyring)
    info = encrypt_file(src, dst, ring)          # FileInfo: key id, plaintext size, sha256
    info = decrypt_file(dst, out, ring)          # new format or a legacy layout, detected
    blob = encrypt_bytes(b"...", ring); data = decrypt_bytes(blob, ring)
    inspect_file(dst)                            # HeaderInfo, no key needed

Why so few knobs: the format (``format.py``), its keys and nonces are fixed
here; callers choose only paths and a keyring. Writers emit only the new
format; readers also accept the legacy layouts (``legacy.py``). File
functions stream one chunk at a time (constant memory), hash the plaintext as
it passes, and write atomically: on any error the destination is untouched
and no temp file is left. Decrypted outputs and temporary plaintext are
created 0600.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dubbing_assets.core.crypto import legacy
from dubbing_assets.core.crypto.errors import (
    ChunkLimitError,
    ChunkOrderError,
    CorruptChunkError,
    CryptoError,
    EmptyFileError,
    HeaderTamperedError,
    KeyringError,
    KeyringPermissionWarning,
    NotEncryptedError,
    TrailingDataError,
    TruncatedAtChunkBoundaryError,
    TruncatedError,
    TruncatedInChunkError,
    UnknownKeyIdError,
    UnsupportedVersionError,
    WrongKeyError,
)
from dubbing_assets.core.crypto.files import (
    TEMP_PREFIX,
    atomic_output,
    atomic_write_bytes,
    cleanup_stale_temporaries,
    plaintext_tempfile,
)
from dubbing_assets.core.crypto.format import (
    DEFAULT_CHUNK_SIZE,
    FORMAT_NAME,
    LAYOUT_VERSION,
    MAGIC,
    decrypt_stream,
    encrypt_stream,
    parse_header,
    select_key,
)
from dubbing_assets.core.crypto.keyring import ENV_KEY_VAR, Keyring, open_keyring

#: Format names as they appear in ``FileInfo.format`` / ``HeaderInfo.format``.
FORMAT_NEW = FORMAT_NAME
FORMAT_LEGACY_CHUNKED = legacy.LEGACY_FILE_FORMAT
FORMAT_LEGACY_STORE = legacy.LEGACY_STORE_FORMAT

#: A legacy character store is read whole; anything bigger is not one.
_MAX_LEGACY_STORE = 256 << 20
_SNIFF = 8
_CUT_IN_HEADER = "the file ends inside its header; it was cut short. Re-create it from its source."


@dataclass(frozen=True)
class FileInfo:
    """What an encryption or decryption produced (or read): format, key and plaintext digest."""

    format: str  # FORMAT_NEW, FORMAT_LEGACY_CHUNKED or FORMAT_LEGACY_STORE
    version: int
    key_id: str | None  # None for legacy layouts (they carry no key id)
    plaintext_size: int
    sha256: str  # hex SHA-256 of the plaintext


@dataclass(frozen=True)
class HeaderInfo:
    """What a header says, read without a key (nothing is authenticated by ``inspect_file``)."""

    format: str
    version: int
    key_id: str | None
    chunk_size: int | None  # None for a legacy character store (not chunked)
    plaintext_size: int | None  # None when the header does not tell
    header_size: int


def _sniff(prefix: bytes, path: Path | str | None) -> str:
    if not prefix:
        raise EmptyFileError(
            "the file is empty (0 bytes): it was never written completely. Re-create it from its source.",
            path=path)
    if prefix.startswith(MAGIC):
        return FORMAT_NEW
    found = legacy.legacy_format(prefix)
    if found is not None:
        return found
    if len(prefix) < _SNIFF and any(m.startswith(prefix) for m in (MAGIC, *legacy.LEGACY_MAGICS)):
        raise TruncatedError(_CUT_IN_HEADER, path=path, at_chunk_boundary=False)
    raise NotEncryptedError(
        "this file is not encrypted in any format this project knows (no known header). If it is a "
        "plaintext file there is nothing to decrypt; otherwise it is damaged.", path=path)


def _candidates(keyring: Keyring) -> list[tuple[str, bytes]]:
    return [(kid, keyring.get(kid)) for kid in keyring.keys()]


def _decrypt_open(src: BinaryIO, dst: BinaryIO | None, keyring: Keyring, path: Path | str | None) -> FileInfo:
    prefix = src.read(_SNIFF) or b""
    src.seek(0)
    kind = _sniff(prefix, path)
    if kind == FORMAT_NEW:
        header = parse_header(src, path=path)
        key = select_key(header, _candidates(keyring), path=path)
        sha, size = decrypt_stream(src, dst, header, key, path=path)
        return FileInfo(FORMAT_NEW, header.version, header.key_id, size, sha)
    keys = [key for _, key in _candidates(keyring)]
    if kind == FORMAT_LEGACY_CHUNKED:
        lheader = legacy.parse_file_header(src, path=path)
        sha, size = legacy.decrypt_file_stream(src, dst, lheader, keys, path=path)
        return FileInfo(FORMAT_LEGACY_CHUNKED, lheader.version, None, size, sha)
    blob = src.read(_MAX_LEGACY_STORE + 1)
    if len(blob) > _MAX_LEGACY_STORE:
        raise NotEncryptedError("the file starts like a legacy-layout character store but is far too large "
                                "to be one; it is damaged.", path=path)
    payload = legacy.decrypt_store(blob, keys, path=path)
    if dst is not None:
        dst.write(payload)
    return FileInfo(FORMAT_LEGACY_STORE, blob[len(legacy.LEGACY_STORE_MAGIC)], None, len(payload),
                    hashlib.sha256(payload).hexdigest())


def encrypt_file(src: Path, dst: Path, keyring: Keyring, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> FileInfo:
    """Encrypt ``src`` into ``dst`` with the keyring's active key (new format, atomic, constant memory).

    ``src`` and ``dst`` may be the same path (the file is replaced only once
    the new one is complete). ``dst`` is created 0600.
    """
    src, dst = Path(src), Path(dst)
    key_id = keyring.active_id
    key = keyring.get(key_id)
    with open(src, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        with atomic_output(dst) as out:
            sha = encrypt_stream(fh, out, key=key, key_id=key_id, plaintext_length=size,
                                 chunk_size=chunk_size)
    return FileInfo(FORMAT_NEW, LAYOUT_VERSION, key_id, size, sha)


def decrypt_file(src: Path, dst: Path, keyring: Keyring) -> FileInfo:
    """Decrypt ``src`` (new format or a legacy layout, detected) into ``dst`` (0600, atomic, constant memory).

    Nothing is left at ``dst`` unless every chunk authenticated. Legacy files
    carry no key id: each key of the keyring is tried, the active one first.
    """
    src, dst = Path(src), Path(dst)
    with open(src, "rb") as fh, atomic_output(dst) as out:
        return _decrypt_open(fh, out, keyring, src)


def verify_file(src: Path, keyring: Keyring) -> FileInfo:
    """Authenticate every chunk of ``src`` and return its plaintext digest, writing nothing."""
    src = Path(src)
    with open(src, "rb") as fh:
        return _decrypt_open(fh, None, keyring, src)


def encrypt_bytes(data: bytes, keyring: Keyring, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> bytes:
    """Encrypt ``data`` with the keyring's active key (new format)."""
    key_id = keyring.active_id
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, key=keyring.get(key_id), key_id=key_id,
                   plaintext_length=len(data), chunk_size=chunk_size)
    return out.getvalue()


def decrypt_bytes(blob: bytes, keyring: Keyring, *, source: Path | str | None = None) -> bytes:
    """Decrypt ``blob`` (new format or a legacy layout, detected).

    ``source`` only names where the bytes came from in error messages.
    """
    out = io.BytesIO()
    _decrypt_open(io.BytesIO(blob), out, keyring, source)
    return out.getvalue()


def _inspect_open(src: BinaryIO, total: int, path: Path | str | None) -> HeaderInfo:
    prefix = src.read(_SNIFF) or b""
    src.seek(0)
    kind = _sniff(prefix, path)
    if kind == FORMAT_NEW:
        h = parse_header(src, path=path)
        return HeaderInfo(FORMAT_NEW, h.version, h.key_id, h.chunk_size, h.plaintext_length, h.size)
    if kind == FORMAT_LEGACY_CHUNKED:
        lh = legacy.parse_file_header(src, path=path)
        return HeaderInfo(kind, lh.version, None, lh.chunk_size, legacy.plaintext_size(lh.chunk_size, total),
                          legacy.LEGACY_FILE_HEADER_SIZE)
    head = src.read(legacy.LEGACY_STORE_HEADER_SIZE)
    magic_len = len(legacy.LEGACY_STORE_MAGIC)
    version = head[magic_len] if len(head) > magic_len else 0
    size = total - legacy.LEGACY_STORE_HEADER_SIZE - legacy.TAG_SIZE
    return HeaderInfo(kind, version, None, None, size if size >= 0 else None, legacy.LEGACY_STORE_HEADER_SIZE)


def inspect_file(path: Path) -> HeaderInfo:
    """Read a file's header without a key: format, version, key id, chunk size, plaintext size.

    Raises ``NotEncryptedError``, ``EmptyFileError``, ``UnsupportedVersionError``
    or ``TruncatedError`` like a decryption would; nothing is authenticated.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        return _inspect_open(fh, os.fstat(fh.fileno()).st_size, path)


def inspect_bytes(blob: bytes) -> HeaderInfo:
    """``inspect_file`` for data in memory."""
    return _inspect_open(io.BytesIO(blob), len(blob), None)


def secure_temp_copy(src: Path, keyring: Keyring, folder: Path | None = None, *, suffix: str = "") -> Path:
    """Decrypt ``src`` into a new private (0600) temporary plaintext file and return its path.

    The file is named ``TEMP_PREFIX...`` in ``folder`` (default: the system
    temp folder). The caller deletes it when done; a forgotten one is removed
    by ``cleanup_stale_temporaries`` once stale. On error nothing is left.
    """
    tmp = plaintext_tempfile(folder, suffix=suffix)
    try:
        decrypt_file(src, tmp, keyring)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return tmp


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ENV_KEY_VAR",
    "FORMAT_LEGACY_CHUNKED",
    "FORMAT_LEGACY_STORE",
    "FORMAT_NEW",
    "TEMP_PREFIX",
    "ChunkLimitError",
    "ChunkOrderError",
    "CorruptChunkError",
    "CryptoError",
    "EmptyFileError",
    "FileInfo",
    "HeaderInfo",
    "HeaderTamperedError",
    "Keyring",
    "KeyringError",
    "KeyringPermissionWarning",
    "NotEncryptedError",
    "TrailingDataError",
    "TruncatedAtChunkBoundaryError",
    "TruncatedError",
    "TruncatedInChunkError",
    "UnknownKeyIdError",
    "UnsupportedVersionError",
    "WrongKeyError",
    "atomic_output",
    "atomic_write_bytes",
    "cleanup_stale_temporaries",
    "decrypt_bytes",
    "decrypt_file",
    "encrypt_bytes",
    "encrypt_file",
    "inspect_bytes",
    "inspect_file",
    "open_keyring",
    "plaintext_tempfile",
    "secure_temp_copy",
    "verify_file",
]
