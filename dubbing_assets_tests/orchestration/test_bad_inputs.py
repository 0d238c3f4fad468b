"""Bad input stops the run at source_media with a clear reason; nothing downstream is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dubbing_assets.core.ffmpeg import run_ffmpeg
from dubbing_assets.core.settings import load_settings
from dubbing_assets_tests.conftest import MEDIA
from dubbing_assets_tests.orchestration.pipeline_helpers import prepare_episode, run_stages, step_failures


def _no_audio(path: Path) -> None:
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=2", "-c:v", "mpeg4", str(path)],
               what="making a silent test video")


def _zero(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    data = (MEDIA / "ja_two_speakers.mkv").read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _text(path: Path) -> None:
    path.write_text("not a video at all\n" * 100)


@pytest.mark.parametrize("make,expect", [
    (_no_audio, "no audio"), (_zero, "empty"), (_truncated, "truncated"), (_text, "not a media file"),
], ids=["no-audio", "zero-bytes", "truncated", "text-as-mp4"])
def test_bad_input_fails_at_source_media(tmp_path: Path, make, expect: str) -> None:
    instance, key = prepare_episode(tmp_path / "home", clip="en_monologue.mp4", episode="e09")
    settings = load_settings()
    target = settings.inbox / "alpha-series" / "e09.mp4"
    make(target)
    result = run_stages(instance, key)
    assert not result.success
    failures = step_failures(result)
    assert len(failures) == 1, failures
    assert expect in failures[0].lower(), failures[0]
    failed_steps = [ev.step_key for ev in result.all_events if ev.event_type_value == "STEP_FAILURE"]
    assert failed_steps == ["source_media"]
    stored = [p.name for p in settings.storage.iterdir()] if settings.storage.exists() else []
    assert stored == [], f"nothing may be written after a failed validation: {stored}"
    assert not list(settings.output.rglob("*.mkv"))
    shutil.rmtree(settings.home / "tmp", ignore_errors=True)


def test_a_file_replaced_after_its_run_was_queued_is_not_dubbed_as_that_run(tmp_path: Path) -> None:
    """Issue 14: a new version landing between the sensor's request and the run was dubbed with the old
    request's run key and options; the run must refuse it (the new version gets its own run)."""
    instance, key = prepare_episode(tmp_path / "home", clip="en_monologue.mp4", episode="e10")
    target = load_settings().inbox / "alpha-series" / "e10.mp4"
    with target.open("ab") as fh:  # another valid file: the same clip with other bytes at the end
        fh.write(b"\0" * 64)
    result = run_stages(instance, key)
    assert not result.success
    (failure,) = step_failures(result)
    assert "changed after this run was queued" in failure, failure
    assert not list(load_settings().output.rglob("*.mkv"))
    shutil.rmtree(load_settings().home / "tmp", ignore_errors=True)
