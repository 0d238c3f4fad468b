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
streaming meter (`LoudnessMeter`). Only the dub clips (mono) are in memory.

Channel order is the WAV/ffmpeg order: 5.1 = FL FR FC LFE BL BR (or SL SR).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.ffmpeg import ffmpeg_exe, run_ffmpeg
from dubbing_assets.errors import MediaError

#: Channel names for the layouts this module knows, in WAV/ffmpeg order.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "mono": ("FC",),
    "stereo": ("FL", "FR"),
    "2.1": ("FL", "FR", "LFE"),
    "3.0": ("FL", "FR", "FC"),
    "quad": ("FL", "FR", "BL", "BR"),
    "5.0": ("FL", "FR", "FC", "BL", "BR"),
    "5.0(side)": ("FL", "FR", "FC", "SL", "SR"),
    "5.1": ("FL", "FR", "FC", "LFE", "BL", "BR"),
    "5.1(side)": ("FL", "FR", "FC", "LFE", "SL", "SR"),
    "7.1": ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"),
}
_DEFAULT_LAYOUT = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}
#: BS.1770 channel weights (LFE excluded).
_WEIGHTS = {"FL": 1.0, "FR": 1.0, "FC": 1.0, "BL": 1.41, "BR": 1.41, "SL": 1.41, "SR": 1.41, "LFE": 0.0}
#: Seconds of audio per processing block.
BLOCK_S = 5.0
#: Samples of context the 4x polyphase oversampler needs on each side (its filter is ~40 taps at 4x).
_OS_MARGIN = 64
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
# reading, resampling


def layout_for(channels: int, layout: str | None = None) -> str:
    """A known layout name for `channels` (the given one if it fits)."""
    if layout and layout in LAYOUTS and len(LAYOUTS[layout]) == channels:
        return layout
    if channels in _DEFAULT_LAYOUT:
        return _DEFAULT_LAYOUT[channels]
    raise MediaError(
        f"Cannot mix {channels}-channel audio (layout {layout!r}); convert it to 5.1 or stereo first."
    )


def _is_soundfile(path: Path) -> bool:
    import soundfile as sf

    try:
        sf.info(str(path))
        return True
    except (RuntimeError, sf.LibsndfileError):
        return False


@contextmanager
def _as_wav(path: Path, sample_rate: int | None = None) -> Iterator[Path]:
    """`path` itself when soundfile reads it at the wanted rate, else a temporary float WAV made by ffmpeg."""
    import soundfile as sf

    if _is_soundfile(path) and (sample_rate is None or sf.info(str(path)).samplerate == sample_rate):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=".decode-", dir=path.parent) as tmp:
        wav = Path(tmp) / "decoded.wav"
        args: list[str | Path] = ["-i", path, "-vn", "-sn", "-dn", "-map", "0:a:0", "-c:a", "pcm_f32le"]
        if sample_rate is not None:
            args += ["-af", f"aresample={int(sample_rate)}:resampler=soxr:precision=28"]
        try:
            run_ffmpeg([*args, "-f", "wav", wav], what=f"decoding audio from {path.name}")
        except Exception as exc:  # noqa: BLE001 - soxr may be missing from a build: plain resampler
            if sample_rate is None:
                raise MediaError(f"Could not read audio from {path.name}: {exc}") from exc
            args[-1] = f"aresample={int(sample_rate)}"
            run_ffmpeg([*args, "-f", "wav", wav], what=f"decoding audio from {path.name}")
        yield wav


