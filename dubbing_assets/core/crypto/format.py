"""The project's chunked AES-256-GCM file format (the only one it writes).

Why chunked: media files are large; a reader and a writer must work one chunk
at a time in constant memory. Why this much header: keys rotate (so the header
names its key), a wrong key must be told apart from damage (key commitment),
header tampering must be told apart from body damage (header MAC), and a file
cut between two chunks must not decrypt silently short (the plaintext length
and a final-chunk flag are authenticated).

All integers are unsigned big-endian. ``L`` is the key id length.

=========  ======  ==========================================================
offset     size    field
=========  ======  ==========================================================
0          8       magic ``b"CHNKAEAD"`` (neutral: no brand, no version)
8          1       layout version, currently ``1`` (a field, not in the magic)
9          1       ``L``: key id length, 1..64
10         L       key id, ASCII ``[A-Za-z0-9._-]``
10+L       4       chunk size ``C``: plaintext bytes per chunk, 1..64 MiB
14+L       8       nonce prefix, random per file
22+L       8       plaintext length ``P`` in bytes
30+L       32      header MAC: HMAC-SHA256(mac_key, bytes 0 .. 30+L)
62+L       16      key commitment: HMAC-SHA256(key, COMMIT_LABEL)[:16]
78+L       ...     chunks 0 .. n-1
=========  ======  ==========================================================

The commitment sits after the MAC, outside what the MAC covers, on purpose:
a wrong key fails both checks, a changed header fails exactly one, so the
two cases get different errors. (It is still authenticated: every chunk's
AAD holds the whole header.)

Keys (``key`` is the keyring's 32-byte key; nothing uses it directly as an
AES key):

- ``mac_key   = HMAC-SHA256(key, MAC_LABEL)``
- ``chunk_key = HMAC-SHA256(key, CHUNK_LABEL || nonce_prefix)`` (per file)

Chunks: ``n = max(1, ceil(P / C))``, at most 2**32. Chunk ``i`` holds ``C``
plaintext bytes, except the last which holds the rest (0 bytes only when
``P == 0``). On disk it is ``AESGCM(chunk_key).encrypt(nonce_i, pt_i, aad_i)``
(plaintext + 16-byte tag) with

- ``nonce_i = nonce_prefix || u32(i)`` (12 bytes; an index that does not fit
  in 32 bits is refused),
- ``aad_i = header (all 78+L bytes) || u64(i) || final`` where ``final`` is
  ``0x01`` for chunk ``n-1`` and ``0x00`` otherwise.

What each check gives, in the order a reader applies them:

- unknown magic: ``NotEncryptedError``; unknown version: ``UnsupportedVersionError``
- key id not in the keyring: ``UnknownKeyIdError`` (if another key's commitment
  matches, the key id field itself was changed: ``HeaderTamperedError``)
- commitment and MAC both wrong for the named key: ``WrongKeyError``;
  only one of them wrong: ``HeaderTamperedError``
- file ends at a chunk boundary before chunk ``n-1``: ``TruncatedAtChunkBoundaryError``;
  inside a chunk or the header: ``TruncatedInChunkError`` / ``TruncatedError``
- a chunk fails but authenticates at another index: ``ChunkOrderError``;
  otherwise ``CorruptChunkError``; bytes after the final chunk: ``TrailingDataError``

The module works on open binary streams; ``dubbing_assets.core.crypto`` wraps
it with files, keyrings and atomic writes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from dubbing_assets.core.crypto.errors import (
    ChunkLimitError,
    ChunkOrderError,
    CorruptChunkError,
    CryptoError,
    EmptyFileError,
    HeaderTamperedError,
    NotEncryptedError,
    TrailingDataError,
    TruncatedAtChunkBoundaryError,
    TruncatedError,
    TruncatedInChunkError,
    UnknownKeyIdError,
    UnsupportedVersionError,
    WrongKeyError,
)

FORMAT_NAME = "new"
MAGIC = b"CHNKAEAD"
LAYOUT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

KEY_SIZE = 32
TAG_SIZE = 16
NONCE_PREFIX_SIZE = 8
MAC_SIZE = 32
COMMIT_SIZE = 16
MAX_KEY_ID_LEN = 64
MIN_CHUNK_SIZE = 1
MAX_CHUNK_SIZE = 64 << 20
DEFAULT_CHUNK_SIZE = 1 << 20
#: The nonce carries the chunk index in 32 bits: never more chunks than this.
MAX_CHUNKS = 1 << 32

COMMIT_LABEL = b"chunked-aead key commitment"
MAC_LABEL = b"chunked-aead header mac"
CHUNK_LABEL = b"chunked-aead chunk key"

KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")

_FIXED_BEFORE_ID = len(MAGIC) + 2  # magic, version, key id length
_FIXED_AFTER_ID = 4 + NONCE_PREFIX_SIZE + 8  # chunk size, nonce prefix, plaintext length
_CUT_IN_HEADER = "the file ends inside its header; it was cut short. Re-create it from its source."
_RESTORE = "Restore the file from a backup or re-create it."
#: Plaintext size from which the sha256 runs on a helper thread, in parallel with AES.
_THREADED_HASH_MIN = 4 << 20


def header_size(key_id_len: int) -> int:
    """Size in bytes of a version-1 header whose key id has ``key_id_len`` characters."""
    return _FIXED_BEFORE_ID + key_id_len + _FIXED_AFTER_ID + MAC_SIZE + COMMIT_SIZE


def check_key_id(key_id: str) -> str:
    """Return ``key_id`` if it can go into a header, else raise ``ValueError``."""
    if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
        raise ValueError(f"key id {key_id!r} is not valid: use 1-64 characters of A-Z a-z 0-9 . _ -")
    return key_id


def check_chunk_size(chunk_size: int) -> int:
    """Return ``chunk_size`` if it is allowed, else raise ``ValueError``."""
    if not isinstance(chunk_size, int) or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size {chunk_size!r} is out of range {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
    return chunk_size


def chunk_count(plaintext_length: int, chunk_size: int) -> int:
    """Number of chunks for a plaintext; refuses what the 32-bit nonce counter cannot number."""
    if plaintext_length < 0:
        raise ValueError("plaintext length cannot be negative")
    count = max(1, -(-plaintext_length // chunk_size))
    if count > MAX_CHUNKS:
        raise ChunkLimitError(
            f"{plaintext_length} bytes in chunks of {chunk_size} would need {count} chunks, more than the "
            f"{MAX_CHUNKS} the format can number; use a larger chunk size."
        )
    return count


def chunk_nonce(nonce_prefix: bytes, index: int) -> bytes:
    """``nonce_prefix || u32(index)``; an index beyond 32 bits is refused, never wrapped."""
    if not 0 <= index < MAX_CHUNKS:
        raise ChunkLimitError(f"chunk index {index} does not fit in the 32-bit nonce counter.")
    return nonce_prefix + struct.pack(">I", index)


def chunk_aad(header_bytes: bytes, index: int, final: bool) -> bytes:
    """AAD of chunk ``index``: the whole header, the 64-bit index and the final flag."""
    return header_bytes + struct.pack(">QB", index, 1 if final else 0)


def key_commitment(key: bytes) -> bytes:
    """16 bytes that identify ``key`` without revealing it; stored in every header."""
    return hmac.new(key, COMMIT_LABEL, hashlib.sha256).digest()[:COMMIT_SIZE]


def _mac_key(key: bytes) -> bytes:
    return hmac.new(key, MAC_LABEL, hashlib.sha256).digest()


def _chunk_key(key: bytes, nonce_prefix: bytes) -> bytes:
    return hmac.new(key, CHUNK_LABEL + nonce_prefix, hashlib.sha256).digest()


def _header_mac(key: bytes, covered: bytes) -> bytes:
    return hmac.new(_mac_key(key), covered, hashlib.sha256).digest()


@dataclass(frozen=True)
class Header:
    """A parsed header. ``raw`` is its exact bytes (they go into every chunk's AAD)."""

    version: int
    key_id: str
    chunk_size: int
    nonce_prefix: bytes
    plaintext_length: int
    mac: bytes
    commitment: bytes
    raw: bytes

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.plaintext_length, self.chunk_size)

    @property
    def mac_covered(self) -> bytes:
        """The header bytes the MAC authenticates (everything before the MAC)."""
        return self.raw[: self.size - MAC_SIZE - COMMIT_SIZE]

    def chunk_plain_size(self, index: int) -> int:
        """Plaintext bytes in chunk ``index``."""
        last = self.chunk_count - 1
        if index < last:
            return self.chunk_size
        return self.plaintext_length - self.chunk_size * last

    def ciphertext_size(self) -> int:
        """Expected total file size: header plus every chunk with its tag."""
        return self.size + self.plaintext_length + TAG_SIZE * self.chunk_count


