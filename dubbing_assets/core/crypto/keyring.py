"""The keyring: the keys that encrypt this project's files, one of them active.

Why a keyring and not one key: keys rotate. Files name the key id they were
written with, new files use the active key, and old keys stay for reading.
Keys from the previous system are imported here too (``import_key``).

On disk (0600, parent folder 0700)::

    {"version": 1, "active": "k-1a2b3c4d5e6f",
     "keys": [{"id": "k-1a2b3c4d5e6f", "created": "2025-03-14T09:26:53Z", "key": "<base64 of 32 bytes>"}]}

Key material never leaves this object except through ``get``: ``repr``,
``str``, ``list`` and every error message show ids and fingerprints only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import stat
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dubbing_assets.core.crypto.errors import KeyringError, KeyringPermissionWarning, UnknownKeyIdError
from dubbing_assets.core.crypto.files import atomic_write_bytes
from dubbing_assets.core.crypto.format import KEY_ID_RE, KEY_SIZE
from dubbing_assets.core.fsutil import file_lock

KEYRING_VERSION = 1
ENV_KEY_VAR = "DUBBING_KEY"
_INIT_HINT = "run `dubbing keys init` to create one"


def fingerprint(key: bytes) -> str:
    """A short public fingerprint of a key (a hash: safe to show, cannot give the key back)."""
    return hashlib.sha256(b"keyring fingerprint\x00" + key).hexdigest()[:16]


def default_key_id(key: bytes) -> str:
    """The id a key gets when none is given: derived from its fingerprint, so stable across machines."""
    return "k-" + fingerprint(key)[:12]


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_key(raw_or_b64: bytes | str) -> bytes:
    """32 raw bytes, or standard base64 of 32 bytes (a key file's content, whitespace allowed)."""
    if isinstance(raw_or_b64, bytes | bytearray) and len(raw_or_b64) == KEY_SIZE:
        return bytes(raw_or_b64)
    if isinstance(raw_or_b64, bytes | bytearray):
        text = bytes(raw_or_b64).decode("ascii", errors="replace")
    else:
        text = raw_or_b64
    text = "".join(text.split())
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"the key is neither {KEY_SIZE} raw bytes nor standard base64; "
                           "check that you gave the right key file.") from None
    if len(key) != KEY_SIZE:
        raise KeyringError(f"the key decodes to {len(key)} bytes, not {KEY_SIZE}; "
                           "check that you gave the right key file.")
    return key


@dataclass(frozen=True)
class _Entry:
    id: str
    created: str
    key: bytes = field(repr=False)
    source: str = "file"  # "file" or "env" (the latter is never saved)