def read_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """Whole file as (samples, channels) float32 and its rate; for clips and tests, not for episodes."""
    import soundfile as sf

    with _as_wav(Path(path)) as wav:
        audio, sample_rate = sf.read(str(wav), dtype="float32", always_2d=True)
    return audio, int(sample_rate)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling along axis 0 (exact rational ratio)."""
    if from_rate == to_rate or audio.shape[0] == 0:
        return audio
    from scipy.signal import resample_poly

    g = math.gcd(int(from_rate), int(to_rate))
    return resample_poly(audio, int(to_rate) // g, int(from_rate) // g, axis=0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# measuring


class LoudnessMeter:
    """Streaming BS.1770-4 integrated loudness, matching `pyloudnorm.Meter.integrated_loudness`.

    Uses pyloudnorm's K-weighting filters (with their state carried from
    block to block), its 400 ms / 75 % overlap gating blocks and its channel
    weights (1.0 front, 1.41 surround, LFE left out), so feeding a signal in
    pieces gives the same number as measuring it whole.
    """

    def __init__(self, sample_rate: int, channel_names: Sequence[str]) -> None:
        import pyloudnorm

        meter = pyloudnorm.Meter(int(sample_rate))
        self._stages = [
            (np.asarray(f.b, dtype=np.float64), np.asarray(f.a, dtype=np.float64), float(f.passband_gain))
            for f in meter._filters.values()
        ]
        self.rate = int(sample_rate)
        self.weights = np.array([_WEIGHTS.get(n, 1.0) for n in channel_names], dtype=np.float64)
        channels = len(channel_names)
        self._zi = [np.zeros((max(len(a), len(b)) - 1, channels)) for b, a, _g in self._stages]
        self.samples = 0
        self._segments: list[float] = []  # weighted sum of squares per 100 ms segment (closed ones)
        self._partial = 0.0

    def _boundary(self, k: int) -> int:
        return int(0.4 * (k * 0.25) * self.rate)  # pyloudnorm's own block arithmetic

    def add(self, block: np.ndarray) -> None:
        from scipy.signal import lfilter

        x = np.asarray(block, dtype=np.float64)
        x = x.reshape(-1, 1) if x.ndim == 1 else x
        for i, (b, a, gain) in enumerate(self._stages):
            y, self._zi[i] = lfilter(b, a, x, axis=0, zi=self._zi[i])
            x = gain * y
        power = np.square(x) @ self.weights
        start, pos = self.samples, 0
        while True:
            end = self._boundary(len(self._segments) + 1) - start
            if end > power.size:
                self._partial += float(power[pos:].sum())
                break
            self._segments.append(self._partial + float(power[pos:end].sum()))
            self._partial = 0.0
            pos = end
        self.samples += power.size

    def integrated(self) -> float:
        """Integrated loudness so far (LUFS); -inf for silence or less than 400 ms."""
        seconds = self.samples / self.rate
        if seconds < 0.4:
            return -math.inf
        segments = np.array([*self._segments, self._partial, 0.0, 0.0, 0.0])
        n_blocks = int(np.round((seconds - 0.4) / 0.1)) + 1
        sums = np.convolve(segments, np.ones(4), mode="valid")[:n_blocks]
        power = sums / (0.4 * self.rate)
        with np.errstate(divide="ignore"):
            loudness = -0.691 + 10 * np.log10(power)
        gated = power[loudness >= -70.0]
        if gated.size == 0:
            return -math.inf
        relative = -0.691 + 10 * math.log10(float(gated.mean())) - 10.0
        final = power[(loudness > relative) & (loudness > -70.0)]
        if final.size == 0:
            return -math.inf
        return -0.691 + 10 * math.log10(float(final.mean()))


def integrated_lufs(audio: np.ndarray, sample_rate: int, layout: str | None = None) -> float:
    """BS.1770-4 integrated loudness (LUFS) of an in-memory signal with pyloudnorm itself.

    pyloudnorm weights channels by position ([L, R, C, Ls, Rs]), so the
    channels are put onto those slots (a missing centre is silence, the LFE
    is left out; 7.1 folds each side's surrounds together).
    """
    import pyloudnorm

    audio = audio if audio.ndim == 2 else audio.reshape(-1, 1)
    names = LAYOUTS[layout_for(audio.shape[1], layout)]
    silent = np.zeros(audio.shape[0], dtype=np.float64)

    def col(name: str) -> np.ndarray:
        return audio[:, names.index(name)].astype(np.float64) if name in names else silent

    fronts = [col(n) for n in ("FL", "FR", "FC") if n in names]
    left = [col(n) for n in ("BL", "SL") if n in names]
    right = [col(n) for n in ("BR", "SR") if n in names]
    if left or right:
        fronts = [col("FL"), col("FR"), col("FC")]
        fronts += [
            sum(left) / math.sqrt(len(left)) if left else silent,
            sum(right) / math.sqrt(len(right)) if right else silent,
        ]
    data = np.stack(fronts, axis=1)
    minimum = int(0.4 * sample_rate) + 1
    if data.shape[0] < minimum:
        data = np.concatenate([data, np.zeros((minimum - data.shape[0], data.shape[1]))])
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(data))


def true_peak_envelope(audio: np.ndarray, oversample: int = 4) -> np.ndarray:
    """Per original sample, the largest oversampled magnitude across channels and its sub-samples."""
    from scipy.signal import resample_poly

    audio = audio if audio.ndim == 2 else audio.reshape(-1, 1)
    if audio.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    out = np.zeros(audio.shape[0], dtype=np.float32)
    block = 1 << 18  # bounded memory: oversample in blocks with a margin for the filter
    for lo in range(0, audio.shape[0], block):
        hi = min(audio.shape[0], lo + block)
        a, b = max(0, lo - _OS_MARGIN), min(audio.shape[0], hi + _OS_MARGIN)
        up = np.abs(resample_poly(audio[a:b], oversample, 1, axis=0)).max(axis=1)
        up = up[: (b - a) * oversample].reshape(b - a, oversample).max(axis=1)
        out[lo:hi] = up[lo - a : lo - a + (hi - lo)]
    return out


def true_peak_dbtp(audio: np.ndarray, oversample: int = 4) -> float:
    """True peak in dBTP: the highest sample of the signal oversampled `oversample` times."""
    up = true_peak_envelope(audio, oversample)
    peak = float(up.max()) if up.size else 0.0
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def measure_loudness(path: Path | str, *, layout: str | None = None) -> dict[str, Any]:
    """Integrated loudness (LUFS), true peak (dBTP, 4x oversampled), sample peak and clipping of a file.

    Streams the file in blocks (any length); non-WAV files are decoded by ffmpeg first.
    """
    import soundfile as sf

    path = Path(path)
    with _as_wav(path) as wav, sf.SoundFile(str(wav)) as fh:
        rate, channels, total = int(fh.samplerate), int(fh.channels), int(fh.frames)
        meter = LoudnessMeter(rate, LAYOUTS[layout_for(channels, layout)])
        block = int(BLOCK_S * rate)
        peak = sample_peak = 0.0
        clipped = 0
        for a in range(0, total, block):
            b = min(total, a + block)
            lo = max(0, a - _OS_MARGIN)
            fh.seek(lo)
            ext = fh.read(min(total, b + _OS_MARGIN) - lo, dtype="float32", always_2d=True)
            core = ext[a - lo : a - lo + (b - a)]
            meter.add(core)
            env = true_peak_envelope(ext)[a - lo : a - lo + (b - a)]
            peak = max(peak, float(env.max()) if env.size else 0.0)
            sample_peak = max(sample_peak, float(np.abs(core).max()) if core.size else 0.0)
            clipped += int(np.count_nonzero(np.abs(core) >= 1.0))
    return {
        "integrated_lufs": round(meter.integrated(), 2),
        "true_peak_db": round(20 * math.log10(peak), 2) if peak > 0 else -math.inf,
        "sample_peak_db": round(20 * math.log10(sample_peak), 2) if sample_peak > 0 else -math.inf,
        "clipped_samples": clipped,
        "sample_rate": rate,
        "channels": channels,
        "duration_s": round(total / rate, 3),
    }


def ebur128(path: Path | str) -> dict[str, float]:
    """Integrated loudness and true peak as ffmpeg's `ebur128` filter measures them (an independent check)."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a:0",
         "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise MediaError(f"ffmpeg ebur128 failed on {Path(path).name}: {proc.stderr.strip()[-300:]}")
    summary = proc.stderr[proc.stderr.rfind("Summary:") :]
    integrated = re.search(r"I:\s+(-?[\d.]+|-inf)\s+LUFS", summary)
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf)\s+dBFS", summary)
    return {
        "integrated_lufs": float(integrated.group(1)) if integrated else math.nan,
        "true_peak_db": float(peak.group(1)) if peak else math.nan,
    }


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


