"""Among the translations a line could have, the one that fits its slot.

A translation longer than the source line is sped up by the timing fit until
it is hard to follow, or runs into the next line; one much shorter leaves the
character's mouth moving over silence. Whisper's beam (and a CTranslate2
model's) offers other readings of most lines. Each reading gets the model's
average log-probability minus a misfit: the log ratio of its predicted
duration (`core.duration`, at the voice's natural rate) to the line's slot,
costing `OVER_WEIGHT` per unit beyond `OVER_FREE` (the timing fit speeds a
line up to 1.08x with no audible cost) and `UNDER_WEIGHT` per unit short of
the slot. Falling short costs speech overlap directly, while running over is
first absorbed by the fit; on the bench's 23 Japanese lines (bench/isochrony.py)
an under-weight of 2 raised the overlap from 0.792 to 0.821, where 1 left it
flat (0.792). A reading more than `MAX_LOGPROB_DROP` below the best reading's
log-probability is never taken, so a wrong but short sentence cannot win on
length alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from dubbing_assets.core.contracts import TranslatedLine, Translation, Voice

OVER_FREE = 1.08
OVER_WEIGHT = 3.0
UNDER_WEIGHT = 2.0
MAX_LOGPROB_DROP = 0.35


def misfit(seconds: float, slot_s: float) -> float:
    """How badly `seconds` of speech fits a slot of `slot_s`: 0 from a full slot to 1.08x over."""
    if seconds <= 0 or slot_s <= 0:
        return 0.0
    r = math.log(seconds / slot_s)
    if r > math.log(OVER_FREE):
        return OVER_WEIGHT * (r - math.log(OVER_FREE))
    return UNDER_WEIGHT * -r if r < 0 else 0.0


def score_candidates(candidates: Sequence[dict[str, Any]], slot_s: float) -> list[dict[str, Any]]:
    """The candidates ({text, logprob, seconds, ...}) with `fit` and `score`, best first; the ineligible
    (too unlikely) keep their place at the end with `eligible` False."""
    if not candidates:
        return []
    top = max(float(c["logprob"]) for c in candidates)
    scored = []
    for c in candidates:
        fit = misfit(float(c["seconds"]), slot_s)
        scored.append({**c, "fit": round(fit, 4), "score": round(float(c["logprob"]) - fit, 4),
                       "eligible": float(c["logprob"]) >= top - MAX_LOGPROB_DROP})
    return sorted(scored, key=lambda c: (not c["eligible"], -c["score"]))


def choose_line(line: TranslatedLine, slot_s: float, predict: Callable[[str], float]) -> TranslatedLine:
    """`line` with the best-scored of its alternatives as its text (the alternatives kept, scored)."""
    if len(line.alternatives) < 2:
        return line
    cands = [{**a, "seconds": round(predict(a["text"]), 3)} for a in line.alternatives]
    scored = score_candidates(cands, slot_s)
    best = scored[0]
    return replace(line, text=best["text"], alternatives=scored, slot_s=round(slot_s, 3),
                   chosen_by="best likelihood" if best["text"] == line.alternatives[0]["text"] else "fit to slot")


def duration_voice(voice: Voice) -> Voice | None:
    """The voice whose timing predicts a line's: a cloned (XTTS) voice has no phonemizer, so its low-mode
    fallback voice stands in; None when neither can be predicted."""
    from dubbing_assets.core.cloning import fallback_voice

    for candidate in (voice, fallback_voice(voice)):
        if candidate is not None and candidate.engine in ("piper", "kokoro"):
            return candidate
    return None


def fit_to_slots(translation: Translation, slots: dict[int, float],
                 predictors: dict[str, Callable[[str], float]]) -> tuple[Translation, dict[str, Any]]:
    """(the translation with each line's reading chosen, figures): `slots` by line index, `predictors`
    by speaker label (lines whose speaker has none keep their first reading)."""
    lines, scored, changed = [], 0, 0
    for line in translation.lines:
        predict = predictors.get(line.speaker)
        if predict is None or line.index not in slots or len(line.alternatives) < 2:
            lines.append(line)
            continue
        chosen = choose_line(line, slots[line.index], predict)
        scored += 1
        changed += chosen.text != line.text
        lines.append(chosen)
    return replace(translation, lines=lines), {"lines_scored_for_fit": scored, "lines_changed_for_fit": changed}


def choose_for_cast(translation: Translation, voices: Mapping[str, Voice], build_engine: Callable[[str], Any],
                    cache_dirs: Sequence[Path], *, media_end: float,
                    log: Callable[[str], None] | None = None) -> tuple[Translation, dict[str, Any]]:
    """`fit_to_slots` with each speaker's cast voice: duration models from the caches (fitted when absent),
    slots from the lines' spans (`timing.line_slots`). Figures include the worst model's leave-one-out
    error in seconds."""
    from dubbing_assets.core.duration import duration_model
    from dubbing_assets.core.timing import line_slots

    engines: dict[str, Any] = {}
    predictors: dict[str, Callable[[str], float]] = {}
    errors: list[float] = []
    for label, voice in voices.items():
        target = duration_voice(voice)
        if target is None:
            continue
        if target.engine not in engines:
            engines[target.engine] = build_engine(target.engine)
        model = duration_model(engines[target.engine], target, cache_dirs, log=log)
        predictors[label] = model.predict
        errors.append(model.loo_error_s)
    spans = line_slots([(ln.start, ln.end) for ln in translation.lines], media_end)
    slots = {ln.index: slot_end - start for ln, (start, slot_end, _) in zip(translation.lines, spans, strict=True)}
    chosen, figures = fit_to_slots(translation, slots, predictors)
    if errors:
        figures["duration_model_error_s"] = round(max(errors), 3)
    if log is not None:
        log(f"chose among {sum(len(ln.alternatives) for ln in chosen.lines)} readings of "
            f"{figures['lines_scored_for_fit']} lines: {figures['lines_changed_for_fit']} changed to fit their slots")
    return chosen, figures
