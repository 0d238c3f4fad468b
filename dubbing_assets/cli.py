"""The `dubbing` console script.

Key and file commands live here: ``keys init|rotate|list|import``,
``decrypt`` and ``migrate``. The run-facing commands (``submit``, ``status``,
``wait``, ``cancel``, ``rerun``) plug in at the marked spot below: one
``_add_<name>`` function that declares the subcommand and one handler in
``HANDLERS``.

Why one handler table: every subcommand ends the same way, so errors are
handled once in ``main``: a ``DubbingError`` (or a missing file) prints
``error: <message>`` on stderr and exits 1. Nothing printed here ever
contains key material: keys are shown by id and fingerprint only.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from dubbing_assets.core.characters import CharacterStore, store_lock
from dubbing_assets.core.crypto import (
    FORMAT_LEGACY_CHUNKED,
    FORMAT_LEGACY_STORE,
    FORMAT_NEW,
    TEMP_PREFIX,
    CryptoError,
    FileInfo,
    Keyring,
    atomic_write_bytes,
    decrypt_bytes,
    decrypt_file,
    encrypt_file,
    inspect_file,
    open_keyring,
    plaintext_tempfile,
    verify_file,
)
from dubbing_assets.core.crypto.errors import KeyringError
from dubbing_assets.core.crypto.files import fsync_dir
from dubbing_assets.core.crypto.keyring import ENV_KEY_VAR, fingerprint
from dubbing_assets.core.crypto.legacy import parse_file_header
from dubbing_assets.core.settings import load_settings, private_tmp_dir
from dubbing_assets.errors import DubbingError

Handler = Callable[[argparse.Namespace], int]


def _keyring_path(args: argparse.Namespace) -> Path:
    return Path(args.keyring) if getattr(args, "keyring", None) else load_settings().keyring


def _fp(ring: Keyring, key_id: str) -> str:
    return fingerprint(ring.get(key_id))


# ---- keys ---------------------------------------------------------------------------------------------

def cmd_keys_init(args: argparse.Namespace) -> int:
    path = _keyring_path(args)
    ring = Keyring.create(path)
    print(f"created keyring {path} (mode 0600); active key {ring.active_id} "
          f"(fingerprint {_fp(ring, ring.active_id)}). Back this file up: without it nothing can be "
          "decrypted.")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    path = _keyring_path(args)
    if os.environ.get(ENV_KEY_VAR, "").strip():
        raise KeyringError(f"{ENV_KEY_VAR} is set and pins the active key, so a rotated key in the file would "
                           f"not be used; unset {ENV_KEY_VAR} to rotate the keyring file, or rotate the secret "
                           "itself.", path=path)
    with Keyring.editing(path) as ring:
        old = ring.active_id
        new = ring.rotate()
    print(f"new active key {new} (fingerprint {_fp(ring, new)}); previous key {old} kept for reading; "
          f"{len(ring)} keys in {path}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    ring = open_keyring(_keyring_path(args))
    for entry in ring.list():
        mark = "*" if entry["active"] else " "
        source = "  (from DUBBING_KEY, not saved)" if entry["source"] == "env" else ""
        print(f"{mark} {entry['id']:<24} created {entry['created'] or '-':<20} "
              f"fingerprint {entry['fingerprint']}{source}")
    return 0


def _uses_key(path: Path, key_id: str, ring: Keyring) -> bool:
    """Whether `path` needs `key_id`: its header names it, or (a legacy file, which names none) it
    decrypts with that key."""
    info = inspect_file(path)
    if info.key_id is not None:
        return info.key_id == key_id
    try:
        verify_file(path, Keyring.from_env_key(base64.b64encode(ring.get(key_id)).decode(), key_id))
        return True
    except CryptoError:
        return False


def cmd_keys_retire(args: argparse.Namespace) -> int:
    path = _keyring_path(args)
    settings = load_settings()
    folders = [Path(p) for p in args.scan] if args.scan else [settings.storage, settings.cache]
    with Keyring.editing(path) as ring:
        if args.key_id == ring.active_id:
            ring.retire(args.key_id)  # refused, with what to do instead, before any scan
        ring.get(args.key_id)  # an unknown id: say so before scanning
        users: list[Path] = []
        for folder in folders:
            if folder.is_dir():
                files, _ = _encrypted_files(folder)
                users += [f for f in files if _uses_key(f, args.key_id, ring)]
        if users:
            shown = ", ".join(str(u) for u in users[:3]) + (" ..." if len(users) > 3 else "")
            raise KeyringError(f"key {args.key_id} still encrypts {len(users)} file(s) ({shown}); re-key them "
                               f"first: `dubbing migrate --rekey {' '.join(str(f) for f in folders)}`.", path=path)
        ring.retire(args.key_id)
    print(f"retired key {args.key_id}: no file under {', '.join(str(f) for f in folders)} uses it; "
          f"{len(ring)} key(s) left in {path}")
    return 0


def cmd_keys_import(args: argparse.Namespace) -> int:
    path = _keyring_path(args)
    data = Path(args.file).read_bytes()
    created = not path.exists()
    Keyring.load_or_create(path)
    if created:
        print(f"created keyring {path} (mode 0600) with a new active key")
    with Keyring.editing(path) as ring:
        kid = ring.import_key(data, args.id, activate=args.activate)
    role = "active" if ring.active_id == kid else "kept for reading"
    print(f"imported key {kid} (fingerprint {_fp(ring, kid)}), {role}, into {path}")
    return 0


# ---- files --------------------------------------------------------------------------------------------

def _describe(info: FileInfo) -> str:
    key = f", key {info.key_id}" if info.key_id else ""
    return f"{info.format} format{key}, {info.plaintext_size} bytes, sha256 {info.sha256}"


def cmd_decrypt(args: argparse.Namespace) -> int:
    ring = open_keyring(_keyring_path(args))
    info = decrypt_file(Path(args.input), Path(args.output), ring)
    print(f"{args.output}: decrypted from {_describe(info)}")
    return 0


def _unlink(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _same_file(before: os.stat_result, path: Path) -> bool:
    after = path.stat()
    return ((before.st_ino, before.st_size, before.st_mtime_ns)
            == (after.st_ino, after.st_size, after.st_mtime_ns))


MIGRATION_LOG = "migrations.jsonl"


def _log_migration(path: Path, old: FileInfo, new: FileInfo, **extra: object) -> str:
    """Append what a legacy migration produced to DUBBING_LOG_DIR/migrations.jsonl (0600); returns a note.

    The legacy chunked layout marks no final chunk, so a file cut exactly at a chunk boundary decrypts,
    silently short, and no reader can tell. The length and digest the migration produced are the
    record to check it against (the source, a manifest, another copy) after the legacy file is gone.
    """
    import time

    entry = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "path": str(path.resolve()), "from": old.format,
             "to": new.format, "key_id": new.key_id, "plaintext_bytes": new.plaintext_size, "sha256": new.sha256,
             **extra}
    log = load_settings().log_dir / MIGRATION_LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
    if extra.get("may_be_cut"):
        return (f"; it ends on a chunk boundary, which the legacy layout cannot tell from a cut: compare "
                f"{new.plaintext_size} bytes / sha256 {new.sha256[:16]} with the source (logged in {log})")
    return f"; logged in {log}"


def _migrate_chunked(path: Path, ring: Keyring) -> str:
    """Legacy chunked file -> new format, in place, replaced only once the new file verifies."""
    with path.open("rb") as fh:
        chunk_size = parse_file_header(fh, path=path).chunk_size
    old, again = _reencrypt(path, ring)
    note = _log_migration(path, old, again, chunk_size=chunk_size,
                          chunks=max(1, -(-again.plaintext_size // chunk_size)),
                          may_be_cut=again.plaintext_size > 0 and again.plaintext_size % chunk_size == 0)
    return (f"{path}: migrated {old.format} -> {FORMAT_NEW} (key {again.key_id}), "
            f"{again.plaintext_size} bytes, sha256 {again.sha256}{note}")


def _rekey(path: Path, ring: Keyring) -> str:
    """A current-format file under an older key -> the active key, in place, once the new file verifies.

    A character store is re-keyed under its own lock, so a run updating it meanwhile is not lost."""
    lock = store_lock(path) if path.suffix == ".chars" else contextlib.nullcontext()
    with lock:
        old, again = _reencrypt(path, ring)
    return (f"{path}: re-keyed {old.key_id} -> {again.key_id}, {again.plaintext_size} bytes, "
            f"sha256 {again.sha256}")


def _reencrypt(path: Path, ring: Keyring) -> tuple[FileInfo, FileInfo]:
    """Decrypt, encrypt with the active key, verify, replace: (the old file's info, the new one's)."""
    before = path.stat()
    plain = plaintext_tempfile(private_tmp_dir())
    check = plaintext_tempfile(private_tmp_dir())
    staged = plaintext_tempfile(path.parent)  # ciphertext staging beside the original (same filesystem)
    try:
        old = decrypt_file(path, plain, ring)
        new = encrypt_file(plain, staged, ring)
        again = decrypt_file(staged, check, ring)
        same = (again.sha256, again.plaintext_size) == (old.sha256, old.plaintext_size) == (new.sha256,
                                                                                          new.plaintext_size)
        if not same:
            raise CryptoError("the migrated copy does not decrypt to the same bytes; the original was left "
                              "as it is. Report this as a bug.", path=path)
        if not _same_file(before, path):
            raise CryptoError("the file changed while it was being migrated; it was left as it is. Run "
                              "`dubbing migrate` again.", path=path)
        os.chmod(staged, stat.S_IMODE(before.st_mode))
        os.replace(staged, path)
        fsync_dir(path.parent)
    finally:
        _unlink(plain, check, staged)
    return old, again


def _migrate_store(path: Path, ring: Keyring) -> str:
    """Legacy character store -> new format through ``CharacterStore`` (under the store's lock)."""
    with store_lock(path):
        before = path.stat()
        legacy_payload = decrypt_bytes(path.read_bytes(), ring, source=path)
        store = CharacterStore.load(path, ring)
        blob = store.encrypted()
        staged = plaintext_tempfile(path.parent)
        try:
            atomic_write_bytes(staged, blob, mode=stat.S_IMODE(before.st_mode))
            check = plaintext_tempfile(private_tmp_dir())
            try:
                again = decrypt_file(staged, check, ring)
                restored = json.loads(check.read_text(encoding="utf-8"))
            finally:
                _unlink(check)
            if restored != json.loads(legacy_payload.decode("utf-8")):
                raise CryptoError("the migrated store does not hold the same characters; the original was "
                                  "left as it is. Report this as a bug.", path=path)
            if not _same_file(before, path):
                raise CryptoError("the store changed while it was being migrated; it was left as it is. Run "
                                  "`dubbing migrate` again.", path=path)
            os.replace(staged, path)
            fsync_dir(path.parent)
        finally:
            _unlink(staged)
    legacy_sha = hashlib.sha256(legacy_payload).hexdigest()
    note = "" if legacy_sha == again.sha256 else " (payload re-serialised; same characters)"
    legacy = FileInfo(FORMAT_LEGACY_STORE, 0, None, len(legacy_payload), legacy_sha)
    note += _log_migration(path, legacy, again, legacy_plaintext_bytes=len(legacy_payload),
                           legacy_sha256=legacy_sha)
    return (f"{path}: migrated {FORMAT_LEGACY_STORE} -> {FORMAT_NEW} (key {again.key_id}), "
            f"{again.plaintext_size} bytes, sha256 {again.sha256}{note}")


def migrate_path(path: Path, ring: Keyring, *, rekey: bool = False) -> str:
    """Migrate one file to the new format (with `rekey`, also off a key that is not the active one);
    returns the line to print (raises on failure)."""
    header = inspect_file(path)
    if header.format == FORMAT_NEW:
        if rekey and header.key_id != ring.active_id:
            return _rekey(path, ring)
        try:
            info = verify_file(path, ring)
        except CryptoError as exc:
            raise CryptoError(f"already in the current format, but it does not verify: {exc.reason}",
                              path=path) from None
        return f"{path}: already current ({_describe(info)})"
    if header.format == FORMAT_LEGACY_CHUNKED:
        return _migrate_chunked(path, ring)
    return _migrate_store(path, ring)


def _encrypted_files(folder: Path) -> tuple[list[Path], int]:
    """(files under `folder` in one of our encrypted formats, how many others were passed over)."""
    found, other = [], 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in sorted(files):
            path = Path(dirpath) / name
            if path.is_symlink() or name.startswith(TEMP_PREFIX):
                continue
            try:
                inspect_file(path)
                found.append(path)
            except (DubbingError, OSError):
                other += 1  # a deliverable, a manifest, a lock: not encrypted, nothing to migrate
    return found, other


def cmd_migrate(args: argparse.Namespace) -> int:
    ring = open_keyring(_keyring_path(args))
    failed = 0
    paths: list[Path] = []
    for name in args.paths:
        path = Path(name)
        if path.is_dir() and args.rekey:
            files, other = _encrypted_files(path)
            print(f"{path}: {len(files)} encrypted files ({other} other files passed over)", flush=True)
            paths += files
        else:
            paths.append(path)
    for path in paths:
        try:
            if path.is_dir():
                raise DubbingError(f"{path} is a folder; give the files to migrate (e.g. with find), or use "
                                   "--rekey, which walks folders.")
            print(migrate_path(path, ring, rekey=args.rekey), flush=True)
        except DubbingError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr, flush=True)
        except OSError as exc:
            failed += 1
            print(f"error: {path}: {exc.strerror or exc}", file=sys.stderr, flush=True)
    if failed:
        print(f"error: {failed} of {len(paths)} file(s) failed; the others were migrated or already "
              "current. Failed files were left as they were.", file=sys.stderr)
    return 1 if failed else 0