class Keyring:
    """Keys by id, with one active key for writing. Create with ``load``, ``create`` or ``from_env_key``."""

    def __init__(self, entries: list[_Entry], active: str, path: Path | None = None) -> None:
        ids = [e.id for e in entries]
        if not entries or active not in ids or len(set(ids)) != len(ids):
            raise KeyringError("a keyring needs unique key ids and an active key among them.", path=path)
        self._entries: dict[str, _Entry] = {e.id: e for e in entries}
        self._active = active
        self.path: Path | None = Path(path) if path is not None else None

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> Keyring:
        """Read a keyring file; warns (``KeyringPermissionWarning``) if others can read it."""
        path = Path(path)
        try:
            st = path.stat()
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeyringError(f"no keyring here; {_INIT_HINT} (or point DUBBING_KEYRING at yours).",
                               path=path) from None
        except OSError as exc:
            raise KeyringError(f"the keyring cannot be read ({exc.strerror}); check its permissions.",
                               path=path) from None
        if st.st_mode & 0o077:
            warnings.warn(
                f"{path}: the keyring is readable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
                f"run `chmod 600 {path}`.", KeyringPermissionWarning, stacklevel=2)
        try:
            data = json.loads(text)
            entries, active = cls._parse(data)
        except (ValueError, KeyError, TypeError, KeyringError) as exc:
            detail = exc.reason if isinstance(exc, KeyringError) else type(exc).__name__
            raise KeyringError(
                f"the keyring file is corrupt ({detail}). Restore it from a backup; or move it aside and "
                f"{_INIT_HINT} (files encrypted with its keys then stay unreadable).", path=path) from None
        return cls(entries, active, path)

    @staticmethod
    def _parse(data: Any) -> tuple[list[_Entry], str]:
        if not isinstance(data, dict) or data.get("version") != KEYRING_VERSION:
            raise KeyringError(f"expected a JSON object with \"version\": {KEYRING_VERSION}")
        entries = []
        for item in data["keys"]:
            kid = str(item["id"])
            if not KEY_ID_RE.fullmatch(kid):
                raise KeyringError(f"invalid key id {kid!r}")
            try:
                key = base64.b64decode(str(item["key"]), validate=True)
            except (binascii.Error, ValueError):
                raise KeyringError(f"key {kid!r} is not base64") from None
            if len(key) != KEY_SIZE:
                raise KeyringError(f"key {kid!r} is not {KEY_SIZE} bytes")
            entries.append(_Entry(kid, str(item.get("created", "")), key))
        active = str(data["active"])
        if active not in {e.id for e in entries}:
            raise KeyringError(f"the active key {active!r} is not among the keys")
        return entries, active

    @classmethod
    def create(cls, path: Path) -> Keyring:
        """Create a new keyring file with one random active key (0600; parent created 0700).

        Exclusive: the file is written aside and linked into place, which fails if a keyring appeared
        meanwhile, so two processes creating at once never replace each other's key (files encrypted
        under the replaced one would be unreadable).
        """
        path = Path(path)
        exists = KeyringError("a keyring already exists here; refusing to overwrite it "
                              "(use `dubbing keys rotate` for a new active key).", path=path)
        if path.exists():
            raise exists
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
            os.chmod(path.parent, 0o700)  # mkdir's mode is filtered by the umask
        key = os.urandom(KEY_SIZE)
        ring = cls([_Entry(default_key_id(key), _now(), key)], default_key_id(key), path)
        staged = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.new")
        atomic_write_bytes(staged, ring._serialised(), mode=0o600)
        try:
            os.link(staged, path)
        except FileExistsError:
            raise exists from None
        finally:
            staged.unlink(missing_ok=True)
        return ring

    @classmethod
    def load_or_create(cls, path: Path) -> Keyring:
        """``load`` if the file exists, else ``create``, under the keyring's lock: of several processes
        starting on a fresh home, one creates and the others read that same keyring."""
        with file_lock(_lock_path(Path(path))):
            return cls.load(path) if Path(path).exists() else cls.create(path)

    @classmethod
    @contextlib.contextmanager
    def editing(cls, path: Path) -> Iterator[Keyring]:
        """The keyring file loaded under its lock, for a load-modify-save (`rotate`, `import_key`): two
        concurrent rotations both land instead of one overwriting the other's new key."""
        with file_lock(_lock_path(Path(path))):
            yield cls.load(path)

    @classmethod
    def generate(cls) -> Keyring:
        """An in-memory keyring with one random key (tests, throwaway data); never saved."""
        key = os.urandom(KEY_SIZE)
        return cls([_Entry(default_key_id(key), _now(), key)], default_key_id(key))

    @classmethod
    def from_env_key(cls, b64: str, key_id: str | None = None, *, base: Keyring | None = None) -> Keyring:
        """An in-memory keyring whose active key is the one given in ``DUBBING_KEY`` (never saved).

        With ``base``, the result also holds ``base``'s keys for reading (a
        detached copy: ``base`` itself is not changed).
        """
        if base is not None:
            return base.with_env_key(b64, key_id)
        key = parse_key(b64)
        kid = key_id or default_key_id(key)
        _check_id(kid)
        return cls([_Entry(kid, "", key, source="env")], kid)

    # -- persistence --------------------------------------------------------------------------------

    def save(self) -> None:
        """Write the keyring file atomically with mode 0600 (keys from the environment are left out)."""
        if self.path is None:
            raise KeyringError("this keyring is held in memory only (no file); it cannot be saved.")
        active = self._active if self._entries[self._active].source == "file" else None
        if active is None:
            raise KeyringError("the active key comes from DUBBING_KEY and is not saved to the keyring file; "
                               "unset DUBBING_KEY to change the keyring.", path=self.path)
        atomic_write_bytes(self.path, self._serialised(), mode=0o600)

    def _serialised(self) -> bytes:
        saved = [e for e in self._entries.values() if e.source == "file"]
        data = {"version": KEYRING_VERSION, "active": self._active,
                "keys": [{"id": e.id, "created": e.created, "key": base64.b64encode(e.key).decode("ascii")}
                         for e in saved]}
        return (json.dumps(data, indent=2) + "\n").encode("utf-8")

    def _maybe_save(self) -> None:
        if self.path is not None:
            self.save()

    # -- operations ---------------------------------------------------------------------------------

    def rotate(self) -> str:
        """Add a new random key and make it active; old keys stay for reading. Saves; returns the new id."""
        key = os.urandom(KEY_SIZE)
        kid = default_key_id(key)
        self._entries[kid] = _Entry(kid, _now(), key)
        self._active = kid
        self._maybe_save()
        return kid

    def import_key(self, raw_or_b64: bytes | str, key_id: str | None = None, *,
                   activate: bool = False) -> str:
        """Add an existing key (e.g. the previous system's key file) for reading; saves; returns its id.

        The id defaults to one derived from the key's fingerprint. Importing a
        key that is already present returns its id and changes nothing.
        """
        key = parse_key(raw_or_b64)
        for entry in self._entries.values():
            if entry.key == key:
                if key_id is not None and key_id != entry.id:
                    raise KeyringError(f"this key is already in the keyring as {entry.id!r}.", path=self.path)
                if activate and self._active != entry.id:
                    self._active = entry.id
                    self._maybe_save()
                return entry.id
        kid = key_id or default_key_id(key)
        _check_id(kid)
        if kid in self._entries:
            raise KeyringError(f"the keyring already holds another key with id {kid!r}; choose another id "
                               "with --id.", path=self.path)
        self._entries[kid] = _Entry(kid, _now(), key)
        if activate:
            self._active = kid
        self._maybe_save()
        return kid

    def retire(self, key_id: str) -> None:
        """Remove a key that no file uses any more (the caller checks that); never the active one. Saves."""
        self.get(key_id)  # UnknownKeyIdError naming it
        if key_id == self._active:
            raise KeyringError(f"{key_id} is the active key; rotate first (`dubbing keys rotate`), re-key the "
                               "files (`dubbing migrate --rekey`), then retire it.", path=self.path)
        if self._entries[key_id].source != "file":
            raise KeyringError(f"{key_id} comes from DUBBING_KEY, not from the keyring file.", path=self.path)
        del self._entries[key_id]
        self._maybe_save()

    def with_env_key(self, b64: str, key_id: str | None = None) -> Keyring:
        """A detached copy (never saved) in which the key from ``DUBBING_KEY`` is added and active."""
        key = parse_key(b64)
        entries = [e for e in self._entries.values()]
        existing = next((e for e in entries if e.key == key), None)
        if existing is not None:
            return Keyring(entries, existing.id)
        kid = key_id or default_key_id(key)
        _check_id(kid)
        entries = [e for e in entries if e.id != kid] + [_Entry(kid, "", key, source="env")]
        return Keyring(entries, kid)

    # -- reading ------------------------------------------------------------------------------------

    @property
    def active_id(self) -> str:
        """Id of the key new files are encrypted with."""
        return self._active

    def keys(self) -> list[str]:
        """Key ids, active first: the order in which files without a key id try them."""
        return [self._active] + [kid for kid in self._entries if kid != self._active]

    def get(self, key_id: str) -> bytes:
        """The 32 raw bytes of key ``key_id`` (the one place key material leaves the keyring)."""
        try:
            return self._entries[key_id].key
        except KeyError:
            raise UnknownKeyIdError(
                f"key id {key_id!r} is not in the keyring; import it with `dubbing keys import FILE --id "
                f"{key_id}`.", key_id=key_id) from None

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def list(self) -> list[dict[str, Any]]:
        """One dict per key: id, created, active, fingerprint, source. Never the key itself."""
        return [{"id": e.id, "created": e.created, "active": e.id == self._active,
                 "fingerprint": fingerprint(e.key), "source": e.source}
                for e in (self._entries[kid] for kid in self.keys())]

    def __repr__(self) -> str:
        where = str(self.path) if self.path else None
        return f"Keyring(path={where!r}, active={self._active!r}, keys={len(self)})"

    __str__ = __repr__


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def _check_id(key_id: str) -> None:
    if not KEY_ID_RE.fullmatch(key_id):
        raise KeyringError(f"key id {key_id!r} is not valid: use 1-64 characters of A-Z a-z 0-9 . _ -")


def open_keyring(path: Path | None = None, env: Mapping[str, str] | None = None, *,
                 create: bool = False) -> Keyring:
    """The keyring a process should use: the file from settings, plus ``DUBBING_KEY`` if set.

    ``DUBBING_KEY`` (standard base64 of 32 bytes) becomes the active key of a
    detached in-memory copy, so it is used for writing without ever being
    saved to disk. Without a keyring file, ``DUBBING_KEY`` alone is enough.
    """
    env = os.environ if env is None else env
    if path is None:
        from dubbing_assets.core.settings import load_settings

        path = load_settings(env).keyring
    env_key = env.get(ENV_KEY_VAR, "").strip()
    path = Path(path)
    if env_key:
        try:
            parse_key(env_key)
        except KeyringError:
            raise KeyringError(f"{ENV_KEY_VAR} is set but is not standard base64 of {KEY_SIZE} bytes; "
                               "fix or unset it.") from None
        if not path.exists():
            return Keyring.from_env_key(env_key)
    ring = Keyring.load_or_create(path) if create else Keyring.load(path)
    return ring.with_env_key(env_key) if env_key else ring
