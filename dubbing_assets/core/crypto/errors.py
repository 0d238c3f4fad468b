"""Exceptions of the crypto layer.

Each failure a user can run into (a plain file where an encrypted one was
expected, a missing key, a damaged file...) has its own type, so callers and
tests can tell them apart, and a message that says what is wrong and what to
do. Messages never contain key material: at most a key id or a fingerprint.
"""

from __future__ import annotations

from pathlib import Path

from dubbing_assets.errors import DubbingError


class CryptoError(DubbingError):
    """Base class of every crypto error; ``path`` is the file concerned, if any."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        self.path: Path | None = Path(path) if path is not None else None
        self.reason = message
        super().__init__(f"{path}: {message}" if path is not None else message)


class KeyringError(CryptoError):
    """The keyring file is missing, unreadable or invalid, or a key operation is refused."""


class KeyringPermissionWarning(UserWarning):
    """The keyring file can be read by other users (it should be 0600)."""


class NotEncryptedError(CryptoError):
    """The file is in none of the encrypted formats this project reads."""


class EmptyFileError(CryptoError):
    """The file has 0 bytes: it was never written completely (even an empty plaintext has a header)."""


class UnsupportedVersionError(CryptoError):
    """The header's layout version is unknown to this release."""


class UnknownKeyIdError(CryptoError):
    """The header names a key id that the keyring does not hold."""

    def __init__(self, message: str, *, key_id: str | None = None, path: Path | str | None = None) -> None:
        self.key_id = key_id
        super().__init__(message, path=path)


class WrongKeyError(CryptoError):
    """The key is not the one the file was encrypted with (commitment mismatch, or no legacy key fits)."""


class HeaderTamperedError(CryptoError):
    """The header fails its MAC: a field (key id, chunk size, length...) was changed after writing."""


class TruncatedError(CryptoError):
    """The file ends before its last chunk.

    ``at_chunk_boundary`` tells the two cases apart: True when whole chunks are
    missing (the file was cut exactly between two chunks), False when the cut
    falls inside a chunk or the header. The subclasses carry the same flag.
    """

    at_chunk_boundary: bool = False

    def __init__(self, message: str, *, path: Path | str | None = None,
                 at_chunk_boundary: bool | None = None) -> None:
        if at_chunk_boundary is not None:
            self.at_chunk_boundary = at_chunk_boundary
        super().__init__(message, path=path)


class TruncatedAtChunkBoundaryError(TruncatedError):
    """Whole chunks are missing at the end (the cut fell exactly between chunks)."""

    at_chunk_boundary = True


class TruncatedInChunkError(TruncatedError):
    """The file ends in the middle of a chunk (or of the header)."""

    at_chunk_boundary = False


class ChunkOrderError(CryptoError):
    """A chunk authenticates, but at another position: chunks were swapped, moved or duplicated."""

    def __init__(self, message: str, *, position: int, belongs_at: int,
                 path: Path | str | None = None) -> None:
        self.position = position
        self.belongs_at = belongs_at
        super().__init__(message, path=path)


class CorruptChunkError(CryptoError):
    """A chunk's ciphertext or tag was modified (or damaged on disk)."""

    def __init__(self, message: str, *, index: int | None = None, path: Path | str | None = None) -> None:
        self.index = index
        super().__init__(message, path=path)


class TrailingDataError(CorruptChunkError):
    """Bytes follow the final chunk: something was appended to the file."""


class ChunkLimitError(CryptoError, ValueError):
    """The plaintext would need more chunks than the 32-bit chunk counter allows."""


__all__ = [
    "ChunkLimitError",
    "ChunkOrderError",
    "CorruptChunkError",
    "CryptoError",
    "EmptyFileError",
    "HeaderTamperedError",
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
]
