"""QA: sync offsets, overflow, speed, round-trip intelligibility, loudness; Markdown and timeline plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubbing_assets.core.contracts import TranslatedLine
from dubbing_assets.core.mix import mix
from dubbing_assets.core.qa import build_report, detect_onset
from dubbing_assets.core.timing import FitResult

SR = 22050


def clip(path: Path, lead_s: float, speech_s: float) -> Path:
    t = np.arange(int(speech_s * SR)) / SR
    audio = np.concatenate([np.zeros(int(lead_s * SR)), 0.4 * np.sin(2 * np.pi * 150 * t)]).astype(np.float32)
    sf.write(path, audio, SR)
    return path


def lines() -> list[TranslatedLine]:
    return [
        TranslatedLine(0, 1.0, 3.0, "Aiko", "おはよう。", "Morning. You're pretty early today."),
        TranslatedLine(1, 4.0, 6.0, "Kenji", "うん。", "Yeah, I stopped by the bakery."),
        TranslatedLine(2, 6.5, 8.0, "Aiko", "いいな。", "Lucky you."),
    ]


def fits(tmp_path: Path, overflow: float = 0.0) -> list[FitResult]:
    return [
        FitResult(
            0,
            1.0,
            1.8,
            1.0,
            1.0,
            0.0,
            0.0,
            str(clip(tmp_path / "0.wav", 0.01, 1.79)),
            slot_end=3.0,
            limit=4.0,
        ),
        FitResult(
            1,
            4.0,
            2.3,
            1.15,
            1.1,
            0.3,
            0.0,
            str(clip(tmp_path / "1.wav", 0.05, 2.25)),
            slot_end=6.0,
            limit=6.5,
        ),
        FitResult(
            2,
            6.5,
            1.2 + overflow,
            1.0,
            1.0,
            0.0,
            overflow,
            str(clip(tmp_path / "2.wav", 0.0, 1.2 + overflow)),
            slot_end=8.0,
            limit=8.0,
        ),
    ]


def test_detect_onset() -> None:
    audio = np.concatenate([np.zeros(2205), 0.001 * np.ones(2205), 0.3 * np.ones(2205)])
    assert detect_onset(audio, SR) == pytest.approx(0.2, abs=0.006)
    assert detect_onset(np.zeros(1000), SR) is None


def test_report_passes_and_renders(tmp_path: Path) -> None:
    heard = {
        "0.wav": "Morning, you're pretty early today.",
        "1.wav": "Yeah, I stopped by the bakery.",
        "2.wav": "Lucky you.",
    }
    report = build_report(
        fits(tmp_path),
        lines(),
        transcribe=lambda p: heard[p.name],
        loudness={"integrated_lufs": -23.1, "true_peak_db": -2.0, "clipped_samples": 0},
    )
    assert report.passed, report.to_markdown()
    sync = {ln.index: ln.sync_offset_ms for ln in report.lines}
    assert sync[0] == pytest.approx(10, abs=6) and sync[1] == pytest.approx(50, abs=6) and abs(sync[2]) < 6
    assert [ln.wer for ln in report.lines] == [0.0, 0.0, 0.0]
    assert report.summary["max_speed"] == pytest.approx(1.265) and report.summary["borrowed_lines"] == 1
    md = report.to_markdown(plot_png="timeline.png")
    assert md.startswith("# Dub QA: PASSED") and "| sync | pass |" in md and "![timeline](timeline.png)" in md
    png = report.plot_timeline(tmp_path / "timeline.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert report.to_dict()["passed"] is True


def test_report_fails_on_overflow_loudness_peak_and_asr(tmp_path: Path) -> None:
    report = build_report(
        fits(tmp_path, overflow=0.4),
        lines(),
        transcribe=lambda p: "something else entirely",
        loudness={"integrated_lufs": -20.5, "true_peak_db": -0.5, "clipped_samples": 3},
    )
    failed = {c.name for c in report.checks if not c.passed}
    assert failed == {"overflow", "intelligibility", "loudness", "true_peak", "clipping"}
    assert not report.passed and "**FAIL**" in report.to_markdown()
    report.plot_timeline(tmp_path / "t.png")


def test_sync_measured_in_the_rendered_dub_stem(tmp_path: Path) -> None:
    f = fits(tmp_path)
    bg = tmp_path / "bg.wav"
    t = np.arange(10 * 48000) / 48000
    sf.write(bg, np.stack([0.02 * np.sin(2 * np.pi * 330 * t)] * 2, axis=1).astype(np.float32), 48000)
    result = mix(
        bg, [(x.start, Path(x.path)) for x in f], tmp_path / "mix.wav", speech_wav=tmp_path / "speech.wav"
    )
    report = build_report(f, lines(), loudness=result.to_dict(), dub_stem=result.speech_path)
    sync = {ln.index: ln.sync_offset_ms for ln in report.lines}
    assert sync[0] == pytest.approx(10, abs=6) and sync[1] == pytest.approx(50, abs=6) and abs(sync[2]) < 6
    assert report.passed


@pytest.mark.slow
def test_round_trip_intelligibility_with_real_asr(tmp_path: Path) -> None:
    from dubbing_assets.core.asr import Transcriber
    from dubbing_assets.core.audio_io import load_audio_mono16k
    from dubbing_assets.core.contracts import Voice
    from dubbing_assets.core.models import ModelRegistry
    from dubbing_assets.core.timing import fit_lines
    from dubbing_assets.core.tts import PiperEngine

    asr = Transcriber("whisper-tiny.en", registry=ModelRegistry(cache_dir=tmp_path / "models"), device="cpu")
    engine = PiperEngine()
    tl = lines()[:2]
    placed = fit_lines(
        tl,
        {
            "Aiko": Voice("piper", "en_US-joe-medium"),
            "Kenji": Voice("piper", "en_US-joe-medium", pitch_semitones=-4, length_scale=1.05),
        },
        engine,
        tmp_path / "clips",
        media_end=8.0,
    )
    report = build_report(placed, tl, transcribe=lambda p: asr.text(load_audio_mono16k(p), language="en"))
    print({ln.index: (ln.asr_text, ln.wer, ln.sync_offset_ms) for ln in report.lines})
    assert report.summary["mean_wer"] <= 0.35
    assert report.summary["max_abs_sync_ms"] < 50


CLEAN = {"integrated_lufs": -23.0, "true_peak_db": -2.0, "clipped_samples": 0}


def test_a_sub_millisecond_overflow_is_no_overflow(tmp_path: Path) -> None:
    """A clean episode whose last line overflows by 0.1 ms passes; 300 ms fails (issue 12)."""
    report = build_report(fits(tmp_path, overflow=0.0001), lines(), loudness=CLEAN)
    assert report.passed, report.to_markdown()
    overflow = next(c for c in report.checks if c.name == "overflow")
    assert overflow.limit == pytest.approx(0.020) and "1 within the tolerance" in overflow.message
    assert report.summary["overflow_lines"] == 0
    report = build_report(fits(tmp_path, overflow=0.3), lines(), loudness=CLEAN)
    assert {c.name for c in report.checks if not c.passed} == {"overflow"}
    assert report.summary["overflow_lines"] == 1


def test_overflow_tolerance_comes_from_the_settings(tmp_path: Path) -> None:
    from dubbing_assets.core.settings import load_settings
    from dubbing_assets.errors import ConfigError

    assert load_settings({"DUBBING_HOME": str(tmp_path)}).qa_overflow_tolerance_ms == 20.0
    strict = load_settings({"DUBBING_HOME": str(tmp_path), "DUBBING_QA_OVERFLOW_TOLERANCE_MS": "0"})
    report = build_report(fits(tmp_path, overflow=0.0001), lines(), loudness=CLEAN,
                          thresholds={"overflow_tolerance_s": strict.qa_overflow_tolerance_ms / 1000})
    assert {c.name for c in report.checks if not c.passed} == {"overflow"}
    with pytest.raises(ConfigError, match="DUBBING_QA_OVERFLOW_TOLERANCE_MS"):
        load_settings({"DUBBING_HOME": str(tmp_path), "DUBBING_QA_OVERFLOW_TOLERANCE_MS": "-5"})


def _late_fits(tmp_path: Path, leads: list[float]) -> list[FitResult]:
    starts = [(1.0, 3.0), (4.0, 6.0), (6.5, 8.0)]
    return [FitResult(i, start, 1.2, 1.0, 1.0, 0.0, 0.0, str(clip(tmp_path / f"late{i}.wav", lead, 1.2 - lead)),
                      slot_end=end, limit=end)
            for i, ((start, end), lead) in enumerate(zip(starts, leads, strict=True))]


def test_sync_fails_on_a_median_bias_even_when_every_line_is_within_the_limit(tmp_path: Path) -> None:
    late = build_report(_late_fits(tmp_path, [0.060, 0.070, 0.065]), lines(), loudness=CLEAN)
    sync = next(c for c in late.checks if c.name == "sync")
    assert late.summary["max_abs_sync_ms"] < 120 and late.summary["median_sync_ms"] == pytest.approx(65, abs=6)
    assert not sync.passed and "signed median +6" in sync.message
    early_and_late = build_report(_late_fits(tmp_path, [0.0, 0.10, 0.0]), lines(), loudness=CLEAN)
    assert early_and_late.summary["median_sync_ms"] == pytest.approx(0, abs=6)
    assert early_and_late.passed, early_and_late.to_markdown()


def test_every_limit_is_in_the_report_with_its_meaning(tmp_path: Path) -> None:
    from dubbing_assets.core.qa import LIMIT_MEANINGS, THRESHOLDS

    assert set(LIMIT_MEANINGS) == set(THRESHOLDS)
    md = build_report(fits(tmp_path), lines(), loudness=CLEAN).to_markdown()
    limits = md.split("## Limits", 1)[1].split("\n## ", 1)[0]
    for name, meaning in LIMIT_MEANINGS.items():
        assert f"| {name} | {THRESHOLDS[name]:.4g} | {meaning} |" in limits


def test_isochrony_figures_in_every_report(tmp_path: Path) -> None:
    """Issue 17 item 3: speech overlap (IoU of source and dub speech, per line and over the episode), the
    speaking-time ratio and the distribution of speed-ups, in the summary and the report."""
    report = build_report(fits(tmp_path), lines(), loudness={"integrated_lufs": -23.0, "true_peak_db": -2.0,
                                                            "clipped_samples": 0})
    s = report.summary
    # by hand: source [1,3] [4,6] [6.5,8]; dub from each audible onset: [1.01,2.8] [4.05,6.3] [6.5,7.7]
    assert s["speech_overlap"] == pytest.approx(4.94 / 5.8, abs=0.01)
    assert s["median_line_overlap"] == pytest.approx(0.8478, abs=0.01)
    assert s["speaking_time_ratio"] == pytest.approx(5.24 / 5.5, abs=0.01)
    assert s["sped_up_lines"] == 1 and s["sped_up_share"] == pytest.approx(1 / 3, abs=1e-3)
    assert s["median_speed"] == pytest.approx(1.0) and s["p90_speed"] == pytest.approx(1.212, abs=1e-3)
    md = report.to_markdown()
    assert "## Isochrony" in md and "| speech_overlap | 0.85" in md and "human dubs average about 0.66" in md


def test_isochrony_of_a_dub_that_speaks_late_and_long() -> None:
    from dubbing_assets.core.qa import LineQA, isochrony

    line = LineQA(0, "A", 0.0, 1.0, 0.5, 2.5, 0.5, 500.0, 1.0, 1.0, 1.0, 0.0, 0.0, "x")
    iso = isochrony([line])
    assert iso["speech_overlap"] == pytest.approx(0.5 / 2.5) and iso["speaking_time_ratio"] == pytest.approx(2.0)
    assert isochrony([])["speech_overlap"] is None


def test_vad_isochrony_sees_a_late_dub_and_lost_pauses() -> None:
    """On the English fixture's real speech: the same audio scores 1; the same speech half a second late
    overlaps less but pauses alike; the speech with every pause cut out keeps no pause at all."""
    from dubbing_assets.core.audio_io import load_audio_mono16k
    from dubbing_assets.core.qa import vad_isochrony
    from dubbing_assets.core.stems import vad_segments
    from dubbing_assets_tests.core.understand_helpers import EN

    audio = load_audio_mono16k(EN)
    same = vad_isochrony(audio, audio)
    assert same["vad_speech_overlap"] == 1.0 and same["pause_count_agreement"] == 1.0
    assert same["source_pauses"] >= 2
    late = vad_isochrony(audio, np.concatenate([np.zeros(8000, dtype=np.float32), audio]))
    assert late["vad_speech_overlap"] < 0.9 and late["pause_count_agreement"] == 1.0
    speech = np.concatenate([audio[int(a * 16000):int(b * 16000)] for a, b in vad_segments(audio, min_silence_s=0.3)])
    joined = vad_isochrony(audio, speech)
    assert joined["dub_pauses"] < same["source_pauses"] and joined["pause_count_agreement"] < 0.75
