"""Loudness and peaks: BS.1770-4 integrated loudness (streaming), true peak (oversampled), and ffmpeg's
own `ebur128` as an independent check. The mixer normalises with these; QA reports them."""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.audio_io import LAYOUTS, as_wav, layout_for
from dubbing_assets.core.ffmpeg import ffmpeg_exe
from dubbing_assets.errors import MediaError

#: BS.1770 channel weights (LFE excluded).
_WEIGHTS = {"FL": 1.0, "FR": 1.0, "FC": 1.0, "BL": 1.41, "BR": 1.41, "SL": 1.41, "SR": 1.41, "LFE": 0.0}
#: Samples of context the 4x polyphase oversampler needs on each side (its filter is ~40 taps at 4x).
OS_MARGIN = 64
#: Seconds of audio `measure_loudness` reads at a time.
BLOCK_S = 5.0


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
        a, b = max(0, lo - OS_MARGIN), min(audio.shape[0], hi + OS_MARGIN)
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
    with as_wav(path) as wav, sf.SoundFile(str(wav)) as fh:
        rate, channels, total = int(fh.samplerate), int(fh.channels), int(fh.frames)
        meter = LoudnessMeter(rate, LAYOUTS[layout_for(channels, layout)])
        block = int(BLOCK_S * rate)
        peak = sample_peak = 0.0
        clipped = 0
        for a in range(0, total, block):
            b = min(total, a + block)
            lo = max(0, a - OS_MARGIN)
            fh.seek(lo)
            ext = fh.read(min(total, b + OS_MARGIN) - lo, dtype="float32", always_2d=True)
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
