"""Library: manifests (created, updated, private by default), the series index, safe paths, cast file."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from dubbing_assets.core.contracts import Voice
from dubbing_assets.core.library import (
    cast_file_path,
    episode_dir,
    load_cast_file,
    read_manifest,
    read_series_index,
    write_cast_file,
    write_manifest,
)
from dubbing_assets.errors import ConfigError, UnsafeNameError


def _data(**extra: object) -> dict[str, object]:
    data: dict[str, object] = {
        "series": "alpha-series",
        "episode": "e01",
        "source": {"name": "Alpha Series - 01.mkv", "sha256": "ab" * 32, "duration_s": 13.73},
        "languages": {"source": "ja", "target": "en"},
        "tracks": [{"type": "audio", "language": "eng", "default": True}],
        "engines": {"asr": "faster-whisper", "tts": "piper"},
        "models": {"tts": "piper-en_US-joe-medium"},
        "qa": {"passed": True, "max_abs_sync_ms": 12.0},
        "owner": "alice",
    }
    data.update(extra)
    return data


def test_manifest_is_created_private_and_indexed(tmp_path: Path) -> None:
    folder = episode_dir(tmp_path, "alpha-series", "e01")
    assert folder == (tmp_path / "alpha-series" / "e01").resolve()
    manifest = write_manifest(folder, _data())
    assert manifest["visibility"] == "private"
    assert manifest["schema_version"] == 1
    assert manifest["created_at"] == manifest["updated_at"]
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk == manifest == read_manifest(folder)
    index = read_series_index(folder.parent)
    assert [e["episode"] for e in index["episodes"]] == ["e01"]
    assert index["episodes"][0]["visibility"] == "private" and index["episodes"][0]["qa_passed"] is True
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json"]  # no temp files


def test_manifest_update_keeps_created_at(tmp_path: Path) -> None:
    folder = episode_dir(tmp_path, "alpha-series", "e01")
    first = write_manifest(folder, _data())
    time.sleep(0.01)
    second = write_manifest(folder, _data(visibility="shared", qa={"passed": False}))
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] > first["updated_at"]
    assert second["visibility"] == "shared"
    index = read_series_index(folder.parent)
    assert len(index["episodes"]) == 1 and index["episodes"][0]["qa_passed"] is False
    with pytest.raises(ConfigError):
        write_manifest(folder, _data(visibility="everyone"))


def test_index_lists_episodes_under_concurrent_writers(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def publish(n: int) -> None:
        try:
            write_manifest(episode_dir(tmp_path, "alpha-series", f"e{n:02d}"), _data(episode=f"e{n:02d}"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    index = read_series_index(tmp_path / "alpha-series")
    assert [e["episode"] for e in index["episodes"]] == [f"e{n:02d}" for n in range(1, 9)]


@pytest.mark.parametrize(
    "series, episode",
    [
        ("..", "e01"),
        ("alpha-series", ".."),
        ("../etc", "e01"),
        ("alpha/series", "e01"),
        ("Alpha", "e01"),
        ("alpha-series", "e01/../../x"),
        ("", "e01"),
        ("alpha-series", "-e01"),
        ("alpha series", "e01"),
        ("alpha-series", "e01\x00"),
        ("/abs", "e01"),
        ("alpha-series", "ep.01"),
    ],
)
def test_hostile_names_are_refused(tmp_path: Path, series: str, episode: str) -> None:
    with pytest.raises(UnsafeNameError):
        episode_dir(tmp_path, series, episode)


def test_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "library", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "alpha-series").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafeNameError):
        episode_dir(root, "alpha-series", "e01")


def test_manifest_must_match_its_folder(tmp_path: Path) -> None:
    with pytest.raises(UnsafeNameError):
        write_manifest(episode_dir(tmp_path, "alpha-series", "e01"), _data(episode="e02"))
    with pytest.raises(UnsafeNameError):
        write_manifest(tmp_path / "alpha-series" / "e01", _data(series="../x"))


def test_cast_file_round_trip_and_validation(tmp_path: Path) -> None:
    path = cast_file_path(tmp_path, "alpha-series")
    assert load_cast_file(path) == {}
    cast = {
        "c0001": Voice("piper", "en_US-joe-medium", pitch_semitones=4.0, length_scale=0.95),
        "c0002": Voice("piper", "en_US-joe-medium", speaker_id=None, pitch_semitones=-4.0, length_scale=1.05),
    }
    write_cast_file(path, cast, names={"c0001": "Aiko", "c0002": "Kenji"}, series="alpha-series")
    assert load_cast_file(path) == cast
    text = path.read_text()
    assert "Aiko" in text and "pitch_semitones: 4.0" in text
    # a person pins a different voice by editing the YAML
    path.write_text(text.replace("pitch_semitones: 4.0", "pitch_semitones: 6"))
    assert load_cast_file(path)["c0001"].pitch_semitones == 6.0
    bad = tmp_path / "bad.yaml"
    for body in (
        "characters: [1, 2]",
        "characters:\n  c1: {engine: piper}",
        "characters:\n  c1: {voice: x, length_scale: fast}",
        "characters:\n  c1: {voice: x, pitch_semitones: 99}",
        "characters: {c1: {voice: x}",
    ):
        bad.write_text(body)
        with pytest.raises(ConfigError):
            load_cast_file(bad)


def test_cast_file_lists_the_voice_bank_and_pins_any_engine(tmp_path) -> None:
    from dubbing_assets.core.contracts import Voice
    from dubbing_assets.core.library import load_cast_file, write_cast_file

    path = tmp_path / "cast.yaml"
    kokoro = Voice(engine="kokoro", voice="jf_nezumi", speaker_id=None, length_scale=1.0, pitch_semitones=0.0,
                   settings={})
    bank = [{"engine": "kokoro", "voice": "jf_nezumi", "speaker_id": None, "gender": "female", "f0_hz": 240.0},
            {"engine": "piper", "voice": "en_US-joe-medium", "speaker_id": None, "gender": "male", "f0_hz": 120.0}]
    write_cast_file(path, {"c0001": kokoro}, names={"c0001": "Aiko"}, series="s", bank=bank)
    text = path.read_text()
    assert "voice_bank:" in text and "jf_nezumi" in text and "en_US-joe-medium" in text
    assert load_cast_file(path) == {"c0001": kokoro}


def test_visibility_sets_the_folder_and_file_modes(tmp_path: Path) -> None:
    import stat

    from dubbing_assets.core.library import apply_visibility, prepare_episode_dir

    folder = prepare_episode_dir(tmp_path, "alpha-series", "alpha-series-e01", "private")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    (folder / "ep.mkv").write_bytes(b"video")
    apply_visibility(folder, "private")
    assert stat.S_IMODE((folder / "ep.mkv").stat().st_mode) == 0o600
    apply_visibility(folder, "public")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "ep.mkv").stat().st_mode) == 0o644