# ---- parser -------------------------------------------------------------------------------------------

def _add_keys(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="manage the encryption keyring",
                          description="Manage the keyring (DUBBING_KEYRING, 0600): create, rotate, list, "
                                      "import.")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    ksub.add_parser("init", help="create a keyring with a new random active key"
                    ).set_defaults(handler="keys init")
    ksub.add_parser("rotate", help="add a new active key; old keys stay for reading"
                    ).set_defaults(handler="keys rotate")
    ksub.add_parser("list", help="list key ids and fingerprints (never the keys)"
                    ).set_defaults(handler="keys list")
    ret = ksub.add_parser("retire", help="remove a key no encrypted file uses any more")
    ret.add_argument("key_id")
    ret.add_argument("--scan", nargs="*", default=None, metavar="PATH",
                     help="folders to check for files under the key (default: DUBBING_STORAGE and DUBBING_CACHE)")
    ret.set_defaults(handler="keys retire")
    imp = ksub.add_parser("import", help="add an existing key file (standard base64 of 32 bytes)")
    imp.add_argument("file", help="key file, e.g. the previous system's key.b64")
    imp.add_argument("--id", help="key id to store it under (default: derived from its fingerprint)")
    imp.add_argument("--activate", action="store_true", help="also make it the active key for new files")
    imp.set_defaults(handler="keys import")


