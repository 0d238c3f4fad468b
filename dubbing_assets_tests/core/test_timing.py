"""Timing fit: each branch (fits, rate, stretch, borrow, overflow) and the per-line cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubbing_assets.core.contracts import TranslatedLine, Voice
from dubbing_assets.core.timing import (
    FitResult,
    LineCache,
    fit_line,
    fit_lines,
    line_key,
    line_slots,
    trim_silence,
)
from dubbing_assets.core.tts import SynthResult

SR = 22050


class FakeEngine:
    """Speaks `seconds_per_char` per character (divided by rate), with 0.2 s silence at both ends."""

    name = "fake"
    version = "1"

    def __init__(self, seconds_per_char: float = 0.05) -> None:
        self.seconds_per_char = seconds_per_char
        self.calls: list[tuple[str, float]] = []

    def voices(self) -> list[str]:
        return ["fake"]

    def synthesize(self, text: str, voice: Voice, out_wav: Path, *, rate: float = 1.0) -> SynthResult:
        self.calls.append((text, rate))
        speech = len(text) * self.seconds_per_char * voice.length_scale / rate
        t = np.arange(int(speech * SR)) / SR
        tone = 0.5 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        pad = np.zeros(int(0.2 * SR))
        audio = np.concatenate([pad, tone, pad]).astype(np.float32)
        sf.write(out_wav, audio, SR)
        return SynthResult(Path(out_wav), len(audio) / SR, SR)


def synth_for(natural_s: float, calls: list[float] | None = None):
    """A synthesizer whose line lasts `natural_s` at rate 1 (plus silent edges)."""

    def synthesize(rate: float, out_wav: Path) -> SynthResult:
        if calls is not None:
            calls.append(rate)
        speech = natural_s / rate
        audio = np.concatenate(
            [
                np.zeros(int(0.15 * SR)),
                0.5 * np.sin(2 * np.pi * 200 * np.arange(int(speech * SR)) / SR),
                np.zeros(int(0.3 * SR)),
            ]
        ).astype(np.float32)
        sf.write(out_wav, audio, SR)
        return SynthResult(Path(out_wav), len(audio) / SR, SR)

    return synthesize


def _file_seconds(path: str) -> float:
    info = sf.info(path)
    return info.frames / info.samplerate


def test_line_fits_as_it_is(tmp_path: Path) -> None:
    calls: list[float] = []
    fit = fit_line(0, 1.0, 3.0, 3.5, synth_for(1.5, calls), tmp_path / "l0.wav")
    assert calls == [1.0]
    assert (fit.rate, fit.stretch, fit.borrowed_s, fit.overflow_s) == (1.0, 1.0, 0.0, 0.0)
    assert fit.start + fit.lead_s == pytest.approx(1.0)  # the onset on the source start, the lead before it
    assert fit.lead_s == pytest.approx(0.01, abs=1e-4)
    assert fit.duration == pytest.approx(1.5 + 0.02, abs=0.01)  # trimmed to speech + 10 ms edges
    assert _file_seconds(fit.path) == pytest.approx(fit.duration, abs=1e-3)


def test_too_long_line_speaks_faster_first(tmp_path: Path) -> None:
    calls: list[float] = []
    fit = fit_line(1, 0.0, 2.0, 2.6, synth_for(2.2, calls), tmp_path / "l1.wav")
    assert 1.0 < fit.rate <= 1.15 and fit.stretch == 1.0
    assert fit.duration <= 2.0 + 1e-3 and fit.borrowed_s == 0.0 and fit.overflow_s == 0.0
    assert calls[0] == 1.0 and calls[1] == fit.rate


def test_then_time_stretch_with_pitch_kept(tmp_path: Path) -> None:
    fit = fit_line(2, 0.0, 2.0, 2.1, synth_for(2.6, None), tmp_path / "l2.wav")
    assert fit.rate == pytest.approx(1.15)
    assert 1.0 < fit.stretch <= 1.25
    assert fit.duration == pytest.approx(2.0, abs=0.03)
    assert fit.overflow_s == 0.0
    # pitch kept: the 200 Hz tone is still 200 Hz after the stretch
    audio, sr = sf.read(fit.path)
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.fft.rfftfreq(len(audio), 1 / sr)[int(np.argmax(spectrum))] == pytest.approx(200, abs=3)


def test_then_borrow_the_silence_after_the_slot(tmp_path: Path) -> None:
    fit = fit_line(3, 5.0, 7.0, 8.0, synth_for(3.0, None), tmp_path / "l3.wav")
    assert fit.rate == pytest.approx(1.15) and fit.stretch == pytest.approx(1.25)
    expected = (3.0 + 0.02) / 1.15 / 1.25
    assert fit.duration == pytest.approx(expected, abs=0.03)
    assert fit.borrowed_s == pytest.approx(fit.duration - fit.lead_s - 2.0, abs=1e-3) and fit.borrowed_s > 0
    assert fit.overflow_s == 0.0
    assert fit.end <= 8.0


def test_only_then_overflow_is_recorded_and_nothing_is_cut(tmp_path: Path) -> None:
    fit = fit_line(4, 0.0, 2.0, 2.5, synth_for(4.0, None), tmp_path / "l4.wav")
    assert fit.rate == pytest.approx(1.15) and fit.stretch == pytest.approx(1.25)
    assert fit.borrowed_s == pytest.approx(0.5)
    assert fit.overflow_s == pytest.approx(fit.duration - 2.5, abs=1e-3) and fit.overflow_s > 0.2
    assert _file_seconds(fit.path) == pytest.approx(fit.duration, abs=1e-3)  # the whole line is kept
    assert FitResult.from_dict(fit.to_dict()) == fit


def _fixed_length(samples: int):
    """A synthesizer that ignores the rate: `samples` of steady tone, no silent edges."""

    def synthesize(rate: float, out_wav: Path) -> SynthResult:
        t = np.arange(samples) / SR
        sf.write(out_wav, (0.4 * np.sin(2 * np.pi * 190 * t)).astype(np.float32), SR)
        return SynthResult(Path(out_wav), samples / SR, SR)

    return synthesize


@pytest.mark.parametrize(
    ("samples", "slot"),
    [(81665, 3.0), (81700, 3.0), (27221, 1.1), (40401, 1.7), (2 * SR + 10, 2.0)],
)
def test_the_fit_rounds_once_so_no_sub_millisecond_overflow(tmp_path: Path, samples: int, slot: float) -> None:
    """Stretch to the slot's length in samples; a rounded stretch factor used to leave ~0.1 ms over."""
    fit = fit_line(0, 10.0, 10.0 + slot, 10.0 + slot, _fixed_length(samples), tmp_path / "l.wav")
    assert fit.stretch > 1.0
    assert fit.overflow_s == 0.0 and fit.borrowed_s == 0.0
    lead = round(fit.lead_s * SR)
    assert sf.info(fit.path).frames - lead <= int(slot * SR)  # from its onset, the clip fits its room
    assert fit.end <= 10.0 + slot + 1e-9


