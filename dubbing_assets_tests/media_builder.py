"""Test media built at test time: the three-speaker Japanese clip (issue 13's test material).

Seven turns by three Kokoro voices (two women, one man) with 0.35-1.1 s gaps and a sine-chord pad
16 dB under the dialogue, over a test-pattern video: `build_three_speakers(folder)` writes
`three_speakers.mkv` (about 0.5 MB) and returns its ground truth, measured the way the shared fixtures
were (first and last sample above -40 dBFS of each turn as placed, on the file's own timeline, so the
AAC priming shift Matroska keeps is included). The phoneme strings live in
data/three_speakers/lines.json, so no Japanese front end is needed.
`build_long_ja(folder)` does the same from data/long_ja/lines.json: twelve lines of two speakers, from one
word to two sentences (issue 17: the length of each translation matters).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dubbing_assets_tests.conftest import DATA

RATE = 48000
LINES = DATA / "three_speakers" / "lines.json"
LONG_LINES = DATA / "long_ja" / "lines.json"
PAD_DB = -16.0
TAIL_S = 1.0


@dataclass(frozen=True)
class Turn:
    index: int
    speaker: str
    voice: str
    start: float
    end: float
    text_ja: str
    text_en: str


def _chords(seconds: float, phase: float = 0.0) -> np.ndarray:
    """A slow sine-chord pad (A minor, F, C, G), one chord every 2 s, with soft fades; `phase` (radians per
    partial) makes the two channels' pads differ, as a stereo mix does."""
    t = np.arange(int(seconds * RATE)) / RATE
    chords = [(220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (261.63, 329.63, 392.0), (196.0, 246.94, 293.66)]
    out = np.zeros_like(t)
    for i, start in enumerate(np.arange(0, seconds, 2.0)):
        seg = (t >= start) & (t < start + 2.0)
        env = np.sin(np.pi * (t[seg] - start) / 2.0) ** 0.5
        out[seg] = sum(np.sin(2 * np.pi * f * t[seg] + phase * (k + 1)) for k, f in enumerate(chords[i % 4])) \
            * env / 3
    return out.astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def build_three_speakers(folder: Path, registry=None) -> tuple[Path, list[Turn]]:
    return build_clip(folder, LINES, "three_speakers", registry=registry)


def build_long_ja(folder: Path, registry=None) -> tuple[Path, list[Turn]]:
    """The long Japanese clip (issue 17): twelve lines of two speakers, from one word to two sentences."""
    return build_clip(folder, LONG_LINES, "long_ja", registry=registry)


def build_clip(folder: Path, lines: Path, name: str, registry=None) -> tuple[Path, list[Turn]]:
    import librosa

    from dubbing_assets.core.engines.kokoro import SAMPLE_RATE as KOKORO_RATE
    from dubbing_assets.core.engines.kokoro import KokoroEngine
    from dubbing_assets.core.ffmpeg import run_ffmpeg
    from dubbing_assets.core.mux import audio_timing

    folder.mkdir(parents=True, exist_ok=True)
    doc = json.loads(lines.read_text(encoding="utf-8"))
    engine = KokoroEngine(registry=registry)
    pieces: list[tuple[float, np.ndarray, dict]] = []
    cursor = 0.0
    for line in doc["lines"]:
        audio = engine.speak_phonemes(line["phonemes"], line["voice"])
        audio = librosa.resample(audio, orig_sr=KOKORO_RATE, target_sr=RATE).astype(np.float32)
        audio *= 0.5 / max(1e-6, float(np.max(np.abs(audio))))
        cursor += line["gap_before_s"]
        pieces.append((cursor, audio, line))
        cursor += len(audio) / RATE
    total = cursor + TAIL_S
    dialogue = np.zeros(int(total * RATE), dtype=np.float32)
    for start, audio, _ in pieces:
        a = int(round(start * RATE))
        dialogue[a:a + len(audio)] += audio
    speech_rms = np.mean([_rms(a) for _, a, _ in pieces])
    pads = []
    for phase in (0.0, 2.1):  # a wide pad: left and right differ, the dialogue is centre-panned
        pad = np.resize(_chords(total, phase), len(dialogue))
        pads.append(pad * speech_rms * 10 ** (PAD_DB / 20) / max(1e-9, _rms(pad)))
    wav = folder / f"{name}.wav"
    import soundfile as sf

    sf.write(wav, np.stack([dialogue + pads[0], dialogue + pads[1]], axis=1), RATE, subtype="PCM_16")
    out = folder / f"{name}.mkv"
    run_ffmpeg(["-y", "-f", "lavfi", "-i", f"testsrc2=size=320x180:rate=12:duration={total:.3f}", "-i", str(wav),
                "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast", "-crf", "35",
                "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-metadata:s:a:0", "language=jpn",
                "-shortest", str(out)], what=f"building the {name} clip")
    wav.unlink()
    # the file's timeline: where its first decoded sample lands (Matroska keeps the AAC priming)
    offset = audio_timing(out, 1).first_sample_s
    threshold = 10 ** (-40 / 20)
    turns = []
    for i, (start, audio, line) in enumerate(pieces):
        loud = np.where(np.abs(audio) > threshold)[0]
        turns.append(Turn(i, line["speaker"], line["voice"], round(start + loud[0] / RATE + offset, 3),
                          round(start + loud[-1] / RATE + offset, 3), line["text_ja"], line["text_en"]))
    (folder / f"{name}.truth.json").write_text(json.dumps([t.__dict__ for t in turns], ensure_ascii=False,
                                                                 indent=1))
    return out, turns