def build_header(key: bytes, key_id: str, chunk_size: int, plaintext_length: int,
                 nonce_prefix: bytes | None = None) -> Header:
    """Build and MAC a header for a new file (random nonce prefix unless given, for tests)."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"a key must be {KEY_SIZE} bytes")
    check_key_id(key_id)
    check_chunk_size(chunk_size)
    chunk_count(plaintext_length, chunk_size)
    prefix = os.urandom(NONCE_PREFIX_SIZE) if nonce_prefix is None else nonce_prefix
    if len(prefix) != NONCE_PREFIX_SIZE:
        raise ValueError(f"the nonce prefix must be {NONCE_PREFIX_SIZE} bytes")
    kid = key_id.encode("ascii")
    covered = (MAGIC + bytes([LAYOUT_VERSION, len(kid)]) + kid
               + struct.pack(">I", chunk_size) + prefix + struct.pack(">Q", plaintext_length))
    mac = _header_mac(key, covered)
    commitment = key_commitment(key)
    return Header(LAYOUT_VERSION, key_id, chunk_size, prefix, plaintext_length, mac, commitment,
                  covered + mac + commitment)


def read_exact(src: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes, fewer only at end of file (``read`` may return short on pipes)."""
    data = src.read(size)
    if data is None:
        data = b""
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = src.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def parse_header(src: BinaryIO, *, path: Path | str | None = None) -> Header:
    """Read and parse the header at the start of ``src`` (no key needed, nothing verified yet)."""
    start = read_exact(src, _FIXED_BEFORE_ID)
    if not start:
        raise EmptyFileError(
            "the file is empty (0 bytes): it was never written completely. Re-create it from its source.",
            path=path)
    if start[: len(MAGIC)] != MAGIC[: len(start)]:
        raise NotEncryptedError("this is not a file in the project's encrypted format.", path=path)
    if len(start) < _FIXED_BEFORE_ID:
        raise TruncatedError(_CUT_IN_HEADER, path=path, at_chunk_boundary=False)
    version = start[8]
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersionError(
            f"layout version {version} is not supported by this release (it reads "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}); upgrade dubbing_assets to read it.", path=path)
    id_len = start[9]
    rest_len = id_len + _FIXED_AFTER_ID + MAC_SIZE + COMMIT_SIZE
    rest = read_exact(src, rest_len)
    if len(rest) < rest_len:
        raise TruncatedError(_CUT_IN_HEADER, path=path, at_chunk_boundary=False)
    raw = start + rest
    kid_raw = rest[:id_len]
    pos = id_len
    (chunk_size,) = struct.unpack_from(">I", rest, pos)
    pos += 4
    prefix = rest[pos: pos + NONCE_PREFIX_SIZE]
    pos += NONCE_PREFIX_SIZE
    (plaintext_length,) = struct.unpack_from(">Q", rest, pos)
    pos += 8
    mac = rest[pos: pos + MAC_SIZE]
    commitment = rest[pos + MAC_SIZE:]
    key_id = kid_raw.decode("ascii", errors="replace")
    if id_len == 0 or not KEY_ID_RE.fullmatch(key_id):
        raise HeaderTamperedError(
            "the header's key id field is not valid: the header was changed or damaged. "
            "Restore the file from a backup or re-create it.", path=path)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise HeaderTamperedError(
            f"the header's chunk size ({chunk_size}) is out of range: the header was changed or damaged. "
            "Restore the file from a backup or re-create it.", path=path)
    header = Header(version, key_id, chunk_size, prefix, plaintext_length, mac, commitment, raw)
    try:
        header.chunk_count  # noqa: B018 - refuse a length the nonce counter cannot number
    except ChunkLimitError as exc:
        raise ChunkLimitError(exc.reason, path=path) from None
    return header


