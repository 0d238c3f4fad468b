"""Inbox scanning: stability, fingerprints, caps, quarantine, hostile names."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dubbing_assets.core.inbox import InboxScanner, episode_key, episode_slug
from dubbing_assets.core.safepath import is_slug, safe_join
from dubbing_assets.errors import UnsafeNameError
from dubbing_assets_tests.conftest import MEDIA


def _scanner(tmp_path: Path, cap: int = 20, **settle: float) -> InboxScanner:
    """A scanner that takes a file on its second sighting, unless `settle` says otherwise (these tests
    are about keys and hashing; the settle rule has its own tests in test_sensor.py)."""
    settle = {"stable_ticks": 1, "settle_s": 0, **settle}
    return InboxScanner(tmp_path / "inbox", tmp_path / "state" / "inbox.sqlite", tmp_path / "quarantine", cap=cap,
                        **settle)


def _drop(tmp_path: Path, series: str, name: str, src: Path = MEDIA / "en_monologue.mp4") -> Path:
    folder = tmp_path / "inbox" / series
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    shutil.copyfile(src, dest)
    return dest


def test_new_file_is_ready_after_one_stable_tick(tmp_path: Path) -> None:
    _drop(tmp_path, "Alpha Series", "Alpha Series - 01.mp4")
    s = _scanner(tmp_path)
    first = s.scan()
    assert first.ready == [] and first.waiting == 1
    second = s.scan()
    assert [e.key for e in second.ready] == ["alpha-series-e01"]
    s.mark_requested(second.ready[0])
    assert s.scan().ready == []  # same file again: nothing


def test_modified_file_is_ready_again(tmp_path: Path) -> None:
    path = _drop(tmp_path, "show", "S01E02.mp4")
    s = _scanner(tmp_path)
    s.scan()
    ep = s.scan().ready[0]
    s.mark_requested(ep)
    with open(path, "ab") as fh:
        fh.write(b"\0" * 10)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert s.scan().ready == []  # changed: wait for stability
    again = s.scan().ready
    assert len(again) == 1 and again[0].changed and again[0].fingerprint != ep.fingerprint
    assert again[0].key == ep.key


def test_partial_upload_waits_until_stable(tmp_path: Path) -> None:
    folder = tmp_path / "inbox" / "show"
    folder.mkdir(parents=True)
    data = (MEDIA / "en_monologue.mp4").read_bytes()
    path = folder / "e05.mp4"
    s = _scanner(tmp_path)
    for i in range(1, 4):  # grows every tick
        path.write_bytes(data[: len(data) * i // 4])
        os.utime(path, ns=(10**18 + i, 10**18 + i))
        assert s.scan().ready == []
    path.write_bytes(data)
    assert s.scan().ready == []
    assert len(s.scan().ready) == 1


def test_bad_file_is_quarantined_with_reason(tmp_path: Path) -> None:
    folder = tmp_path / "inbox" / "show"
    folder.mkdir(parents=True)
    (folder / "e01.mp4").write_text("this is not a video\n")
    (folder / "e02.mkv").write_bytes(b"")
    st = (folder / "e02.mkv").stat()  # empty for longer than an upload takes to start writing
    os.utime(folder / "e02.mkv", ns=(st.st_atime_ns, st.st_mtime_ns - 601 * 10**9))
    s = _scanner(tmp_path)
    s.scan()
    result = s.scan()
    assert result.ready == []
    reasons = {r.relpath: r.reason for r in result.rejected}
    assert "not a video" in reasons["show/e01.mp4"] and "empty" in reasons["show/e02.mkv"]
    moved = list((tmp_path / "quarantine" / "show").glob("*.reason.txt"))
    assert len(moved) == 2
    assert not (folder / "e01.mp4").exists()


def test_cap_spreads_requests_over_ticks(tmp_path: Path) -> None:
    for i in range(50):
        _drop(tmp_path, "bulk", f"e{i:03d}.mp4")
    s = _scanner(tmp_path, cap=20)
    s.scan()
    keys: list[str] = []
    for _ in range(3):
        result = s.scan()
        for ep in result.ready:
            s.mark_requested(ep)
        keys += [e.key for e in result.ready]
    assert len(keys) == 50 and len(set(keys)) == 50


@pytest.mark.parametrize("series,name", [
    ("..", "e01.mp4"), ("Show [BD] (2024)", "../../etc/passwd.mp4"), ("ショー", "第1話.mkv"),
    ("show", "my file [1080p] {x}.mkv"), ("a/b", "e01.mkv"), ("show", ".hidden.mkv"),
])
def test_hostile_names_give_safe_keys(series: str, name: str) -> None:
    key = episode_key(series, name)
    assert is_slug(key) and "/" not in key and ".." not in key


def test_collisions_get_distinct_keys(tmp_path: Path) -> None:
    _drop(tmp_path, "show", "Show E01.mp4")
    _drop(tmp_path, "show", "show-e01.mp4", MEDIA / "ja_two_speakers.mkv")
    s = _scanner(tmp_path)
    s.scan()
    result = s.scan()
    keys = sorted(e.key for e in result.ready)
    assert len(set(keys)) == 2 and result.collisions


def test_safe_join_refuses_escape(tmp_path: Path) -> None:
    for bad in ("..", "a/b", "", "x\x00"):
        with pytest.raises(UnsafeNameError):
            safe_join(tmp_path, bad)


def test_episode_slug_patterns() -> None:
    assert episode_slug("Show.S02E07.1080p.mkv") == "s02e07"
    assert episode_slug("Show - 12 [abc].mkv") == "e12"
    assert episode_slug("Episode 3.mp4") == "e03"
    assert episode_slug("pilot.mkv") == "pilot"
    assert episode_slug("第1話.mkv") == "e01" and episode_slug("進撃の巨人 第１２話.mkv") == "e12"


def test_series_named_in_japanese_are_two_series(tmp_path: Path) -> None:
    """Both folders' names slugged to "" and so to "series": one library folder and one character store for
    two shows, and the second show's first episode taken as a collision with the first's."""
    _drop(tmp_path, "進撃の巨人", "第1話.mp4")
    _drop(tmp_path, "鬼滅の刃", "第1話.mp4", MEDIA / "ja_two_speakers.mkv")
    s = _scanner(tmp_path)
    s.scan()
    result = s.scan()
    assert len({e.series for e in result.ready}) == 2 and not result.collisions
    assert all(e.key.endswith("-e01") for e in result.ready)


def test_symlinked_sidecars_are_never_followed(tmp_path: Path) -> None:
    """`ep01.srt -> /elsewhere/secret.srt` must not become script lines (issue 14, item 4): the inbox lists
    and `source_media` reads regular files beside the episode only, never links or devices."""
    from dubbing_assets.core.media import sidecar_subtitles

    video = _drop(tmp_path, "Alpha Series", "Alpha Series - 01.mp4")
    secret = tmp_path / "elsewhere" / "secret.srt"
    secret.parent.mkdir()
    secret.write_text("1\n00:00:01,000 --> 00:00:02,000\nthe studio's unreleased line\n", encoding="utf-8")
    (video.parent / "Alpha Series - 01.srt").symlink_to(secret)
    os.mkfifo(video.parent / "Alpha Series - 01.ja.ass")
    (video.parent / "Alpha Series - 01.en.ass").write_text("[Script Info]\n", encoding="utf-8")
    assert [Path(s["path"]).name for s in sidecar_subtitles(video)] == ["Alpha Series - 01.en.ass"]
    s = _scanner(tmp_path)
    s.scan()
    (ready,) = s.scan().ready
    assert ready.sidecars == ["Alpha Series/Alpha Series - 01.en.ass"]


def test_a_submitted_file_is_taken_on_the_first_tick_without_settling(tmp_path: Path) -> None:
    """`dubbing submit` writes the file whole (copy beside, rename) and announces it: no waiting for uploads."""
    from dubbing_assets.core.inbox import announce_file

    dropped = _drop(tmp_path, "show", "dropped.mp4")
    submitted = _drop(tmp_path, "show", "submitted.mp4", MEDIA / "ja_two_speakers.mkv")
    state = tmp_path / "state" / "inbox.sqlite"
    s = _scanner(tmp_path, stable_ticks=2, settle_s=3600)  # a plain drop would wait an hour
    announce_file(state, "show/submitted.mp4", submitted.stat())
    first = s.scan()
    assert [e.relpath for e in first.ready] == ["show/submitted.mp4"] and first.waiting == 1, first
    s.mark_requested(first.ready[0])
    assert s.scan().ready == []  # requested once, and the announcement is used up
    assert s.db.execute("SELECT count(*) FROM announced").fetchone()[0] == 0
    assert dropped.exists()


def test_a_submitted_file_changed_afterwards_settles_like_a_drop(tmp_path: Path) -> None:
    from dubbing_assets.core.inbox import announce_file

    path = _drop(tmp_path, "show", "ep.mp4")
    s = _scanner(tmp_path, stable_ticks=2, settle_s=0)
    announce_file(tmp_path / "state" / "inbox.sqlite", "show/ep.mp4", path.stat())
    with open(path, "ab") as fh:  # someone appends after the submit: an upload may be going on
        fh.write(b"\0" * 10)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert s.scan().ready == []
    assert s.scan().ready == []
    assert [e.relpath for e in s.scan().ready] == ["show/ep.mp4"]


def test_a_new_version_submitted_over_a_taken_file_is_taken_at_once_too(tmp_path: Path) -> None:
    from dubbing_assets.core.inbox import announce_file

    state = tmp_path / "state" / "inbox.sqlite"
    path = _drop(tmp_path, "show", "ep.mp4")
    s = _scanner(tmp_path, stable_ticks=2, settle_s=3600)
    announce_file(state, "show/ep.mp4", path.stat())
    (first,) = s.scan().ready
    s.mark_requested(first)
    shutil.copyfile(MEDIA / "ja_two_speakers.mkv", path)  # the owner's next version, written whole by submit
    announce_file(state, "show/ep.mp4", path.stat())
    (second,) = s.scan().ready
    assert second.key == first.key and second.changed and second.fingerprint != first.fingerprint
