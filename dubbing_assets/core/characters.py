"""The character store of one series: names, voices and speaker embeddings.

Why a store per series: a character keeps the same voice in every episode,
so the cast stage matches each episode's speakers against this file and adds
newcomers to it. The file is encrypted (``core.crypto``); it is read in the
new format or the legacy layout and always written in the new format, so a
legacy store migrates the first time it is saved.

Several runs may update one series at once; ``transaction`` holds an
exclusive lock on ``<path>.lock`` across load, change and save so no update
is lost. Unknown fields (top level or per character) are kept as they are.

Payload (UTF-8 JSON, inside the encryption)::

    {"version": 1, "series": "alpha-series",
     "characters": [{"id": "c0001", "name": "Aiko", "embedding": [...],
                     "voice": {...}, "episodes": [...], "updated_at": "..."}]}
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dubbing_assets.core.crypto import (
    FORMAT_NEW,
    Keyring,
    atomic_write_bytes,
    decrypt_bytes,
    encrypt_bytes,
    inspect_bytes,
)
from dubbing_assets.core.fsutil import file_lock
from dubbing_assets.errors import DubbingError

PAYLOAD_VERSION = 1
_KNOWN_CHAR_FIELDS = ("id", "name", "embedding", "voice", "episodes", "updated_at")
_KNOWN_TOP_FIELDS = ("version", "series", "characters")
_ID_RE = re.compile(r"c(\d+)")


class CharacterStoreError(DubbingError):
    """The character store cannot be read or does not belong to the series asked for."""


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Character:
    """One character of a series; ``extra`` keeps fields this version does not know."""

    id: str
    name: str
    embedding: list[float]
    voice: dict[str, Any] = field(default_factory=dict)
    episodes: list[str] = field(default_factory=list)
    updated_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Character:
        return cls(id=str(data["id"]), name=str(data.get("name", "")),
                   embedding=[float(x) for x in data.get("embedding", [])],
                   voice=dict(data.get("voice") or {}), episodes=list(data.get("episodes") or []),
                   updated_at=str(data.get("updated_at", "")),
                   extra={k: v for k, v in data.items() if k not in _KNOWN_CHAR_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "name": self.name, "embedding": list(self.embedding),
                                "voice": dict(self.voice), "episodes": list(self.episodes),
                                "updated_at": self.updated_at}
        data.update(self.extra)
        return data


class CharacterStore:
    """The characters of one series, bound to the file and keyring they are saved with."""

    def __init__(self, path: Path, keyring: Keyring, series: str,
                 characters: list[Character] | None = None, *, extra: dict[str, Any] | None = None,
                 source_format: str | None = None) -> None:
        self.path = Path(path)
        self.keyring = keyring
        self.series = series
        self.characters: list[Character] = list(characters or [])
        self.extra: dict[str, Any] = dict(extra or {})
        #: Format the store was read in (None for a new store); a legacy one migrates on ``save``.
        self.source_format = source_format

    # -- reading and writing ------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path, keyring: Keyring, series: str | None = None) -> CharacterStore:
        """Read a store (new format or legacy layout). ``series``, if given, must match the file's."""
        path = Path(path)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise CharacterStoreError(f"{path}: no character store here; it is created when a series is "
                                      "first cast (or use CharacterStore.transaction).") from None
        plain = decrypt_bytes(blob, keyring, source=path)  # raises with the path in the message
        source_format = inspect_bytes(blob).format
        try:
            payload = json.loads(plain.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CharacterStoreError(f"{path}: the store decrypts but is not JSON ({exc}); "
                                      "restore it from a backup.") from None
        return cls.from_payload(path, keyring, payload, series=series, source_format=source_format)

    @classmethod
    def from_payload(cls, path: Path, keyring: Keyring, payload: Any, *, series: str | None = None,
                     source_format: str | None = None) -> CharacterStore:
        """Build a store from its JSON payload (checked: an object with a series and a character list)."""
        if not isinstance(payload, dict) or not isinstance(payload.get("characters"), list):
            raise CharacterStoreError(f"{path}: the store payload has no character list; "
                                      "restore it from a backup.")
        file_series = str(payload.get("series", ""))
        if series is not None and file_series and file_series != series:
            raise CharacterStoreError(f"{path}: this store belongs to series {file_series!r}, "
                                      f"not {series!r}; check the store path.")
        try:
            characters = [Character.from_dict(c) for c in payload["characters"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise CharacterStoreError(f"{path}: a character entry is malformed ({exc!r}); "
                                      "restore the store from a backup.") from None
        extra = {k: v for k, v in payload.items() if k not in _KNOWN_TOP_FIELDS}
        return cls(path, keyring, file_series or (series or ""), characters, extra=extra,
                   source_format=source_format)

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload (same schema as the legacy store, plus any unknown fields kept)."""
        payload: dict[str, Any] = {"version": PAYLOAD_VERSION, "series": self.series,
                                   "characters": [c.to_dict() for c in self.characters]}
        payload.update(self.extra)
        return payload

    def payload_bytes(self) -> bytes:
        """The payload as compact UTF-8 JSON (the bytes that get encrypted)."""
        return json.dumps(self.to_payload(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def encrypted(self) -> bytes:
        """The store encrypted in the new format with the keyring's active key."""
        return encrypt_bytes(self.payload_bytes(), self.keyring)

    def save(self) -> None:
        """Write the store atomically in the new format (this migrates a legacy store)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, self.encrypted())
        self.source_format = FORMAT_NEW

    # -- content ------------------------------------------------------------------------------------

    def find(self, character_id: str) -> Character | None:
        """The character with this id, or None."""
        return next((c for c in self.characters if c.id == character_id), None)

    def find_by_name(self, name: str) -> Character | None:
        """The first character with this name (case-insensitive), or None."""
        low = name.casefold()
        return next((c for c in self.characters if c.name.casefold() == low), None)

    def next_id(self) -> str:
        """The next free id: c0001, c0002, ... (never reuses the highest one)."""
        numbers = [int(m.group(1)) for c in self.characters if (m := _ID_RE.fullmatch(c.id))]
        return f"c{max(numbers, default=0) + 1:04d}"

    def add_character(self, name: str, embedding: list[float], voice: dict[str, Any] | None = None, *,
                      episodes: list[str] | None = None) -> Character:
        """Add a character with the next stable id and return it (``save`` to persist)."""
        character = Character(id=self.next_id(), name=name, embedding=[float(x) for x in embedding],
                              voice=dict(voice or {}), episodes=list(episodes or []), updated_at=_now())
        self.characters.append(character)
        return character

    def __len__(self) -> int:
        return len(self.characters)

    def __repr__(self) -> str:
        return f"CharacterStore(path={str(self.path)!r}, series={self.series!r}, characters={len(self)})"

    # -- concurrency --------------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def transaction(cls, path: Path, keyring: Keyring, series: str) -> Iterator[CharacterStore]:
        """See module-level ``transaction``."""
        with transaction(path, keyring, series) as store:
            yield store


@contextlib.contextmanager
def store_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the sidecar ``<path>.lock`` (blocks until it is free)."""
    path = Path(path)
    with file_lock(path.with_name(path.name + ".lock")):
        yield


@contextlib.contextmanager
def transaction(path: Path, keyring: Keyring, series: str) -> Iterator[CharacterStore]:
    """Load (or start) the store, let the caller change it, save it: all under an exclusive lock.

    Two processes updating the same store serialise here, so neither loses
    the other's update. If the block raises, nothing is saved.
    """
    path = Path(path)
    with store_lock(path):
        if path.exists():
            store = CharacterStore.load(path, keyring, series)
        else:
            store = CharacterStore(path, keyring, series)
        yield store
        store.save()


def adopt(path: Path, keyring: Keyring, series: str, earlier: Path, belongs: Callable[[str], bool]
          ) -> list[Character]:
    """Start the store at `path` from the characters of `earlier` heard in an episode that `belongs` here.

    Why: series named only in Japanese (or another script with no ASCII form) all shared one slug,
    and so one store, before their names kept a digest; after the upgrade each has a store of its own,
    which would start empty and recast every character. `belongs(episode_key)` says which of the
    earlier store's episodes came from this series, so only its own characters come over, with their
    ids, voices and embeddings. Nothing happens when the series has a store already, or `earlier` is
    absent; `earlier` itself is never changed (other series may still adopt from it).
    """
    path = Path(path)
    with store_lock(path):
        if path.exists() or not Path(earlier).is_file():
            return []
        old = CharacterStore.load(Path(earlier), keyring)
        carried = [Character.from_dict(c.to_dict()) for c in old.characters
                   if any(belongs(episode) for episode in c.episodes)]
        if carried:
            CharacterStore(path, keyring, series, carried).save()
        return carried
