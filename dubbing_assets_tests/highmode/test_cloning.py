"""Two-pass cloning without the xtts extra: reference picking on the fixture, and the per-line check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dubbing_assets.core.audio_io import load_audio_mono16k
from dubbing_assets.core.cloning import (
    VerifiedCloneEngine,
    pick_references,
    reference_embedding,
    select_references,
)
from dubbing_assets.core.contracts import Voice

pytestmark = [pytest.mark.highmode, pytest.mark.required]

MEDIA = Path(__file__).resolve().parents[1] / "data" / "media"
CLIP = MEDIA / "ja_two_speakers.mkv"


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads((MEDIA / "ja_two_speakers.script.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    return load_audio_mono16k(CLIP)


def _own_and_others(truth: dict, speaker: str) -> tuple[list, list]:
    own = [(ln["start"], ln["end"]) for ln in truth["lines"] if ln["speaker"] == speaker]
    others = [(ln["start"], ln["end"]) for ln in truth["lines"] if ln["speaker"] != speaker]
    return own, others


@pytest.mark.parametrize("speaker", ["Aiko", "Kenji"])
def test_references_are_the_speakers_own_clean_lines(truth: dict, speaker: str) -> None:
    spans = pick_references(CLIP, truth["lines"], speaker)
    own, others = _own_and_others(truth, speaker)
    assert spans == sorted(own)  # both of each speaker's lines are clean enough on the fixture
    for a, b in spans:
        assert any(s <= a < b <= e for s, e in own)
        assert not any(a < e and s < b for s, e in others)


def test_short_cast_is_flagged_not_failed(truth: dict, audio: np.ndarray) -> None:
    choice = select_references(audio, truth["lines"], "Aiko")
    assert not choice.enough and 4.0 < choice.seconds < 6.0  # two lines, 4.6 s: under the 6 s wanted
    assert "only 4.6 s" in choice.note
    assert all(c.snr_db > 15 for c in choice.candidates)  # speech is ~16 dB over the music pad
    assert select_references(audio, truth["lines"], "Aiko", min_total_s=4.0).enough
    assert select_references(audio, truth["lines"], "Nobody").note == "speaker 'Nobody' has no lines"


def test_overlap_with_another_speaker_is_cut_away(truth: dict, audio: np.ndarray) -> None:
    lines = [*truth["lines"], {"index": 99, "start": 2.3, "end": 3.2, "speaker": "Kenji"}]
    choice = select_references(audio, lines, "Aiko")
    first = next(c for c in choice.candidates if c.line == 0)
    assert (first.start, first.end) == (1.021, 2.3) and first.overlap_s == pytest.approx(0.9, abs=1e-3)
    assert all(not (a < 3.2 and 2.3 < b) for a, b in choice.spans)
    lines = [*truth["lines"], {"index": 99, "start": 1.0, "end": 3.0, "speaker": "Kenji"}]
    first = next(c for c in select_references(audio, lines, "Aiko").candidates if c.line == 0)
    assert first.rejected.startswith("too short after removing overlap")


def test_clipped_and_noisy_spans_are_rejected(truth: dict, audio: np.ndarray) -> None:
    clipped = np.clip(audio * 20.0, -1.0, 1.0)
    choice = select_references(clipped, truth["lines"], "Aiko")
    assert choice.spans == [] and all(c.rejected.startswith("clipped") for c in choice.candidates)
    rng = np.random.default_rng(0)
    noisy = audio.copy()
    a, b = int(7.0 * 16000), int(9.6 * 16000)
    noisy[a:b] += rng.normal(0, 0.2, b - a).astype(np.float32)  # line 2 drowned in noise
    choice = select_references(noisy, truth["lines"], "Aiko")
    by_line = {c.line: c for c in choice.candidates}
    assert by_line[2].rejected.startswith("noisy") and by_line[0].chosen
    assert choice.spans == [(1.021, 3.587)]


@pytest.mark.slow
def test_per_line_check_falls_back_to_the_low_mode_voice(tmp_path: Path, truth: dict, audio: np.ndarray) -> None:
    """The real check (Resemblyzer) around a real engine: Piper stands in for the cloning engine here."""
    from dubbing_assets.core.tts import PiperEngine

    piper = PiperEngine()
    reference = reference_embedding(audio, pick_references(audio, truth["lines"], "Aiko"))
    fallback = Voice("piper", piper.default_voice, pitch_semitones=4.0)
    voice = Voice("piper", piper.default_voice, settings={
        "reference_wav": "unused-by-piper.wav", "reference_embedding": reference,
        "fallback_voice": fallback.__dict__})
    strict = VerifiedCloneEngine(piper, piper, threshold=0.99, seeds=(0, 1))
    out = strict.synthesize("Lucky you. What did you get?", voice, tmp_path / "a.wav")
    assert out.path.is_file() and out.duration_s > 0.5
    outcome = strict.outcome("Lucky you. What did you get?", voice)
    assert outcome.engine == "piper" and outcome.seed is None
    assert outcome.fallback_reason.startswith("voice similarity") and "< 0.990 after 2 seeds" in outcome.fallback_reason
    assert [a["seed"] for a in outcome.attempts] == [0, 1]
    assert all(-1.0 <= a["similarity"] < 0.99 for a in outcome.attempts)
    # a re-render at another rate (the timing fit) reuses the decision without re-checking
    strict.synthesize("Lucky you. What did you get?", voice, tmp_path / "b.wav", rate=1.1)
    assert len(strict.outcome("Lucky you. What did you get?", voice).attempts) == 2
    report = strict.report()
    assert (report["lines"], report["cloned"], report["fallback"]) == (1, 0, 1)

    lenient = VerifiedCloneEngine(piper, piper, threshold=-1.0)
    lenient.synthesize("Lucky you.", voice, tmp_path / "c.wav")
    kept = lenient.outcome("Lucky you.", voice)
    assert kept.fallback_reason is None and kept.seed == 0 and kept.similarity is not None


def test_retry_with_another_seed_then_keep_it(tmp_path: Path) -> None:
    """Seed handling, with a deterministic similarity so the second seed passes."""
    from dubbing_assets.core.tts import SynthResult

    calls: list[int] = []

    class Cloner:
        name = "xtts"
        version = "test"

        def voices(self) -> list[str]:
            return ["xtts-v2"]

        def synthesize(self, text, voice, out_wav, *, rate=1.0):
            calls.append(voice.settings.get("seed"))
            Path(out_wav).write_bytes(b"RIFF")
            return SynthResult(Path(out_wav), 1.0, 24000)

    scores = {0: 0.2, 7: 0.8}
    engine = VerifiedCloneEngine(Cloner(), Cloner(), threshold=0.7, seeds=(0, 7, 9),
                                 similarity=lambda path, ref: scores[calls[-1]])
    voice = Voice("xtts", "xtts-v2", settings={"xtts_latents": {"x": 1}, "reference_embedding": [1.0]})
    engine.synthesize("Hi.", voice, tmp_path / "x.wav")
    engine.synthesize("Hi.", voice, tmp_path / "y.wav", rate=1.1)
    assert calls == [0, 7, 7]
    assert engine.outcome("Hi.", voice).seed == 7 and engine.report()["retried"] == 1
    # no conditioning at all: straight to the fallback voice, with the reason
    bare = Voice("xtts", "xtts-v2", settings={"fallback_voice": Voice("xtts", "xtts-v2").__dict__})
    engine.synthesize("Hi.", bare, tmp_path / "z.wav")
    assert engine.outcome("Hi.", bare).fallback_reason.startswith("no conditioning")
