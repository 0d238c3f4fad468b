"""The ASR path end to end: whisper base transcribes Japanese, diarization finds two speakers,
whisper translates to English, and the dub is delivered."""

from __future__ import annotations

import json

import pytest

from dubbing_assets.core.metrics import cer, chrf
from dubbing_assets_tests.conftest import MEDIA
from dubbing_assets_tests.orchestration.pipeline_helpers import prepare_episode, run_stages, step_failures

pytestmark = [pytest.mark.slow]
TRUTH = json.loads((MEDIA / "ja_two_speakers.script.json").read_text())


def test_asr_path_end_to_end(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DUBBING_SCRIPT_SOURCE", "asr")
    monkeypatch.setenv("DUBBING_TRANSLATION_ENGINE", "whisper-translate")
    instance, key = prepare_episode(tmp_path / "home", episode="e02")
    result = run_stages(instance, key)
    assert result.success, step_failures(result)
    script = result.output_for_node("script")
    assert script.source == "asr" and script.language == "ja"
    assert len(script.lines) == 4
    for got, want in zip(script.lines, TRUTH["lines"], strict=True):
        assert abs(got.start - want["start"]) <= 0.3 and abs(got.end - want["end"]) <= 0.3
    ref = "".join(ln["text_ja"] for ln in TRUTH["lines"])
    error = cer(ref, "".join(ln.text for ln in script.lines))
    assert error <= 0.20
    speakers = result.output_for_node("speakers")
    labels = [speakers.line_speakers[i] for i in range(4)]
    truth = [ln["speaker"] for ln in TRUTH["lines"]]
    assert len(set(labels)) == 2
    assert all((labels[i] == labels[j]) == (truth[i] == truth[j]) for i in range(4) for j in range(4))
    tr = result.output_for_node("translation")
    assert tr.engine == "whisper-translate" and len(tr.lines) == 4
    score = chrf(" ".join(ln["text_en"] for ln in TRUTH["lines"]), " ".join(ln.text for ln in tr.lines))
    print(f"ASR path: CER {error:.3f}, whisper-translate chrF {score:.1f}")
    manifest = result.output_for_node("library_entry").manifest
    assert manifest["engines"]["translation"] == "whisper-translate"
    assert manifest["engines"]["script"] == "asr (whisper-base)"  # it used to record the mode, "low"
