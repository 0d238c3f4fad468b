"""The encrypted IO manager: every artifact at rest goes through it.

Layout: ``storage/<asset>/<episode key>/CURRENT`` names the live version
folder ``v-<id>/`` holding ``value.json.enc`` and one ``<n>.enc`` per media
file. A new version is written beside the old one and ``CURRENT`` is
replaced atomically, so a killed run leaves the old artifact or the new one,
never half of one: every file of the version is fsynced before ``CURRENT``
flips, and the version ``CURRENT`` named before stays on disk beside the new
one (older ones are removed), so a step that resolved it just before the flip
still reads a whole artifact. Media files are streamed through encryption in chunks,
never read whole; downstream steps get temporary plaintext copies that are
removed when the step ends.

Values are the stage records of `core.contracts`, stored by type: the JSON names
the record (``{"record": "Stems", "value": {...}}``) and the next step receives
that record back, never a dict. A value an earlier release stored untyped is
read as the record of the stage that wrote it (`contracts.BY_STAGE`).
"""


import json
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import dagster as dg

from dubbing_assets.core.contracts import BY_STAGE, RECORDS, MediaHandle
from dubbing_assets.core.crypto import (
    atomic_output,
    cleanup_stale_temporaries,
    decrypt_bytes,
    decrypt_file,
    encrypt_bytes,
    encrypt_file,
)
from dubbing_assets.core.crypto.files import fsync_dir
from dubbing_assets.core.fsutil import atomic_write_text
from dubbing_assets.core.runtime import Runtime
from dubbing_assets.core.safepath import safe_join
from dubbing_assets.errors import UnsafeNameError
from dubbing_assets.orchestration.resources import TEMP_PREFIX, DubbingResource

_ASSET_PART = re.compile(r"^[a-z0-9_]{1,80}$")
_PARTITION = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,118}[a-z0-9])?$")
MEDIA_MARK = "__media__"


class LazyMediaHandle(MediaHandle):
    """A stored media file that is decrypted only when a step first asks for its `path`.

    A stage often receives a value holding several files (the source video, subtitle
    tracks) but reads only some of them; an episode-sized video is not decrypted for
    stages that never open it.
    """

    def __init__(self, encrypted: Path, plaintext: Path, keyring: Any, *, kind: str, meta: dict[str, Any]) -> None:
        self._encrypted, self._plaintext, self._keyring = encrypted, plaintext, keyring
        self.kind, self.meta = kind, meta

    @property
    def path(self) -> str:  # type: ignore[override]
        if not self._plaintext.exists():
            decrypt_file(self._encrypted, self._plaintext, self._keyring)
        return str(self._plaintext)

    def __repr__(self) -> str:
        return f"LazyMediaHandle({self._encrypted.name}, kind={self.kind!r})"


RECORD_MARK, VALUE_MARK = "record", "value"