def test_trim_never_cuts_speech() -> None:
    audio = np.concatenate(
        [np.zeros(1000), 0.001 * np.ones(10), np.zeros(500), 0.5 * np.ones(2000), np.zeros(3000)]
    ).astype(np.float32)
    trimmed = trim_silence(audio, SR)
    assert np.count_nonzero(np.abs(trimmed) >= 0.01) == 2000


def test_line_slots_use_next_start_and_media_end() -> None:
    slots = line_slots([(1.0, 3.5), (4.1, 6.4), (7.2, 9.3)], media_end=13.7)
    assert slots == [(1.0, 3.5, 4.1), (4.1, 6.4, 7.2), (7.2, 9.3, 13.7)]
    # overlapping source lines: the slot never reaches past the next start
    assert line_slots([(0.0, 3.0), (2.0, 4.0)], 5.0)[0] == (0.0, 2.0, 2.0)


def _lines() -> list[TranslatedLine]:
    texts = ["Morning.", "Yeah, I stopped by.", "Lucky you.", "Two melon buns."]
    return [
        TranslatedLine(
            index=i,
            start=3.0 * i + 0.5,
            end=3.0 * i + 2.5,
            speaker="A" if i % 2 == 0 else "B",
            source_text="",
            text=t,
        )
        for i, t in enumerate(texts)
    ]


def test_cache_hits_misses_and_one_edited_line(tmp_path: Path) -> None:
    engine = FakeEngine()
    voices = {"A": Voice("fake", "fake"), "B": Voice("fake", "fake", pitch_semitones=-4, length_scale=1.05)}
    cache = LineCache(tmp_path / "cache")
    lines = _lines()
    first = fit_lines(lines, voices, engine, tmp_path / "out1", media_end=12.5, cache=cache)
    assert len(first) == 4 and cache.misses == 4 and cache.hits == 0 and len(engine.calls) == 4
    second = fit_lines(lines, voices, engine, tmp_path / "out2", media_end=12.5, cache=cache)
    assert cache.misses == 4 and cache.hits == 4 and len(engine.calls) == 4
    assert all(f.cache_hits == 1 for f in second)

    keys_before = [line_key(ln.text, voices[ln.speaker], engine.name, engine.version, 1.0) for ln in lines]
    lines[2].text = "Lucky you! What did you get?"
    keys_after = [line_key(ln.text, voices[ln.speaker], engine.name, engine.version, 1.0) for ln in lines]
    assert [a != b for a, b in zip(keys_before, keys_after, strict=True)] == [False, False, True, False]
    fit_lines(lines, voices, engine, tmp_path / "out3", media_end=12.5, cache=cache)
    assert cache.misses == 5 and cache.hits == 7
    assert engine.calls[-1] == ("Lucky you! What did you get?", 1.0)
    assert cache.stats == {"hits": 7, "misses": 5, "repaired": 0}


