"""Mixing: dubbed lines over the background, ducked, loudness-normalised, peak-limited.

`mix()` keeps the source's sample rate and channel layout. The dub goes to
the centre channel of a 5.1 mix (FC), to both channels of a stereo mix
(centre-panned, identical in L and R) and to the one channel of a mono mix.
While a line plays, the background is ducked by `duck_db` with smooth ramps.
The result is normalised to `target_lufs` (BS.1770-4 integrated loudness,
with pyloudnorm's K-weighting filters and gating) and limited so that the
true peak (4x oversampled) stays at or under `true_peak_db`.

A full episode in 5.1 is gigabytes as float samples, so nothing here holds
the whole mix in memory: the background is read from its WAV file in blocks
of a few seconds, every block is rendered with enough context on both sides
that the look-ahead limiter and the oversampled peak meter give exactly the
result they would give on the whole signal, and loudness is measured by a
streaming meter (`loudness.LoudnessMeter`). Only the dub clips (mono) are in memory.
Reading and writing audio is `audio_io`'s job, measuring it `loudness`'s.

Channel order is the WAV/ffmpeg order: 5.1 = FL FR FC LFE BL BR (or SL SR).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.audio_io import LAYOUTS, as_wav, layout_for, read_audio, resample, wav_writer
from dubbing_assets.core.loudness import OS_MARGIN, LoudnessMeter, true_peak_envelope
from dubbing_assets.errors import MediaError

#: Seconds of audio per processing block.
BLOCK_S = 5.0
#: Dialogue level (dBFS RMS over the speaking parts) before the whole mix is normalised.
DIALOGUE_DBFS = -20.0


@dataclass
class MixResult:
    path: str
    sample_rate: int
    channels: int
    layout: str
    duration_s: float
    integrated_lufs: float
    true_peak_db: float
    clipped_samples: int
    gain_db: float
    limiter_gain_reduction_db: float
    speech_path: str | None = None
    passes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# building blocks

_CONTROL_RATE = 1000


def _duck_control(
    seconds: float, spans: Sequence[tuple[float, float]], duck_db: float, ramp_s: float
) -> np.ndarray:
    """Background gain in dB at 1 kHz: `duck_db` under the spans, linear ramps of `ramp_s` into them."""
    n_ctrl = int(math.ceil(seconds * _CONTROL_RATE)) + 2
    ramp = max(1, int(round(ramp_s * _CONTROL_RATE)))
    active = np.zeros(n_ctrl, dtype=np.float64)
    for start, end in spans:
        a = max(0, int(math.floor(start * _CONTROL_RATE)) - ramp // 2)
        b = min(n_ctrl, int(math.ceil(end * _CONTROL_RATE)) + ramp // 2)
        if b > a:
            active[a:b] = 1.0
    # a boxcar of width `ramp` over the dilated mask gives linear ramps that are complete at the span edges
    smooth = np.convolve(active, np.ones(ramp) / ramp, mode="same")
    return duck_db * np.clip(smooth, 0.0, 1.0)


def _duck_gain(control_db: np.ndarray, a: int, b: int, sample_rate: int) -> np.ndarray:
    t = np.arange(a, b) / sample_rate
    t_ctrl = np.arange(control_db.size) / _CONTROL_RATE
    return (10 ** (np.interp(t, t_ctrl, control_db) / 20)).astype(np.float32)


def duck_envelope(
    n_samples: int,
    sample_rate: int,
    spans: Sequence[tuple[float, float]],
    *,
    duck_db: float = -10.0,
    ramp_s: float = 0.1,
) -> np.ndarray:
    """Gain (linear) for the background: `duck_db` under each span, linear-in-dB ramps of `ramp_s`.

    The ramp down ends when speech starts and the ramp up starts when it ends.
    """
    if n_samples == 0:
        return np.ones(0, dtype=np.float32)
    control = _duck_control(n_samples / sample_rate, spans, duck_db, ramp_s)
    return _duck_gain(control, 0, n_samples, sample_rate)


def _limiter_window(sample_rate: int, lookahead_s: float = 0.005, release_s: float = 0.05) -> int:
    return max(3, int((lookahead_s + release_s) * sample_rate) | 1)


def _limiter_gain(envelope: np.ndarray, ceiling: float, window: int) -> np.ndarray:
    """Gain that keeps `envelope * gain` <= `ceiling`: min-filtered, then averaged over `window`.

    Wherever a peak is, the averaged gain is at or below the gain it needs
    (the average runs over values that are each a minimum over a window
    containing that peak); elsewhere the gain changes smoothly.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    need = np.minimum(1.0, ceiling / np.maximum(envelope.astype(np.float64), 1e-12))
    if float(need.min()) >= 1.0:
        return np.ones_like(need)
    gain = uniform_filter1d(minimum_filter1d(need, size=window, mode="nearest"), size=window, mode="nearest")
    return np.minimum(gain, need)