def _add_decrypt(sub: argparse._SubParsersAction) -> None:
    dec = sub.add_parser("decrypt", help="decrypt a file (current format or the legacy layout)")
    dec.add_argument("input", help="encrypted file")
    dec.add_argument("output", help="where to write the plaintext (created 0600, atomically)")
    dec.set_defaults(handler="decrypt")


def _add_migrate(sub: argparse._SubParsersAction) -> None:
    mig = sub.add_parser("migrate", help="rewrite legacy-layout files in the current format, in place",
                         description="Each file is decrypted, re-encrypted with the active key, verified, "
                                     "and only then replaces the original. Files already current are left "
                                     "alone.")
    mig.add_argument("paths", nargs="+", metavar="PATH", help="files to migrate (with --rekey, also folders)")
    mig.add_argument("--rekey", action="store_true",
                     help="also re-encrypt current-format files under a key that is not the active one, so the "
                          "old key can be retired; folders are walked")
    mig.set_defaults(handler="migrate")


# ---- run commands: submit / status / wait / cancel / rerun --------------------------------------------
# Add each as `_add_<name>(sub)` (declare arguments, `set_defaults(handler="<name>")`) plus a handler
# `cmd_<name>(args) -> int`, then list the first in PARSER_BUILDERS and the second in HANDLERS.
# ------------------------------------------------------------------------------------------------------

def _add_runs(sub: argparse._SubParsersAction) -> None:
    from dubbing_assets import cli_runs

    HANDLERS.update(cli_runs.register(sub))


#: Functions that each add one top-level subcommand to the parser, in help order.
PARSER_BUILDERS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_runs,
    _add_keys,
    _add_decrypt,
    _add_migrate,
]

#: ``handler`` name (set by each subparser) -> function returning the exit code.
HANDLERS: dict[str, Handler] = {
    "keys init": cmd_keys_init,
    "keys rotate": cmd_keys_rotate,
    "keys list": cmd_keys_list,
    "keys import": cmd_keys_import,
    "keys retire": cmd_keys_retire,
    "decrypt": cmd_decrypt,
    "migrate": cmd_migrate,
}


def build_parser() -> argparse.ArgumentParser:
    """The `dubbing` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="dubbing", description="Dub TV episodes: keys, files and runs.")
    parser.add_argument("--keyring", metavar="PATH",
                        help="keyring file (default: DUBBING_KEYRING, else $DUBBING_HOME/keys/keyring.json)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in PARSER_BUILDERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dubbing` script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return HANDLERS[args.handler](args)
    except DubbingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
