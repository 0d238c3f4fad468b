"""Voice range (core/voicerange.py): the median F0 of a speaker's lines and the casting hint taken from it.

Casting and the voice bank trust `median_f0` to find the pitch of voiced audio inside the given spans only,
to ignore pauses and noise between words, to be a median (one high line does not drag a low voice into the
no-hint band) and to say None rather than guess when nothing usable is there; `range_hint` maps that pitch onto
the 'female'/'male' vocabulary `tts.assign_voice` takes. The inputs are synthetic harmonic tones of known F0.
"""

from __future__ import annotations

import numpy as np
import pytest

from dubbing_assets.core.voicerange import HIGH_HZ, LOW_HZ, SAMPLE_RATE, median_f0, range_hint

SR = SAMPLE_RATE


def voice(f0: float, seconds: float, amp: float = 0.3) -> np.ndarray:
    """A voiced-sounding tone: F0 and three weaker harmonics (so YIN must not pick an octave up)."""
    t = np.arange(int(seconds * SR)) / SR
    partials = sum(a * np.sin(2 * np.pi * k * f0 * t) for k, a in ((1, 1.0), (2, 0.5), (3, 0.3), (4, 0.2)))
    return (amp * partials / 2).astype(np.float32)


def noise(seconds: float, level: float, seed: int = 0) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.mark.parametrize("f0", [90.0, 125.0, 155.0, 210.0, 300.0])
def test_the_median_f0_of_a_steady_voice_is_its_pitch(f0: float) -> None:
    assert median_f0(voice(f0, 1.0), [(0.0, 1.0)]) == pytest.approx(f0, abs=2.0)


def test_only_the_given_spans_are_measured() -> None:
    audio = np.concatenate([voice(110, 1.0), voice(230, 1.0), voice(110, 1.0)])
    assert median_f0(audio, [(1.0, 2.0)]) == pytest.approx(230, abs=2.0)
    assert median_f0(audio, [(0.0, 1.0), (2.0, 3.0)]) == pytest.approx(110, abs=2.0)


def test_it_is_a_median_not_a_mean() -> None:
    """3 s at 120 Hz and 1 s at 240 Hz: the mean (150 Hz) would fall in the no-hint band; the voice is low."""
    audio = np.concatenate([voice(120, 3.0), voice(240, 1.0)])
    f0 = median_f0(audio, [(0.0, 3.0), (3.0, 4.0)])
    assert f0 == pytest.approx(120, abs=2.0)
    assert range_hint(f0) == "male"


def test_quiet_frames_inside_a_span_do_not_count() -> None:
    """1 s at 120 Hz, 1.4 s of faint noise (YIN reads it as ~70 Hz), 1.6 s at 240 Hz, in one span. Counting
    the noise frames would put the median on 120 Hz; among the voiced frames most are at 240 Hz."""
    audio = np.concatenate([voice(120, 1.0), noise(1.4, 1e-3), voice(240, 1.6)])
    assert median_f0(audio, [(0.0, 4.0)]) == pytest.approx(240, abs=2.0)


def test_max_seconds_stops_after_enough_audio() -> None:
    audio = np.concatenate([voice(220, 1.0), voice(110, 2.0)])
    spans = [(0.0, 1.0), (1.0, 3.0)]
    assert median_f0(audio, spans) == pytest.approx(110, abs=2.0)  # 2 s of the 3 are at 110 Hz
    assert median_f0(audio, spans, max_seconds=1.0) == pytest.approx(220, abs=2.0)  # the first second only


@pytest.mark.parametrize("audio", [np.zeros(2 * SR, dtype=np.float32), noise(2.0, 1e-5)],
                         ids=["digital silence", "below the noise floor"])
def test_nothing_voiced_is_none(audio: np.ndarray) -> None:
    assert median_f0(audio, [(0.0, 2.0)]) is None


@pytest.mark.parametrize("spans", [[], [(0.0, 0.09)], [(0.5, 0.55), (0.7, 0.75)], [(0.8, 0.2)], [(2.0, 3.0)]],
                         ids=["no spans", "too short", "all too short", "reversed", "past the end"])
def test_no_usable_span_is_none(spans: list[tuple[float, float]]) -> None:
    assert median_f0(voice(200, 1.0), spans) is None


def test_empty_audio_is_none() -> None:
    assert median_f0(np.zeros(0, dtype=np.float32), [(0.0, 1.0)]) is None


def test_spans_are_clipped_to_the_audio_and_short_ones_skipped() -> None:
    audio = np.concatenate([voice(110, 1.0), voice(230, 1.0)])
    assert median_f0(audio, [(-1.0, 0.5)]) == pytest.approx(110, abs=2.0)
    assert median_f0(audio, [(1.5, 9.0)]) == pytest.approx(230, abs=2.0)
    # a 50 ms span at 230 Hz is too short to measure and is skipped: only the 110 Hz span counts
    assert median_f0(audio, [(1.2, 1.25), (0.0, 0.4)]) == pytest.approx(110, abs=2.0)


def test_float64_audio_is_accepted() -> None:
    assert median_f0(voice(200, 1.0).astype(np.float64), [(0.0, 1.0)]) == pytest.approx(200, abs=2.0)


@pytest.mark.parametrize(("f0", "hint"), [
    (None, None), (80.0, "male"), (LOW_HZ, "male"), (LOW_HZ + 0.1, None), (155.0, None),
    (HIGH_HZ - 0.1, None), (HIGH_HZ, "female"), (260.0, "female"),
])
def test_range_hint_bands(f0: float | None, hint: str | None) -> None:
    assert range_hint(f0) == hint


def test_the_hint_follows_the_measured_pitch() -> None:
    assert range_hint(median_f0(voice(220, 1.0), [(0.0, 1.0)])) == "female"
    assert range_hint(median_f0(voice(105, 1.0), [(0.0, 1.0)])) == "male"
    assert range_hint(median_f0(voice(155, 1.0), [(0.0, 1.0)])) is None
    assert range_hint(median_f0(np.zeros(SR, dtype=np.float32), [(0.0, 1.0)])) is None
    assert LOW_HZ < HIGH_HZ  # a band between them, so no pitch gets both hints