def select_key(header: Header, candidates: Sequence[tuple[str, bytes]], *,
               path: Path | str | None = None) -> bytes:
    """Pick the key that opens ``header`` and verify the header with it.

    ``candidates`` are the keyring's (id, key) pairs. The key the header names
    is checked first. Commitment and MAC are checked separately so a wrong key
    (both fail) is told apart from a changed header (one fails). A key held
    under another id whose commitment and MAC both match is accepted: the
    header is authentic, only the keyring's naming differs.
    """
    named = dict(candidates).get(header.key_id)
    if named is not None:
        commit_ok = hmac.compare_digest(key_commitment(named), header.commitment)
        mac_ok = hmac.compare_digest(_header_mac(named, header.mac_covered), header.mac)
        if commit_ok and mac_ok:
            return named
        if commit_ok or mac_ok:
            raise HeaderTamperedError(
                "the header does not match its MAC: a field (chunk size, length, nonce, key id or the "
                "commitment) was changed after the file was written. " + _RESTORE, path=path)
    for kid, key in candidates:
        if kid == header.key_id or not hmac.compare_digest(key_commitment(key), header.commitment):
            continue
        if hmac.compare_digest(_header_mac(key, header.mac_covered), header.mac):
            return key
        raise HeaderTamperedError(
            f"the header names key id {header.key_id!r} but was written with key {kid!r} and fails its MAC: "
            "the header was changed after writing. " + _RESTORE, path=path)
    if named is not None:
        raise WrongKeyError(
            f"the key stored as {header.key_id!r} in your keyring is not the key this file was encrypted "
            "with (key commitment mismatch). Import the original key with `dubbing keys import` under "
            "another id, or use the keyring of the machine that wrote the file.", path=path)
    raise UnknownKeyIdError(
        f"the file was encrypted with key id {header.key_id!r}, which is not in your keyring. "
        "Import that key with `dubbing keys import FILE --id " + header.key_id + "`.",
        key_id=header.key_id, path=path)


