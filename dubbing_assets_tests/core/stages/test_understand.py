"""The understanding stages as plain functions: no Dagster, a runtime and records in, a record out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dubbing_assets.core.contracts import EpisodeRecord, Script, SourceMedia, Speakers, Stems
from dubbing_assets.core.fsutil import file_sha256
from dubbing_assets.core.inbox import write_episode_record
from dubbing_assets.core.runtime import Runtime
from dubbing_assets.core.settings import load_settings
from dubbing_assets.core.stages import understand
from dubbing_assets.errors import StageError
from dubbing_assets_tests.conftest import MEDIA


def _episode(home: Path, *, fingerprint: str | None = None) -> Runtime:
    settings = load_settings().ensure()
    folder = settings.inbox / "show"
    folder.mkdir(parents=True)
    shutil.copyfile(MEDIA / "ja_two_speakers.mkv", folder / "e01.mkv")
    write_episode_record(settings.episodes, EpisodeRecord(
        key="show-e01", series="show", source="show/e01.mkv",
        fingerprint=fingerprint or file_sha256(folder / "e01.mkv"), target_lang="en"))
    return Runtime(settings)


def test_source_stems_script_and_speakers_without_dagster(dubbing_env: Path) -> None:
    rt = _episode(dubbing_env)
    try:
        src = understand.source_media(rt, "show-e01")
        assert isinstance(src, SourceMedia) and src.record.series == "show" and src.has_video
        assert src.duration_s and src.duration_s > 5 and src.subtitles
        stems = understand.audio_stems(rt, src)
        assert isinstance(stems, Stems) and stems.separator == "signal" and Path(stems.dialogue.path).exists()
        script = understand.script(rt, src, stems)
        assert isinstance(script, Script) and script.source == "subtitles" and len(script.lines) == 4
        assert "audio's language" in script.meta["script_from"]
        speakers = understand.speakers(rt, script, stems, src)
        assert isinstance(speakers, Speakers) and sorted(s.label for s in speakers.speakers) == ["Aiko", "Kenji"]
        assert all(s.f0_hz for s in speakers.speakers)
    finally:
        rt.close()


def test_a_file_replaced_after_queuing_is_a_stage_error(dubbing_env: Path) -> None:
    rt = _episode(dubbing_env, fingerprint="0" * 64)
    with pytest.raises(StageError, match="changed after this run was queued"):
        understand.source_media(rt, "show-e01")


def test_an_episode_without_a_record_is_a_stage_error(dubbing_env: Path) -> None:
    with pytest.raises(StageError, match="inbox sensor"):
        understand.source_media(Runtime(load_settings()), "show-e09")
