"""Atomic output files and private temporary plaintext files.

Why here and not in a general helper: the crypto layer must control exactly
where plaintext lands (0600 files, a neutral name that cleanup recognises) and
must never leave half a ciphertext in place of a good one. Every file it
writes goes through ``atomic_output``: a temp file in the destination folder,
fsync, ``os.replace``, fsync of the folder; on any error the temp is removed
and the destination is untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dubbing_assets.core.crypto.legacy import LEGACY_TEMP_PREFIX
from dubbing_assets.core.fsutil import atomic_output as fsutil_atomic_output
from dubbing_assets.core.fsutil import fsync_dir as fsync_dir

#: Prefix of every temporary file this project creates (plaintext copies and
#: in-progress outputs). Neutral on purpose: no product or version token.
TEMP_PREFIX = "dubtmp_"

#: Prefixes that ``cleanup_stale_temporaries`` removes: ours and the one the
#: previous system used for its decrypted copies.
STALE_PREFIXES: tuple[str, ...] = (TEMP_PREFIX, LEGACY_TEMP_PREFIX)

DEFAULT_STALE_AGE_S = 6 * 3600.0


@contextlib.contextmanager
def atomic_output(dst: Path, *, mode: int | None = None) -> Iterator[BinaryIO]:
    """`fsutil.atomic_output` with the temp named ``TEMP_PREFIX...``, so a killed process leaves
    something ``cleanup_stale_temporaries`` recognises (the file may be plaintext until the rename)."""
    with fsutil_atomic_output(dst, mode=mode, prefix=TEMP_PREFIX + "w_") as fh:
        yield fh


def atomic_write_bytes(dst: Path, data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``dst`` atomically (see ``atomic_output``); 0600 unless ``mode`` says."""
    with atomic_output(dst, mode=mode) as fh:
        fh.write(data)


def plaintext_tempfile(folder: Path | None = None, *, suffix: str = "") -> Path:
    """Create an empty private (0600) temporary file for plaintext and return its path.

    The caller owns the file and deletes it; if it is forgotten (a killed
    process), ``cleanup_stale_temporaries`` removes it once it is stale.
    ``folder`` defaults to the system temp folder.
    """
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=folder)
    os.close(fd)
    os.chmod(name, 0o600)  # mkstemp already does; be explicit, the umask cannot widen it.
    return Path(name)


def cleanup_stale_temporaries(folder: Path | None = None,
                              max_age_s: float = DEFAULT_STALE_AGE_S) -> list[Path]:
    """Remove temporary plaintext files (and folders) older than ``max_age_s``; return their paths.

    Looks only at the top level of ``folder`` (default: the system temp
    folder), at entries owned by the current user whose names start with this
    project's prefix or the previous system's prefix. Symlinks are never
    followed or removed. A folder counts as stale only if nothing inside it
    changed within ``max_age_s``. Fresh entries are left alone: another
    process may be using them right now.
    """
    root = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    cutoff = time.time() - max_age_s
    uid = os.getuid() if hasattr(os, "getuid") else None
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.name.startswith(STALE_PREFIXES):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if uid is not None and st.st_uid != uid:
            continue
        if stat.S_ISREG(st.st_mode):
            if st.st_mtime <= cutoff:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
        elif stat.S_ISDIR(st.st_mode) and _newest_mtime(entry.path, st.st_mtime) <= cutoff:
            shutil.rmtree(entry.path, ignore_errors=True)
            if not os.path.lexists(entry.path):
                removed.append(Path(entry.path))
    return sorted(removed)


def _newest_mtime(folder: str, own: float) -> float:
    newest = own
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
    return newest
