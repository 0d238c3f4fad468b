"""Re-voicing an English episode (ASR with tiny.en, passthrough translation) delivered as MP4."""

from __future__ import annotations

import json

import av
import pytest

from dubbing_assets.core.settings import load_settings
from dubbing_assets_tests.conftest import MEDIA
from dubbing_assets_tests.orchestration.pipeline_helpers import prepare_episode, run_stages, step_failures

pytestmark = [pytest.mark.slow]
TRUTH = json.loads((MEDIA / "en_monologue.script.json").read_text())


def test_english_revoice_as_mp4(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DUBBING_CONTAINER", "mp4")
    instance, key = prepare_episode(tmp_path / "home", clip="en_monologue.mp4", series="beta", episode="e01")
    result = run_stages(instance, key)
    assert result.success, step_failures(result)
    script = result.output_for_node("script").to_dict()
    assert script["source"] == "asr" and script["language"] == "en" and len(script["lines"]) == 3
    translation = result.output_for_node("translation").to_dict()
    assert translation["engine"] == "passthrough"
    assert [ln["text"] for ln in translation["lines"]] == [ln["text"] for ln in script["lines"]]
    out = load_settings().output / "beta" / key / f"{key}.mp4"
    with av.open(str(out)) as container:
        assert container.format.name.startswith("mov,mp4")
        audio = list(container.streams.audio)
        assert len(audio) == 2 and audio[0].codec_context.sample_rate == 44100
        assert [a.metadata.get("language") for a in audio] == ["eng", "eng"]
        assert any(s.codec_context.name == "mov_text" for s in container.streams.subtitles)
    manifest = result.output_for_node("library_entry").manifest
    assert manifest["qa"]["passed"] is True and manifest["video_path"].endswith(".mp4")
