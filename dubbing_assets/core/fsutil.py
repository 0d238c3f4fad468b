"""Small filesystem primitives every writer uses: atomic writes and hashing.

A write is temp-file-in-the-same-folder, fsync, rename: a killed process
leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1 << 20


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every OS/filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(dst: Path | str, *, mode: int | None = None, prefix: str | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``dst`` only if the block completes: a temp file in the same
    folder (created 0600), fsync, ``os.replace``, fsync of the folder; on any error the temp is removed
    and ``dst`` is untouched. ``mode`` sets the final permissions (default: 0600, as created); the
    folder must exist. Every atomic write of the project goes through here."""
    dst = Path(dst)
    folder = dst.parent if str(dst.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, "the destination folder does not exist", str(folder))
    fd, tmp_name = tempfile.mkstemp(prefix=prefix if prefix is not None else f".{dst.name}.", suffix=".tmp",
                                    dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(folder)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """`data` into `path` atomically (`atomic_output`), creating the folder; 0644 unless `mode` says."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"atomic_write_bytes takes bytes, not {type(data).__name__}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, mode=mode) as fh:
        fh.write(data)


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str | None = None) -> Iterator[Path]:
    """A temp path beside `path` for a tool (ffmpeg, OpenCV, a WAV writer) to write; when the block ends
    normally the file is fsynced and renamed over `path`, else removed. The suffix (default `path`'s own)
    tells tools that choose a format by extension which one to write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix if suffix is not None else path.suffix,
                                dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_json(path: Path, data: Any, *, mode: int = 0o644) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode(),
                       mode=mode)


def cached_json(paths: Sequence[Path], build: Callable[[], dict[str, Any]],
                valid: Callable[[dict[str, Any]], bool] = lambda _: True) -> tuple[dict[str, Any], bool]:
    """(entry, whether it was built): the first readable, `valid` copy among `paths`, copied into those
    that lack it or hold a damaged or stale one; else `build()`, written to all. A read-only or full cache
    only costs a rebuild later."""
    found: dict[str, Any] | None = None
    bad: list[Path] = []  # read before `found`: absent, damaged or not valid, so written again
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and valid(data):
                found = data
                break
        except (OSError, ValueError):
            pass  # absent or damaged: the next copy, or a rebuild
        bad.append(path)
    built = found is None
    entry = build() if found is None else found
    for path in paths:
        if built or path in bad or not path.is_file():
            with contextlib.suppress(OSError):
                atomic_write_text(path, json.dumps(entry))
    return entry, built


def file_sha256(path: Path) -> str:
    """Content sha256, streamed in 1 MiB blocks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory `flock` on `lock_path` (created 0600) for the `with` block.

    Serialises read-modify-write cycles between processes (series index,
    character store, joining a split model); writes stay atomic without it.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