def test_a_damaged_cached_line_is_synthesized_again(tmp_path: Path) -> None:
    """A cache entry cut short (a torn copy, a full disk under an older release) is not a WAV any more: the
    line is made again rather than failing the dub step, and the entry replaced."""
    engine = FakeEngine()
    voices = {"A": Voice("fake", "fake"), "B": Voice("fake", "fake", pitch_semitones=-4, length_scale=1.05)}
    cache = LineCache(tmp_path / "cache")
    lines = _lines()
    fit_lines(lines, voices, engine, tmp_path / "out1", media_end=12.5, cache=cache)
    entry = cache.path_for(cache.keys_used[1])
    entry.write_bytes(entry.read_bytes()[:30])
    again = LineCache(tmp_path / "cache")
    fits = fit_lines(lines, voices, engine, tmp_path / "out2", media_end=12.5, cache=again)
    assert len(fits) == 4 and again.stats == {"hits": 3, "misses": 1, "repaired": 1}
    assert len(engine.calls) == 5 and entry.stat().st_size > 1000


def test_cache_key_covers_voice_engine_version_and_rate() -> None:
    voice = Voice("piper", "x")
    base = line_key("Hi.", voice, "piper", "1", 1.0)
    assert base == line_key("Hi.", Voice("piper", "x"), "piper", "1", 1.0004)
    assert base != line_key("Hi.", Voice("piper", "x", pitch_semitones=2), "piper", "1", 1.0)
    assert base != line_key(
        "Hi.", Voice("piper", "x", settings={"reference_wav": "a.wav"}), "piper", "1", 1.0
    )
    assert base != line_key("Hi.", voice, "espeak", "1", 1.0)
    assert base != line_key("Hi.", voice, "piper", "2", 1.0)
    assert base != line_key("Hi.", voice, "piper", "1", 1.1)


def test_piper_line_fitted_into_a_tight_slot(tmp_path: Path) -> None:
    from dubbing_assets.core.tts import PiperEngine

    engine = PiperEngine()
    line = TranslatedLine(
        index=0,
        start=1.0,
        end=2.2,
        speaker="A",
        source_text="",
        text="Yeah, I stopped by the bakery in front of the station.",
    )
    cache = LineCache(tmp_path / "cache")
    fits = fit_lines(
        [line],
        {"A": Voice("piper", "en_US-joe-medium")},
        engine,
        tmp_path / "out",
        media_end=3.0,
        cache=cache,
    )
    fit = fits[0]
    assert fit.rate == pytest.approx(1.15) and fit.stretch == pytest.approx(1.25)
    assert fit.borrowed_s == pytest.approx(0.8, abs=1e-3) and fit.overflow_s > 0
    assert fit.natural_duration / (fit.rate * fit.stretch) > 1.9  # nothing was cut


def test_placed_onset_lands_on_the_source_start(tmp_path: Path) -> None:
    """A clip with a soft 80 ms lead-in (above -40 dBFS, 30 dB under the speech): its onset goes on the start."""
    lead_in = 0.012 * np.sin(2 * np.pi * 150 * np.arange(int(0.08 * SR)) / SR)  # about -41 dBFS RMS, peaks -38
    t = np.arange(int(1.2 * SR)) / SR
    speech = 0.35 * np.sin(2 * np.pi * 210 * t) * (0.7 + 0.3 * np.sin(2 * np.pi * 4 * t))

    def synthesize(rate: float, out_wav: Path) -> SynthResult:
        audio = np.concatenate([np.zeros(int(0.2 * SR)), lead_in, speech, np.zeros(int(0.2 * SR))])
        sf.write(out_wav, audio.astype(np.float32), SR)
        return SynthResult(Path(out_wav), audio.size / SR, SR)

    fit = fit_line(0, 2.0, 3.5, 4.0, synthesize, tmp_path / "l.wav")
    placed, sr = sf.read(fit.path)
    rms = float(np.sqrt(np.mean(np.square(speech))))
    onset = fit.start + int(np.flatnonzero(np.abs(placed) >= rms * 0.1)[0]) / sr  # the fixtures' -20 dB rule
    assert onset == pytest.approx(2.0, abs=1e-3)
    assert fit.start < 2.0 and fit.start + fit.lead_s == pytest.approx(2.0, abs=1e-6)