def _dub_channels(names: Sequence[str]) -> list[int]:
    if "FC" in names:
        return [names.index("FC")]
    return [i for i, n in enumerate(names) if n != "LFE"]


class _Timeline:
    """Renders any sample range of the (unnormalised) mix: background x ducking + dub clips."""

    def __init__(
        self,
        background: Any | None,
        bg_frames: int,
        bg_channels: int,
        channels: int,
        sample_rate: int,
        clips: list[tuple[int, np.ndarray]],
        total: int,
        duck_db: float,
        ramp_s: float,
        dub_cols: list[int],
    ) -> None:
        self.background, self.bg_frames, self.bg_channels = background, bg_frames, bg_channels
        self.channels, self.rate, self.total = channels, sample_rate, total
        self.clips = sorted(clips, key=lambda c: c[0])
        spans = [(o / sample_rate, (o + c.size) / sample_rate) for o, c in self.clips]
        self.control = _duck_control(total / sample_rate, spans, duck_db, ramp_s)
        self.dub_cols = dub_cols
        self.speech_gain = 1.0

    def speech(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Dub (mono, times speech_gain) for [a, b) and the mask of samples inside a clip."""
        out = np.zeros(b - a, dtype=np.float32)
        mask = np.zeros(b - a, dtype=bool)
        for offset, clip in self.clips:
            if offset >= b:
                break
            lo, hi = max(a, offset), min(b, offset + clip.size)
            if hi > lo:
                out[lo - a : hi - a] += clip[lo - offset : hi - offset]
                mask[lo - a : hi - a] = True
        return out * np.float32(self.speech_gain), mask

    def render(self, a: int, b: int) -> np.ndarray:
        """The mix before normalisation for [a, b); zeros outside [0, total)."""
        out = np.zeros((b - a, self.channels), dtype=np.float32)
        lo, hi = max(0, a), min(self.total, b)
        if hi <= lo:
            return out
        if self.background is not None and lo < self.bg_frames:
            end = min(hi, self.bg_frames)
            self.background.seek(lo)
            bg = self.background.read(end - lo, dtype="float32", always_2d=True)
            if self.bg_channels == 1 and self.channels > 1:
                bg = np.repeat(bg, self.channels, axis=1)
            out[lo - a : lo - a + bg.shape[0]] = bg[:, : self.channels]
        out[lo - a : hi - a] *= _duck_gain(self.control, lo, hi, self.rate)[:, None]
        speech, _mask = self.speech(lo, hi)
        for col in self.dub_cols:
            out[lo - a : hi - a, col] += speech
        return out


# --------------------------------------------------------------------------------------------
# the mix


def mix(
    background_wav: Path | str | None,
    clips: Sequence[tuple[float, Path | str]],
    out_wav: Path | str,
    *,
    sample_rate: int | None = None,
    channels: int | None = None,
    layout: str | None = None,
    duration_s: float | None = None,
    target_lufs: float = -23.0,
    true_peak_db: float = -1.0,
    duck_db: float = -10.0,
    ramp_s: float = 0.1,
    dub_gain_db: float = 0.0,
    speech_wav: Path | str | None = None,
) -> MixResult:
    """Place `clips` (start seconds, mono WAV) over the background and write a normalised mix.

    `background_wav` is the background stem (music and effects) or the
    original audio, any length; None means silence (then give `sample_rate`,
    `channels` and `duration_s`). Rate, channel count and layout default to
    the background's (a background at another rate than `sample_rate` is
    resampled by ffmpeg). Before normalisation the dialogue is levelled to
    -20 dBFS RMS over its speaking parts (`dub_gain_db` adjusts it), the usual
    dialogue-to-background balance. A line running past the end extends the
    mix: speech is never cut. `speech_wav`, when given, receives the placed dub
    alone at the gain it has in the mix (for QA). Output: 24-bit PCM WAV,
    written atomically.
    """
    out_wav = Path(out_wav)
    with _background(background_wav, sample_rate) as bg:
        if bg is not None:
            sample_rate = int(sample_rate or bg.samplerate)
            bg_frames, bg_channels = int(bg.frames), int(bg.channels)
            if channels is not None and channels != bg_channels and bg_channels != 1:
                raise MediaError(
                    f"Background has {bg_channels} channels, the mix wants {channels}; "
                    "extract the background with the source's channel layout."
                )
            channels = int(channels or bg_channels)
        else:
            if not (sample_rate and channels and duration_s):
                raise ValueError("Without a background, give sample_rate, channels and duration_s.")
            bg_frames, bg_channels = 0, int(channels)
        layout = layout_for(channels, layout)
        names = LAYOUTS[layout]

        loaded, total = _load_clips(clips, sample_rate, bg_frames)
        if duration_s is not None:
            total = max(total, int(round(duration_s * sample_rate)))
        timeline = _Timeline(bg, bg_frames, bg_channels, channels, sample_rate, loaded, total, duck_db, ramp_s,
                             _dub_channels(names))
        block = int(BLOCK_S * sample_rate)
        _level_dialogue(timeline, total, block, dub_gain_db)
        meter = LoudnessMeter(sample_rate, names)
        for a in range(0, total, block):
            meter.add(timeline.render(a, min(total, a + block)))
        loudness = meter.integrated()
        if not math.isfinite(loudness):
            raise MediaError("The mix is silent; there is nothing to normalise (no speech and no background).")
        written = _write_normalised(timeline, out_wav, names, total, block, gain_db=target_lufs - loudness,
                                    target_lufs=target_lufs, true_peak_db=true_peak_db)
        speech_path = None
        if speech_wav is not None:
            speech_path = str(speech_wav)
            _write_speech(timeline, Path(speech_wav), total, block, written.gain)
    return MixResult(
        path=str(out_wav),
        sample_rate=int(sample_rate),
        channels=int(channels),
        layout=layout,
        duration_s=round(total / sample_rate, 4),
        integrated_lufs=round(written.lufs, 2),
        true_peak_db=round(written.peak_db, 2),
        clipped_samples=written.clipped,
        gain_db=round(written.gain_db, 2),
        limiter_gain_reduction_db=round(min(0.0, 20 * math.log10(max(written.min_gain, 1e-12))), 2),
        speech_path=speech_path,
        passes=written.passes,
    )


def _load_clips(clips: Sequence[tuple[float, Path | str]], sample_rate: int, frames: int
                ) -> tuple[list[tuple[int, np.ndarray]], int]:
    """Each clip as (offset in samples, mono at the mix's rate), and the mix's length in samples."""
    loaded: list[tuple[int, np.ndarray]] = []
    total = frames
    for start, path in clips:
        clip, clip_rate = read_audio(path)
        mono = resample(clip.mean(axis=1), clip_rate, sample_rate).astype(np.float32)
        offset = max(0, int(round(float(start) * sample_rate)))
        loaded.append((offset, mono))
        total = max(total, offset + mono.size)
    return loaded, total


def _level_dialogue(timeline: _Timeline, total: int, block: int, dub_gain_db: float) -> None:
    """Level the dialogue to DIALOGUE_DBFS RMS over the samples inside clips (plus `dub_gain_db`)."""
    sumsq, count = 0.0, 0
    for a in range(0, total, block):
        speech, mask = timeline.speech(a, min(total, a + block))
        sumsq += float(np.square(speech[mask], dtype=np.float64).sum())
        count += int(mask.sum())
    if count and sumsq > 0:
        timeline.speech_gain = 10 ** ((DIALOGUE_DBFS + dub_gain_db) / 20) / math.sqrt(sumsq / count)


@dataclass
class _Written:
    lufs: float
    peak_db: float
    clipped: int
    min_gain: float
    gain_db: float
    gain: np.float32
    passes: int


def _write_normalised(timeline: _Timeline, out_wav: Path, names: Sequence[str], total: int, block: int, *,
                      gain_db: float, target_lufs: float, true_peak_db: float) -> _Written:
    """Gain + limiter + measure, written to `out_wav`; written again (at most 6 passes) only while the limiter
    moved the loudness off the target or the true peak is over the ceiling."""
    sample_rate, channels = timeline.rate, timeline.channels
    ceiling_db = true_peak_db - 0.3  # margin for the gain curve's own inter-sample effects
    window = _limiter_window(sample_rate)
    context = window + 2 * OS_MARGIN
    passes = 0
    while True:
        passes += 1
        gain = np.float32(10 ** (gain_db / 20))
        ceiling = 10 ** (ceiling_db / 20)
        meter = LoudnessMeter(sample_rate, names)
        peak, min_gain, clipped = 0.0, 1.0, 0
        with wav_writer(out_wav, sample_rate, channels) as writer:
            for a in range(0, total, block):
                b = min(total, a + block)
                pre = timeline.render(a - context, b + context) * gain
                env = true_peak_envelope(pre)
                limiter = _limiter_gain(env, ceiling, window)
                min_gain = min(min_gain, float(limiter[context : context + b - a].min()))
                if float(limiter.min()) < 1.0:
                    out = pre * limiter[:, None].astype(np.float32)
                    lo = context - OS_MARGIN
                    env_out = true_peak_envelope(out[lo : context + (b - a) + OS_MARGIN])
                    env_core = env_out[OS_MARGIN : OS_MARGIN + b - a]
                else:  # nothing limited here: the output is the input
                    out = pre
                    env_core = env[context : context + b - a]
                peak = max(peak, float(env_core.max()) if env_core.size else 0.0)
                core = out[context : context + b - a]
                clipped += int(np.count_nonzero(np.abs(core) >= 1.0))
                meter.add(core)
                writer.write(core)
        final_lufs = meter.integrated()
        final_peak = 20 * math.log10(peak) if peak > 0 else -math.inf
        error = target_lufs - final_lufs
        peak_ok = final_peak <= true_peak_db - 0.05
        if (abs(error) <= 0.1 and peak_ok) or passes >= 6:
            return _Written(final_lufs, final_peak, clipped, min_gain, gain_db, gain, passes)
        if abs(error) > 0.1:
            gain_db += error  # limiting lowered the loudness: more gain, limited again
        if not peak_ok:
            ceiling_db -= 0.3


def _write_speech(timeline: _Timeline, path: Path, total: int, block: int, gain: np.float32) -> None:
    """The placed dub alone, at the gain it has in the mix, on the dub's channels (for QA)."""
    with wav_writer(path, timeline.rate, timeline.channels) as writer:
        for a in range(0, total, block):
            speech, _mask = timeline.speech(a, min(total, a + block))
            part = np.zeros((speech.size, timeline.channels), dtype=np.float32)
            for col in timeline.dub_cols:
                part[:, col] = np.clip(speech * gain, -1.0, 1.0)
            writer.write(part)


@contextmanager
def _background(path: Path | str | None, sample_rate: int | None) -> Iterator[Any | None]:
    """The background as an open `soundfile.SoundFile` at `sample_rate` (decoded/resampled if needed)."""
    import soundfile as sf

    if path is None:
        yield None
        return
    with as_wav(Path(path), sample_rate) as wav, sf.SoundFile(str(wav)) as fh:
        yield fh