class Digest:
    """sha256 of a stream. Large inputs are hashed on a helper thread.

    Why a thread: SHA-256 is several times slower than AES-GCM here, and both
    release the GIL, so hashing chunk i while chunk i+1 is encrypted keeps the
    format close to raw AES-GCM speed. At most one chunk is in flight, so
    memory stays bounded. Use as a context manager (the thread is joined).
    """

    def __init__(self, threaded: bool = False) -> None:
        self._hash = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") if threaded else None
        self._pending: Future[None] | None = None

    def update(self, data: bytes) -> None:
        if self._pool is None:
            self._hash.update(data)
            return
        if self._pending is not None:
            self._pending.result()
        self._pending = self._pool.submit(self._hash.update, data)

    def hexdigest(self) -> str:
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> Digest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _readinto_exact(src: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``src``; fewer bytes only at end of file. Returns the count."""
    readinto = getattr(src, "readinto", None)
    got, want = 0, len(view)
    while got < want:
        if readinto is not None:
            n = readinto(view[got:]) or 0
        else:
            data = src.read(want - got) or b""
            n = len(data)
            view[got: got + n] = data
        if not n:
            break
        got += n
    return got


def encrypt_stream(src: BinaryIO, dst: BinaryIO, *, key: bytes, key_id: str, plaintext_length: int,
                   chunk_size: int = DEFAULT_CHUNK_SIZE) -> str:
    """Encrypt exactly ``plaintext_length`` bytes of ``src`` to ``dst``; return the plaintext sha256.

    The length goes into the header before the first chunk, so it must be
    known up front; a source that shrinks or grows meanwhile is an error
    (the caller's atomic write then discards the output). Memory: two
    plaintext buffers (one being hashed while the next is encrypted) and one
    ciphertext buffer, each at most one chunk, reused for the whole file.
    """
    header = build_header(key, key_id, chunk_size, plaintext_length)
    count = header.chunk_count
    aes = AESGCM(_chunk_key(key, header.nonce_prefix))
    size = min(chunk_size, plaintext_length)
    plain_bufs = (bytearray(size), bytearray(size))
    cipher_buf = bytearray(size + TAG_SIZE)
    dst.write(header.raw)
    with Digest(threaded=plaintext_length >= _THREADED_HASH_MIN) as digest:
        for index in range(count):
            want = header.chunk_plain_size(index)
            # Buffer index&1 is free: its previous chunk's hash was awaited before the last update().
            plain = memoryview(plain_bufs[index & 1])[:want]
            if _readinto_exact(src, plain) != want:
                raise CryptoError("the source file shrank while it was being encrypted; "
                                  "encrypt it again once it is complete.")
            digest.update(plain)
            sealed = memoryview(cipher_buf)[: want + TAG_SIZE]
            aes.encrypt_into(chunk_nonce(header.nonce_prefix, index), plain,
                             chunk_aad(header.raw, index, index == count - 1), sealed)
            dst.write(sealed)
        if read_exact(src, 1):
            raise CryptoError("the source file grew while it was being encrypted; "
                              "encrypt it again once it is complete.")
        return digest.hexdigest()


def _other_index(aes: AESGCM, header: Header, data: bytes, position: int) -> int | None:
    """The index at which ``data`` authenticates, if another one (only tried once a chunk fails)."""
    count = header.chunk_count
    for index in range(count):
        if index == position or header.chunk_plain_size(index) + TAG_SIZE != len(data):
            continue
        try:
            aes.decrypt(chunk_nonce(header.nonce_prefix, index), data,
                        chunk_aad(header.raw, index, index == count - 1))
        except InvalidTag:
            continue
        return index
    return None


def decrypt_stream(src: BinaryIO, dst: BinaryIO | None, header: Header, key: bytes, *,
                   path: Path | str | None = None) -> tuple[str, int]:
    """Decrypt the chunks following ``header`` (already read from ``src``) into ``dst``.

    ``key`` must come from ``select_key``. Returns (plaintext sha256, length).
    Plaintext is written chunk by chunk as each authenticates; on any error the
    caller discards what was written (the atomic writer does). Memory: one
    ciphertext buffer and two plaintext buffers of one chunk each.
    """
    count = header.chunk_count
    aes = AESGCM(_chunk_key(key, header.nonce_prefix))
    size = min(header.chunk_size, header.plaintext_length)
    cipher_buf = bytearray(size + TAG_SIZE)
    plain_bufs = (bytearray(size), bytearray(size))
    consumed = header.size
    with Digest(threaded=header.plaintext_length >= _THREADED_HASH_MIN) as digest:
        for index in range(count):
            want = header.chunk_plain_size(index) + TAG_SIZE
            sealed = memoryview(cipher_buf)[:want]
            got = _readinto_exact(src, sealed)
            consumed += got
            if got < want:
                missing = header.ciphertext_size() - consumed
                if not got:
                    raise TruncatedAtChunkBoundaryError(
                        f"the file ends after {index} of {count} chunks (cut exactly at a chunk boundary, "
                        f"{missing} bytes missing). " + _RESTORE, path=path)
                raise TruncatedInChunkError(
                    f"the file was cut inside chunk {index} of {count} ({missing} bytes missing). "
                    + _RESTORE, path=path)
            plain = memoryview(plain_bufs[index & 1])[: want - TAG_SIZE]
            try:
                aes.decrypt_into(chunk_nonce(header.nonce_prefix, index), sealed,
                                 chunk_aad(header.raw, index, index == count - 1), plain)
            except InvalidTag:
                other = _other_index(aes, header, bytes(sealed), index)
                if other is not None:
                    raise ChunkOrderError(
                        f"chunk {index} holds the data of chunk {other}: chunks were swapped or moved. "
                        + _RESTORE, position=index, belongs_at=other, path=path) from None
                raise CorruptChunkError(
                    f"chunk {index} of {count} fails authentication: its data or tag was modified or "
                    "damaged. " + _RESTORE, index=index, path=path) from None
            digest.update(plain)
            if dst is not None:
                dst.write(plain)
        if read_exact(src, 1):
            raise TrailingDataError(
                "there are bytes after the final chunk: something was appended to the file. " + _RESTORE,
                index=count, path=path)
        return digest.hexdigest(), header.plaintext_length