class EncryptedIOManager(dg.ConfigurableIOManager):
    """Stores stage records (and any JSON-like value) with their `MediaHandle` files, encrypted, per asset
    partition; the keyring and settings are those of the `dubbing` resource's runtime."""

    dubbing: DubbingResource | None = None

    def _runtime(self) -> Runtime:
        """The resource's runtime (a default one where the IO manager is used without the resource)."""
        if self.dubbing is not None:
            return self.dubbing.runtime
        if "_own_runtime" not in self.__dict__:
            self.__dict__["_own_runtime"] = Runtime()
        return self.__dict__["_own_runtime"]

    def _root(self) -> Path:
        return self._runtime().settings.storage

    def _partition_dir(self, context: dg.OutputContext | dg.InputContext) -> Path:
        parts = list(context.asset_key.path)
        for part in parts:
            if not _ASSET_PART.match(part):
                raise UnsafeNameError(f"Asset name part {part!r} is not a safe storage name.")
        key = context.asset_partition_key if context.has_asset_partitions else "_unpartitioned"
        if key != "_unpartitioned" and not _PARTITION.match(key):
            raise UnsafeNameError(
                f"Partition key {key!r} is not a safe episode key ([a-z0-9-]); it was not derived by the sensor."
            )
        return safe_join(self._root(), *parts, key)

    # ---- writing -------------------------------------------------------
    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        ring = self._runtime().keyring
        target = self._partition_dir(context)
        target.mkdir(parents=True, exist_ok=True)
        current = target / "CURRENT"
        previous = current.read_text().strip() if current.exists() else None
        version = target / f"v-{uuid.uuid4().hex[:12]}"
        version.mkdir()
        files: list[dict[str, Any]] = []
        try:
            value = self._encrypt_media(obj, version, ring, files)  # each file fsynced as it is written
            if type(obj).__name__ in RECORDS and isinstance(obj, RECORDS[type(obj).__name__]):
                value = {RECORD_MARK: type(obj).__name__, VALUE_MARK: value}
            blob = encrypt_bytes(json.dumps(value, sort_keys=True).encode("utf-8"), ring)
            with atomic_output(version / "value.json.enc") as out:  # fsynced, and the folder too
                out.write(blob)
            atomic_write_text(current, version.name)
            fsync_dir(target)
        except BaseException:
            shutil.rmtree(version, ignore_errors=True)
            raise
        for old in target.glob("v-*"):
            if old.name not in (version.name, previous):
                shutil.rmtree(old, ignore_errors=True)
        total = sum(f["plaintext_size"] for f in files)
        meta: dict[str, Any] = {
            "storage_path": dg.MetadataValue.path(str(target)),
            "encryption": f"chunked AES-256-GCM v{files[0]['version'] if files else 1}",
            "key_id": ring.active_id,
            "files": len(files),
            "plaintext_bytes": total,
        }
        if files:
            meta["sha256"] = files[0]["sha256"] if len(files) == 1 else ",".join(f["sha256"][:16] for f in files)
        context.add_output_metadata(meta)

    def _encrypt_media(self, obj: Any, version: Path, ring: Any, files: list[dict[str, Any]]) -> Any:
        if isinstance(obj, MediaHandle):
            name = f"{len(files)}.enc"
            info = encrypt_file(Path(obj.path), version / name, ring)
            files.append({"version": info.version, "plaintext_size": info.plaintext_size, "sha256": info.sha256})
            return {MEDIA_MARK: name, "kind": obj.kind, "meta": obj.meta,
                    "suffix": Path(obj.path).suffix, "sha256": info.sha256, "size": info.plaintext_size}
        if isinstance(obj, dict):
            return {str(k): self._encrypt_media(v, version, ring, files) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self._encrypt_media(v, version, ring, files) for v in obj]
        if hasattr(obj, "to_dict"):
            return self._encrypt_media(obj.to_dict(), version, ring, files)
        return obj

    # ---- reading -------------------------------------------------------
    def load_input(self, context: dg.InputContext) -> Any:
        settings = self._runtime().settings
        ring = self._runtime().keyring
        target = self._partition_dir(context)
        current = target / "CURRENT"
        if not current.exists():
            raise FileNotFoundError(
                f"No stored artifact for {context.asset_key.to_user_string()} partition "
                f"{context.asset_partition_key if context.has_asset_partitions else ''}: materialize it first."
            )
        for attempt in range(3):  # a writer flipped CURRENT and removed what it named two versions ago
            version = safe_join(target, current.read_text().strip())
            try:
                value = json.loads(decrypt_bytes((version / "value.json.enc").read_bytes(), ring))
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        tmp_root = settings.tmp
        tmp_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        cleanup_stale_temporaries(tmp_root)
        scratch = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=tmp_root))
        self._scratch_dirs().append(scratch)
        value = self._decrypt_media(value, version, ring, scratch)
        if isinstance(value, dict) and set(value) == {RECORD_MARK, VALUE_MARK}:
            record = RECORDS.get(value[RECORD_MARK])
            if record is None:
                raise ValueError(f"{context.asset_key.to_user_string()}: stored as an unknown record type "
                                 f"{value[RECORD_MARK]!r}; it was written by a newer release.")
            return record.from_dict(value[VALUE_MARK])
        legacy = BY_STAGE.get(context.asset_key.path[-1])
        return legacy.from_dict(value) if legacy is not None and isinstance(value, dict) else value

    def _decrypt_media(self, obj: Any, version: Path, ring: Any, scratch: Path) -> Any:
        if isinstance(obj, dict) and MEDIA_MARK in obj:
            src = safe_join(version, obj[MEDIA_MARK])
            suffix = re.sub(r"[^a-zA-Z0-9.]", "", obj.get("suffix", ""))[:10]
            dst = scratch / f"{Path(obj[MEDIA_MARK]).stem}{suffix}"
            return LazyMediaHandle(src, dst, ring, kind=obj.get("kind", "file"), meta=obj.get("meta", {}))
        if isinstance(obj, dict):
            return {k: self._decrypt_media(v, version, ring, scratch) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self._decrypt_media(v, version, ring, scratch) for v in obj]
        return obj

    def _scratch_dirs(self) -> list[Path]:
        dirs = self.__dict__.get("_dirs")
        if dirs is None:
            dirs = []
            self.__dict__["_dirs"] = dirs
        return dirs

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        for scratch in self._scratch_dirs():
            shutil.rmtree(scratch, ignore_errors=True)
