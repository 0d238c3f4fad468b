"""Voice range of a speaker: median F0 over their lines, and a casting hint from it.

Casting uses the hint so that a high-voiced character is not given a deep
variant of the base voice (and the reverse). It is a hint about pitch range,
nothing more; the cast file overrides it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SAMPLE_RATE = 16000
#: Median F0 above which a voice counts as high, below which as low (Hz). Between: no hint.
HIGH_HZ = 165.0
LOW_HZ = 145.0


def median_f0(audio16k: np.ndarray, spans: Sequence[tuple[float, float]], *, max_seconds: float = 30.0
              ) -> float | None:
    """Median F0 (YIN, 60-400 Hz) over voiced frames of `spans`; None when nothing is voiced."""
    import librosa

    pieces: list[np.ndarray] = []
    total = 0.0
    for start, end in spans:
        a, b = max(0, int(start * SAMPLE_RATE)), min(len(audio16k), int(end * SAMPLE_RATE))
        if b - a < SAMPLE_RATE // 10:
            continue
        pieces.append(audio16k[a:b])
        total += (b - a) / SAMPLE_RATE
        if total >= max_seconds:
            break
    if not pieces:
        return None
    f0s: list[np.ndarray] = []
    for piece in pieces:
        f0 = librosa.yin(piece.astype(np.float32), fmin=60, fmax=400, sr=SAMPLE_RATE, frame_length=1024)
        rms = librosa.feature.rms(y=piece, frame_length=1024, hop_length=256)[0]
        n = min(len(f0), len(rms))
        voiced = rms[:n] > max(1e-4, 0.3 * float(np.median(rms[:n])))
        f0s.append(f0[:n][voiced])
    values = np.concatenate(f0s) if f0s else np.array([])
    return float(np.median(values)) if values.size else None


def range_hint(f0_hz: float | None) -> str | None:
    """'female' (high voice), 'male' (low voice) or None, in the vocabulary `tts.assign_voice` takes."""
    if f0_hz is None:
        return None
    if f0_hz >= HIGH_HZ:
        return "female"
    if f0_hz <= LOW_HZ:
        return "male"
    return None
