"""How long a voice takes to say a text, without synthesizing it.

Choosing among a line's translations by how well each fits its slot needs the
duration of each at the voice's natural rate, for dozens of candidates per
episode; synthesizing them all would cost more than the dub. A voice's
duration is close to linear in what its own phonemizer produces: seconds =
a * phoneme symbols + b * word breaks + c * commas + d * sentences + e. The
coefficients are fitted (non-negative least squares) on `CALIBRATION`, spoken
once by the voice itself, and cached per engine version and voice in every
cache folder given (DUBBING_CACHE and the per-user cache), so an instance
fits each voice once. The leave-one-out error of the fit is kept with it and
reported in the translation stage's metadata.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.contracts import Voice
from dubbing_assets.core.fsutil import cached_json

#: Bump when the features or the calibration change: cached fits are then refitted.
DURATION_VERSION = 1

#: What every voice says once (ten lines: a Kokoro voice fits in 25-38 s on two cores, Piper in 4 s): one word to
#: three sentences, with and without commas.
CALIBRATION = (
    "Yes.",
    "Where are you going?",
    "I bought two melon buns at the station.",
    "Good morning. Today is a very early day.",
    "Well, if you ask me, the train was late again.",
    "She said she would call, but she never did.",
    "The festival starts at six, so we should leave soon. Bring a coat.",
    "I have been waiting for you since this morning, and I am tired.",
    "Thank you. Really, thank you for everything you did for us today.",
    "Look at the sky. It is going to rain. We should go home now.",
)

_COMMAS = re.compile(r"[,;:\u3001\uff0c\u2014]")


def features(phonemes: Sequence[str], text: str) -> np.ndarray:
    """[phoneme symbols, word breaks, commas, sentences, 1] of one text as the voice would speak it."""
    joined = " ".join(p.strip() for p in phonemes if p.strip())
    symbols = sum(1 for ch in joined if not ch.isspace())
    breaks = len(joined.split()) - 1 if joined else 0
    return np.array([symbols, max(0, breaks), len(_COMMAS.findall(text)), max(1, len(phonemes)), 1.0])


@dataclass(frozen=True)
class DurationModel:
    """A fitted voice: `predict(text)` is seconds at rate 1.0."""

    key: str
    coefficients: tuple[float, ...]
    loo_error_s: float
    loo_error_rel: float
    samples: int
    phonemize: Callable[[str], list[str]]

    def predict(self, text: str) -> float:
        if not text.strip():
            return 0.0
        return float(np.dot(self.coefficients, features(self.phonemize(text), text)))


def _fit(rows: np.ndarray, seconds: np.ndarray) -> tuple[np.ndarray, float, float]:
    from scipy.optimize import nnls

    coef, _ = nnls(rows, seconds)
    errors, rel = [], []
    for i in range(len(rows)):  # leave-one-out: the error on a text the fit never saw
        keep = np.arange(len(rows)) != i
        c, _ = nnls(rows[keep], seconds[keep])
        err = abs(float(rows[i] @ c) - float(seconds[i]))
        errors.append(err)
        rel.append(err / max(float(seconds[i]), 1e-3))
    return coef, float(np.mean(errors)), float(np.mean(rel))


def voice_key(engine: Any, voice: Voice) -> str:
    """The cache key of a voice's fit: everything that changes its timing (not its pitch)."""
    from dubbing_assets.core.tts import identity_of

    raw = json.dumps([DURATION_VERSION, CALIBRATION, *identity_of(engine, voice), voice.engine, voice.voice,
                      voice.speaker_id, round(float(voice.length_scale), 4),
                      {k: v for k, v in sorted((voice.settings or {}).items()) if k != "reference"}], default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def duration_model(engine: Any, voice: Voice, cache_dirs: Sequence[Path] = (), *,
                   log: Callable[[str], None] | None = None) -> DurationModel:
    """The voice's duration model, from the first cache that has it or fitted now (and cached).

    `engine` must offer `phonemes(text, voice)` (Piper, Kokoro) and `synthesize`.
    """
    if not hasattr(engine, "phonemes"):
        raise TypeError(f"engine {getattr(engine, 'name', engine)!r} has no phonemizer to predict durations from")
    key = voice_key(engine, voice)

    def phonemize(text: str) -> list[str]:
        return engine.phonemes(text, voice)

    def build() -> dict[str, Any]:
        started = time.perf_counter()
        rows, seconds = [], []
        with tempfile.TemporaryDirectory(prefix="duration-") as tmp:
            for i, text in enumerate(CALIBRATION):
                result = engine.synthesize(text, voice, Path(tmp) / f"{i}.wav")
                rows.append(features(phonemize(text), text))
                seconds.append(float(result.duration_s))
        coef, err, rel = _fit(np.stack(rows), np.array(seconds))
        if log is not None:
            log(f"duration model for {voice.engine}/{voice.voice}: fitted on {len(rows)} syntheses in "
                f"{time.perf_counter() - started:.1f}s, leave-one-out error {err * 1000:.0f} ms ({rel:.1%})")
        return {"key": key, "coefficients": [float(x) for x in coef], "loo_error_s": round(err, 4),
                "loo_error_rel": round(rel, 4), "samples": len(rows)}

    folders = [Path(d) / "duration" / f"{key}.json" for d in cache_dirs]
    data, _ = cached_json(folders, build, valid=lambda d: d.get("key") == key and len(d.get("coefficients", [])) == 5)
    return DurationModel(key=key, coefficients=tuple(data["coefficients"]), loo_error_s=float(data["loo_error_s"]),
                         loo_error_rel=float(data["loo_error_rel"]), samples=int(data["samples"]),
                         phonemize=phonemize)
