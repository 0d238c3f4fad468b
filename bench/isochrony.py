"""Isochrony of the dub: the single best translation against the reading chosen to fit (issue 17).

On the Japanese clips (the fixture `ja_two_speakers.mkv`, the three-speaker clip and the long clip, both
built here as the tests build them), whisper's translate task runs on each true line of the dialogue
stem, twice in the same run: once as before (`DUBBING_TRANSLATION_CANDIDATES=1`: the single best) and
once with the beam's n-best, each line's reading chosen by its predicted length in its character's
voice (`core.fit_choice`). The beam's own best reading is shown too: today's path (`text()`) is not always
it, because faster-whisper falls back to sampling at higher temperatures on a line whose average
log-probability is below -1, and those samples are not reproducible. Each version is then synthesized
with Kokoro voices and fitted into the slots by the real timing fit; the figures are the QA's own
isochrony figures over the placed lines (speech overlap, share of lines sped up beyond 1.1x) and chrF
against the clips' reference English.

    PYTHONPATH=. .venv/bin/python bench/isochrony.py [--candidates 5] [--clips ja_two_speakers,three,long]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MEDIA = ROOT / "dubbing_assets_tests" / "data" / "media"
#: Dub voices by the source speaker's gender (the cast gives women female and men male voices).
FEMALE, MALE = ["jf_alpha", "jf_nezumi", "jf_gongitsune", "jf_tebukuro"], ["jm_kumo"]
GENDER = {"Aiko": "f", "Kenji": "m", "Yui": "f", "Mika": "f", "Taro": "m", "Hana": "f", "Sora": "m"}


def clips(work: Path, names: list[str], registry: Any) -> list[tuple[str, Path, list[dict[str, Any]]]]:
    """(name, media, true lines {start, end, speaker, text_en})."""
    from dubbing_assets_tests import media_builder

    out = []
    if "ja_two_speakers" in names:
        truth = json.loads((MEDIA / "ja_two_speakers.script.json").read_text(encoding="utf-8"))
        out.append(("ja_two_speakers", MEDIA / "ja_two_speakers.mkv", truth["lines"]))
    builders = {"three": media_builder.build_three_speakers, "long": getattr(media_builder, "build_long_ja", None)}
    for name in ("three", "long"):
        if name in names and builders[name] is not None:
            clip, turns = builders[name](work / name, registry=registry)
            out.append((name, clip, [{"start": t.start, "end": t.end, "speaker": t.speaker, "text_en": t.text_en}
                                     for t in turns]))
    return out


def measure(name: str, clip: Path, truth: list[dict[str, Any]], candidates: int, registry: Any, kokoro: Any,
            work: Path) -> dict[str, dict[str, Any]]:
    from dubbing_assets.core import fit_choice, media, qa, stems
    from dubbing_assets.core.contracts import Line, Script, Voice
    from dubbing_assets.core.duration import duration_model
    from dubbing_assets.core.metrics import chrf
    from dubbing_assets.core.timing import fit_lines, line_slots
    from dubbing_assets.core.translate import WhisperTranslator
    from dubbing_assets.core.voicebank import user_cache_dir

    work.mkdir(parents=True, exist_ok=True)
    original = media.extract_audio(clip, work / "original.wav", stream_index=None)
    dialogue, _ = stems.get_separator("signal").separate(original, work)
    script = Script("ja", "asr", [Line(index=i, start=float(t["start"]), end=float(t["end"]), speaker=t["speaker"],
                                       text="") for i, t in enumerate(truth)], {})
    pool = {"f": list(FEMALE), "m": list(MALE)}
    voices = {}
    for speaker in dict.fromkeys(t["speaker"] for t in truth):
        options = pool[GENDER.get(speaker, "f")]
        voices[speaker] = Voice("kokoro", options.pop(0) if len(options) > 1 else options[0])
    predictors = {s: duration_model(kokoro, v, [user_cache_dir()], log=print).predict for s, v in voices.items()}
    end = max(t["end"] for t in truth) + 1.0
    spans = line_slots([(ln.start, ln.end) for ln in script.lines], end)
    slots = {ln.index: b - a for ln, (a, b, _) in zip(script.lines, spans, strict=True)}
    started = time.perf_counter()
    single = WhisperTranslator(registry=registry, device="cpu", candidates=1).translate(script, "en", audio=dialogue)
    t_single = time.perf_counter() - started
    started = time.perf_counter()
    nbest = WhisperTranslator(registry=registry, device="cpu", candidates=candidates).translate(script, "en",
                                                                                                audio=dialogue)
    chosen, figures = fit_choice.fit_to_slots(nbest, slots, predictors)
    t_chosen = time.perf_counter() - started
    # the beam's best is text()'s answer unless faster-whisper fell back to sampling (average log-probability
    # below -1): count those lines
    same_first = sum(a.text == b.text for a, b in zip(nbest.lines, single.lines, strict=True))
    out = {}
    from dataclasses import replace

    beam_best = replace(nbest, lines=[replace(ln, alternatives=[]) for ln in nbest.lines])
    for label, tr, took in (("before", single, t_single), ("beam_best", beam_best, t_chosen),
                            ("after", chosen, t_chosen)):
        fits = fit_lines(tr.lines, voices, kokoro, work / label, media_end=end)
        iso = qa.build_report(fits, tr.lines).summary  # the QA's own figures (onsets from the placed clips)
        scores = [chrf(t["text_en"], ln.text) for t, ln in zip(truth, tr.lines, strict=True)]
        out[label] = {"lines": len(fits), "sped_up_share": iso["sped_up_share"],
                      "speech_overlap": iso["speech_overlap"], "median_line_overlap": iso["median_line_overlap"],
                      "chrf": round(sum(scores) / len(scores), 2), "translate_s": round(took, 2),
                      "texts": [ln.text for ln in tr.lines]}
    out["after"].update(figures, first_reading_is_single_best=same_first)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--clips", default="ja_two_speakers,three,long")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    from dubbing_assets.core.engines.kokoro import KokoroEngine
    from dubbing_assets.core.models import ModelRegistry

    with tempfile.TemporaryDirectory(prefix="bench-isochrony-") as tmp:
        registry = ModelRegistry(cache_dir=Path(tmp) / "models", models_dir=None, allow_download=False)
        kokoro = KokoroEngine(registry=registry)
        results = {}
        for name, clip, truth in clips(Path(tmp), args.clips.split(","), registry):
            results[name] = measure(name, clip, truth, args.candidates, registry, kokoro, Path(tmp) / f"{name}-w")
    keys = ("sped_up_share", "speech_overlap", "median_line_overlap", "chrf", "translate_s")
    print("\nper figure: today's single best (text()) | the beam's best -> the reading chosen to fit")
    print(f"{'clip':18} {'lines':>5} " + " ".join(f"{k:>29}" for k in keys))
    sides = ("before", "beam_best", "after")
    total = {side: {k: 0.0 for k in keys} for side in sides}
    n = 0
    for name, r in results.items():
        row = " ".join(f"{r['before'][k]:>8} | {r['beam_best'][k]:<8} -> {r['after'][k]:<8}" for k in keys)
        print(f"{name:18} {r['before']['lines']:>5} {row}  changed {r['after']['lines_changed_for_fit']}, "
              f"first reading = single best on {r['after']['first_reading_is_single_best']}")
        for side in sides:
            for k in keys:
                total[side][k] += r[side][k] * r[side]["lines"]
        n += r["before"]["lines"]
    row = " ".join(f"{total['before'][k] / n:>8.4g} | {total['beam_best'][k] / n:<8.4g} -> "
                   f"{total['after'][k] / n:<8.4g}" for k in keys)
    print(f"{'line-weighted':18} {n:>5} {row}")
    for name, r in results.items():
        for i, (a, b) in enumerate(zip(r["before"]["texts"], r["after"]["texts"], strict=True)):
            if a != b:
                print(f"  {name} line {i}: {a!r} -> {b!r}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
