"""Filesystem primitives (core/fsutil.py): atomic writes, the multi-folder JSON cache, hashing, the file lock.

Every writer in the project leans on these: a failed or interrupted write must keep the old file and leave no
temp file behind, readers must never see half a file, the JSON cache must read, fill and rebuild its copies as
its docstring says, and the lock must exclude a second holder (thread or process) until it is released.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from dubbing_assets.core import fsutil
from dubbing_assets.core.fsutil import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    cached_json,
    file_lock,
    file_sha256,
)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# atomic writes


def test_atomic_write_creates_parents_and_leaves_only_the_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "data.bin"
    atomic_write_bytes(target, b"\x00\x01payload")
    assert target.read_bytes() == b"\x00\x01payload"
    assert _names(target.parent) == ["data.bin"]  # the temp file was renamed, not copied
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_atomic_write_replaces_the_old_content_and_sets_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "secret.bin"
    atomic_write_bytes(target, b"old and longer content")
    atomic_write_bytes(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"  # replaced, not overwritten in place (no stale tail)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert _names(tmp_path) == ["secret.bin"]


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk at fsync time: the old version stays whole and the temp file is removed."""
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(target, b"new " * 1000)
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["state.json"]


def test_an_interrupted_write_keeps_the_old_file_and_no_temp(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (a BaseException, not an Exception) between writing and renaming is cleaned up as well."""
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    def interrupted(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["state.json"]


def test_writing_over_a_folder_fails_without_leaving_a_temp(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside.txt").write_text("kept")
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"x")
    assert target.is_dir() and (target / "inside.txt").read_text() == "kept"
    assert _names(tmp_path) == ["taken"]


def test_bad_data_raises_before_anything_replaces_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_json(target, {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        atomic_write_json(target, {"not serialisable": object()})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert _names(tmp_path) == ["out.json"]


def test_readers_never_see_half_a_file_while_writers_race(tmp_path: Path) -> None:
    """Two writers replace a 256 KiB file over and over; every read is one whole version of it."""
    target = tmp_path / "shared.bin"
    versions = [bytes([i]) * (256 * 1024) for i in range(4)]
    atomic_write_bytes(target, versions[0])
    errors: list[BaseException] = []

    def writer(which: list[bytes]) -> None:
        try:
            for _ in range(15):
                for data in which:
                    atomic_write_bytes(target, data)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(versions[:2],)),
               threading.Thread(target=writer, args=(versions[2:],))]
    for t in threads:
        t.start()
    reads = 0
    while any(t.is_alive() for t in threads):
        data = target.read_bytes()
        assert data in versions, f"a reader saw a partial file of {len(data)} bytes"
        reads += 1
    for t in threads:
        t.join()
    assert errors == []
    assert reads > 0 and target.read_bytes() in versions
    assert _names(tmp_path) == ["shared.bin"]


def test_text_and_json_are_utf8_and_stable(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "t.txt", "こんにちは, café")
    assert (tmp_path / "t.txt").read_bytes() == "こんにちは, café".encode()

    atomic_write_json(tmp_path / "a.json", {"b": [1, 2], "a": "é"})
    atomic_write_json(tmp_path / "b.json", {"a": "é", "b": [1, 2]})
    text = (tmp_path / "a.json").read_text(encoding="utf-8")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()  # key order does not matter
    assert "é" in text and text.endswith("\n")  # readable, not \u00e9
    assert json.loads(text) == {"a": "é", "b": [1, 2]}


# cached_json


class _Builder:
    def __init__(self, entry: dict[str, Any]) -> None:
        self.entry = entry
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return dict(self.entry)


def test_cached_json_builds_once_and_writes_every_copy(tmp_path: Path) -> None:
    paths = [tmp_path / "local" / "e.json", tmp_path / "shared" / "e.json"]
    build = _Builder({"value": 42})
    entry, built = cached_json(paths, build)
    assert (entry, built, build.calls) == ({"value": 42}, True, 1)
    assert [json.loads(p.read_text()) for p in paths] == [{"value": 42}] * 2

    again, built = cached_json(paths, build)
    assert (again, built, build.calls) == ({"value": 42}, False, 1)


def test_cached_json_takes_the_first_valid_copy_and_fills_the_missing_ones(tmp_path: Path) -> None:
    first, second, third = tmp_path / "1.json", tmp_path / "2.json", tmp_path / "3.json"
    second.write_text(json.dumps({"from": "second"}))
    third.write_text(json.dumps({"from": "third"}))
    build = _Builder({"from": "build"})
    entry, built = cached_json([first, second, third], build)
    assert (entry, built, build.calls) == ({"from": "second"}, False, 0)
    assert json.loads(first.read_text()) == {"from": "second"}  # it lacked the entry: copied in
    assert json.loads(third.read_text()) == {"from": "third"}  # it had one: left alone


def test_cached_json_skips_damaged_non_dict_and_invalid_copies(tmp_path: Path) -> None:
    damaged, a_list, stale, good = (tmp_path / f"{n}.json" for n in ("damaged", "list", "stale", "good"))
    damaged.write_text('{"version": 2, "val')  # cut short
    a_list.write_text("[1, 2]")
    stale.write_text(json.dumps({"version": 1}))
    good.write_text(json.dumps({"version": 2, "val": "ok"}))
    build = _Builder({"version": 2, "val": "built"})
    entry, built = cached_json([damaged, a_list, stale, good], build, valid=lambda d: d.get("version") == 2)
    assert (entry, built, build.calls) == ({"version": 2, "val": "ok"}, False, 0)
    # the copies read before the good one are repaired: the next read takes the first, not a fall-through
    assert [json.loads(p.read_text()) for p in (damaged, a_list, stale)] == [{"version": 2, "val": "ok"}] * 3


def test_cached_json_rebuilds_when_no_copy_is_valid_and_overwrites_them(tmp_path: Path) -> None:
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    paths[0].write_text(json.dumps({"version": 1}))
    paths[1].write_text("not json")
    build = _Builder({"version": 2})
    entry, built = cached_json(paths, build, valid=lambda d: d.get("version") == 2)
    assert (entry, built, build.calls) == ({"version": 2}, True, 1)
    assert [json.loads(p.read_text()) for p in paths] == [{"version": 2}] * 2


def test_cached_json_survives_a_copy_it_cannot_write(tmp_path: Path) -> None:
    """A cache folder that cannot be created (here a file is in the way) only costs a rebuild later."""
    (tmp_path / "blocked").write_text("a file, not a folder")
    unwritable, writable = tmp_path / "blocked" / "e.json", tmp_path / "ok" / "e.json"
    build = _Builder({"value": 1})
    entry, built = cached_json([unwritable, writable], build)
    assert (entry, built) == ({"value": 1}, True)
    assert json.loads(writable.read_text()) == {"value": 1}
    assert cached_json([unwritable, writable], build) == ({"value": 1}, False) and build.calls == 1


def test_cached_json_writes_nothing_when_the_build_fails(tmp_path: Path) -> None:
    path = tmp_path / "c" / "e.json"

    def build() -> dict[str, Any]:
        raise RuntimeError("engine down")

    with pytest.raises(RuntimeError, match="engine down"):
        cached_json([path], build)
    assert not path.exists()


def test_cached_json_with_no_folders_just_builds(tmp_path: Path) -> None:
    build = _Builder({"value": 1})
    assert cached_json([], build) == ({"value": 1}, True)
    assert cached_json([], build) == ({"value": 1}, True) and build.calls == 2


# file_sha256


@pytest.mark.parametrize("size", [0, 1, fsutil.CHUNK - 1, fsutil.CHUNK, 2 * fsutil.CHUNK + 12345])
def test_file_sha256_matches_hashlib_across_block_boundaries(tmp_path: Path, size: int) -> None:
    data = (bytes(range(251)) * (size // 251 + 1))[:size]  # not a multiple of anything: blocks differ
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_file_sha256_of_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "nope.bin")


# file_lock


def test_file_lock_creates_a_private_lock_file(tmp_path: Path) -> None:
    lock = tmp_path / "deep" / "er" / ".x.lock"
    with file_lock(lock):
        assert lock.is_file()
    assert stat.S_IMODE(lock.stat().st_mode) & 0o077 == 0  # 0600 at most (umask can only narrow it)


def test_file_lock_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    lock = tmp_path / "index.lock"
    entered, done = threading.Event(), threading.Event()

    def second() -> None:
        with file_lock(lock):
            entered.set()
        done.set()

    with file_lock(lock):
        t = threading.Thread(target=second, daemon=True)
        t.start()
        assert not entered.wait(0.3), "a second holder got in while the lock was held"
    assert entered.wait(5) and done.wait(5)
    t.join(5)


def test_file_lock_excludes_another_process(tmp_path: Path) -> None:
    lock = tmp_path / "submit.lock"
    probe = ("import fcntl, os, sys\n"
             "fd = os.open(sys.argv[1], os.O_RDWR)\n"
             "try:\n"
             "    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "except BlockingIOError:\n"
             "    print('busy')\n"
             "else:\n"
             "    print('free')\n")

    def other_process() -> str:
        return subprocess.run([sys.executable, "-c", probe, str(lock)], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()

    with file_lock(lock):
        assert other_process() == "busy"
    assert other_process() == "free"


def test_file_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with pytest.raises(ValueError), file_lock(lock):
        raise ValueError("inside")
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError if still held
    finally:
        os.close(fd)


def test_file_lock_accepts_a_string_path(tmp_path: Path) -> None:
    with file_lock(str(tmp_path / "s.lock")):  # type: ignore[arg-type]
        pass
    assert (tmp_path / "s.lock").is_file()