def limit_true_peak(
    audio: np.ndarray, sample_rate: int, ceiling_db: float, *, oversample: int = 4
) -> tuple[np.ndarray, float]:
    """In-memory look-ahead limiter on the oversampled peak; returns the audio and the deepest cut (dB)."""
    audio = audio if audio.ndim == 2 else audio.reshape(-1, 1)
    gain = _limiter_gain(
        true_peak_envelope(audio, oversample), 10 ** (ceiling_db / 20), _limiter_window(sample_rate)
    )
    reduction = float(20 * math.log10(max(float(gain.min()), 1e-12))) if gain.size else 0.0
    return audio * gain[:, None].astype(np.float32), min(0.0, reduction)


def _dub_channels(names: Sequence[str]) -> list[int]:
    if "FC" in names:
        return [names.index("FC")]
    return [i for i, n in enumerate(names) if n != "LFE"]


@contextmanager
def _wav_writer(path: Path, sample_rate: int, channels: int) -> Iterator[Any]:
    """A 24-bit WAV written to a temp file beside `path`, fsynced and renamed on success."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.wav", dir=path.parent)
    os.close(fd)
    try:
        with sf.SoundFile(
            tmp, "w", samplerate=sample_rate, channels=channels, subtype="PCM_24", format="WAV"
        ) as fh:
            yield fh
        with open(tmp, "rb+") as raw:
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


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

        loaded: list[tuple[int, np.ndarray]] = []
        total = bg_frames
        for start, path in clips:
            clip, clip_rate = read_audio(path)
            mono = resample(clip.mean(axis=1), clip_rate, sample_rate).astype(np.float32)
            offset = max(0, int(round(float(start) * sample_rate)))
            loaded.append((offset, mono))
            total = max(total, offset + mono.size)
        if duration_s is not None:
            total = max(total, int(round(duration_s * sample_rate)))
        timeline = _Timeline(
            bg,
            bg_frames,
            bg_channels,
            channels,
            sample_rate,
            loaded,
            total,
            duck_db,
            ramp_s,
            _dub_channels(names),
        )
        block = int(BLOCK_S * sample_rate)

        # 1. level the dialogue: RMS over the samples inside clips
        sumsq, count = 0.0, 0
        for a in range(0, total, block):
            speech, mask = timeline.speech(a, min(total, a + block))
            sumsq += float(np.square(speech[mask], dtype=np.float64).sum())
            count += int(mask.sum())
        if count and sumsq > 0:
            timeline.speech_gain = 10 ** ((DIALOGUE_DBFS + dub_gain_db) / 20) / math.sqrt(sumsq / count)

        # 2. loudness before normalisation
        meter = LoudnessMeter(sample_rate, names)
        for a in range(0, total, block):
            meter.add(timeline.render(a, min(total, a + block)))
        loudness = meter.integrated()
        if not math.isfinite(loudness):
            raise MediaError(
                "The mix is silent; there is nothing to normalise (no speech and no background)."
            )
        gain_db = target_lufs - loudness

        # 3. gain + limiter + measure, written to the output; again only if the limiter moved the loudness
        ceiling_db = true_peak_db - 0.3  # margin for the gain curve's own inter-sample effects
        window = _limiter_window(sample_rate)
        context = window + 2 * _OS_MARGIN
        passes = 0
        while True:
            passes += 1
            gain = np.float32(10 ** (gain_db / 20))
            ceiling = 10 ** (ceiling_db / 20)
            meter = LoudnessMeter(sample_rate, names)
            peak, min_gain, clipped = 0.0, 1.0, 0
            with _wav_writer(out_wav, sample_rate, channels) as writer:
                for a in range(0, total, block):
                    b = min(total, a + block)
                    pre = timeline.render(a - context, b + context) * gain
                    env = true_peak_envelope(pre)
                    limiter = _limiter_gain(env, ceiling, window)
                    min_gain = min(min_gain, float(limiter[context : context + b - a].min()))
                    if float(limiter.min()) < 1.0:
                        out = pre * limiter[:, None].astype(np.float32)
                        lo = context - _OS_MARGIN
                        env_out = true_peak_envelope(out[lo : context + (b - a) + _OS_MARGIN])
                        env_core = env_out[_OS_MARGIN : _OS_MARGIN + b - a]
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
                break
            if abs(error) > 0.1:
                gain_db += error  # limiting lowered the loudness: more gain, limited again
            if not peak_ok:
                ceiling_db -= 0.3

        speech_path = None
        if speech_wav is not None:
            speech_path = str(speech_wav)
            with _wav_writer(Path(speech_wav), sample_rate, channels) as writer:
                for a in range(0, total, block):
                    speech, _mask = timeline.speech(a, min(total, a + block))
                    part = np.zeros((speech.size, channels), dtype=np.float32)
                    for col in timeline.dub_cols:
                        part[:, col] = np.clip(speech * gain, -1.0, 1.0)
                    writer.write(part)
    return MixResult(
        path=str(out_wav),
        sample_rate=int(sample_rate),
        channels=int(channels),
        layout=layout,
        duration_s=round(total / sample_rate, 4),
        integrated_lufs=round(final_lufs, 2),
        true_peak_db=round(final_peak, 2),
        clipped_samples=clipped,
        gain_db=round(gain_db, 2),
        limiter_gain_reduction_db=round(min(0.0, 20 * math.log10(max(min_gain, 1e-12))), 2),
        speech_path=speech_path,
        passes=passes,
    )


@contextmanager
def _background(path: Path | str | None, sample_rate: int | None) -> Iterator[Any | None]:
    """The background as an open `soundfile.SoundFile` at `sample_rate` (decoded/resampled if needed)."""
    import soundfile as sf

    if path is None:
        yield None
        return
    with _as_wav(Path(path), sample_rate) as wav, sf.SoundFile(str(wav)) as fh:
        yield fh
