"""Quality checks of a rendered dub: sync, fit, intelligibility, loudness.

`build_report()` takes what the render produced (the `FitResult`s, the
translation, the mix's loudness) and, optionally, a `transcribe(path) -> str`
callable for the round-trip test (each dubbed clip transcribed and scored by
WER against the translated line). Sync is the distance between the dub's
audible onset and the source line's start: the onset is found by an energy
threshold in the placed clip (or, when a rendered dub stem is given, in that
stem around the line); the sync check looks at the worst line and at the
signed median of all lines (a bias of the whole episode). An overflow within
`THRESHOLDS["overflow_tolerance_s"]` (20 ms) is no overflow. The report has
pass/fail checks, every limit with a sentence on what it means
(`LIMIT_MEANINGS`), a Markdown rendering for people, and a timeline plot
(source vs dub lines per speaker).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.audio_io import read_mono
from dubbing_assets.core.contracts import TranslatedLine
from dubbing_assets.core.markdown import md_table
from dubbing_assets.core.timing import FitResult

#: Default limits; `build_report(thresholds=...)` overrides any of them.
THRESHOLDS: dict[str, float] = {
    "max_abs_sync_ms": 120.0,  # dub onset vs source line start, worst line
    "max_abs_median_sync_ms": 45.0,  # signed median of those offsets: a bias of the whole episode
    "overflow_tolerance_s": 0.020,  # seconds past the next line's start that do not count as overflow
    "max_speed": 1.15 * 1.25,  # rate x stretch
    "max_mean_wer": 0.35,  # round-trip ASR of the dub vs the translated text
    "loudness_tolerance_lu": 1.0,
    "max_true_peak_db": -1.0,
    "max_clipped_samples": 0,
}

#: One sentence per limit, printed with its value in every report.
LIMIT_MEANINGS: dict[str, str] = {
    "max_abs_sync_ms": "No line's dub may start more than this many ms before or after its source line; "
                       "past it that line is visibly out of step with the picture.",
    "max_abs_median_sync_ms": "The signed median of all lines' onset errors (+ = dub late) must stay within "
                              "± this many ms: a lead or lag of the whole episode is noticed even when every "
                              "line is inside the per-line limit.",
    "overflow_tolerance_s": "A line may run this many seconds past the next line's start (or the end of its "
                            "slot) before it counts as an overflow; less is inaudible "
                            "(DUBBING_QA_OVERFLOW_TOLERANCE_MS, default 20 ms).",
    "max_speed": "The largest speed-up (TTS rate x pitch-kept stretch) a line may need; beyond it speech "
                 "sounds hurried.",
    "max_mean_wer": "Word error rate of ASR on the dub against the translated lines, all lines together; "
                    "above it listeners miss words.",
    "loudness_tolerance_lu": "How far (LU) the mix's integrated loudness may be from the target; broadcast "
                             "specifications (EBU R128) allow ± 1 LU.",
    "max_true_peak_db": "The highest true peak (dBTP, 4x oversampled) the mix may reach; above it lossy "
                        "encoding and playback clip.",
    "max_clipped_samples": "How many samples of the mix may reach full scale (audible clicks).",
}


@dataclass
class LineQA:
    index: int
    speaker: str
    source_start: float
    source_end: float
    dub_start: float
    dub_end: float
    dub_onset: float | None
    sync_offset_ms: float | None
    rate: float
    stretch: float
    speed: float
    borrowed_s: float
    overflow_s: float
    text: str
    asr_text: str | None = None
    wer: float | None = None


@dataclass
class Check:
    name: str
    passed: bool
    value: float | None
    limit: float | str | None
    message: str


@dataclass
class QAReport:
    lines: list[LineQA]
    checks: list[Check]
    loudness: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=lambda: dict(THRESHOLDS))

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data

    def to_markdown(self, *, title: str = "Dub QA", plot_png: str | None = None, dialogue: bool = True) -> str:
        """The report as Markdown; `dialogue=False` leaves the lines' words out (for event metadata, which
        every user of the Dagster instance can read) and keeps their figures."""
        verdict = "PASSED" if self.passed else "FAILED"
        out = [f"# {title}: {verdict}", ""]
        out += ["| check | result | value | limit | note |", "|---|---|---|---|---|"]
        for c in self.checks:
            value = "n/a" if c.value is None else f"{c.value:.3g}"
            out.append(
                f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {value} | {c.limit} | {c.message} |"
            )
        out += ["", "## Limits", "", "| limit | value | what it means |", "|---|---|---|"]
        for name, value in self.limits.items():
            out.append(f"| {name} | {value:.4g} | {LIMIT_MEANINGS.get(name, '')} |")
        out += [
            "",
            "## Lines",
            "",
            "| # | speaker | source start | dub onset | sync ms | speed | borrowed s | overflow s | WER "
            "| text |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for ln in self.lines:
            sync = "n/a" if ln.sync_offset_ms is None else f"{ln.sync_offset_ms:+.0f}"
            onset = "n/a" if ln.dub_onset is None else f"{ln.dub_onset:.3f}"
            wer = "n/a" if ln.wer is None else f"{ln.wer:.2f}"
            text = ln.text.replace("|", "/") if dialogue else "(hidden)"
            if ln.asr_text is not None and dialogue:
                text += f" <br>ASR: {ln.asr_text.replace('|', '/')}"
            out.append(
                f"| {ln.index} | {ln.speaker} | {ln.source_start:.3f} | {onset} | {sync} | {ln.speed:.3f} "
                f"| {ln.borrowed_s:.2f} | {ln.overflow_s:.2f} | {wer} | {text} |"
            )
        iso = {k: self.summary.get(k) for k in ISOCHRONY_MEANINGS if k in self.summary}
        if iso:
            out += ["", "## Isochrony", "", "| figure | value | what it means |", "|---|---|---|"]
            out += [f"| {k} | {'n/a' if v is None else f'{v:.4g}'} | {ISOCHRONY_MEANINGS[k]} |" for k, v in iso.items()]
        if self.loudness:
            out += ["", "## Loudness", ""]
            out += [f"- {k}: {v}" for k, v in self.loudness.items()]
        if plot_png:
            out += ["", f"![timeline]({plot_png})"]
        return "\n".join(out) + "\n"

    def plot_timeline(self, out_png: Path | str, *, title: str = "Source vs dub") -> Path:
        """A PNG with one row pair per speaker: source lines (grey) above dub lines (blue; red = overflow
        beyond the tolerance)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        speakers = list(dict.fromkeys(ln.speaker for ln in self.lines)) or ["-"]
        fig, ax = plt.subplots(figsize=(10, 0.8 + 0.7 * len(speakers)), dpi=100)
        try:
            for row, spk in enumerate(speakers):
                y = (len(speakers) - 1 - row) * 2
                for ln in (x for x in self.lines if x.speaker == spk):
                    ax.broken_barh(
                        [(ln.source_start, ln.source_end - ln.source_start)],
                        (y + 1.05, 0.8),
                        facecolors="0.6",
                    )
                    overflowing = ln.overflow_s > self.limits.get("overflow_tolerance_s", 0.0)
                    colour = "tab:red" if overflowing else "tab:blue"
                    ax.broken_barh(
                        [(ln.dub_start, ln.dub_end - ln.dub_start)], (y + 0.15, 0.8), facecolors=colour
                    )
                    ax.text(ln.source_start, y + 1.45, str(ln.index), fontsize=7, va="center")
            ax.set_yticks([(len(speakers) - 1 - r) * 2 + 1 for r in range(len(speakers))])
            ax.set_yticklabels([f"{s}\nsource/dub" for s in speakers], fontsize=8)
            ax.set_xlabel("seconds")
            ax.set_title(title, fontsize=10)
            ax.grid(axis="x", alpha=0.3)
            fig.tight_layout()
            out_png = Path(out_png)
            out_png.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out_png)
        finally:
            plt.close(fig)
        return out_png


# --------------------------------------------------------------------------------------------
# measurements


def detect_onset(
    audio: np.ndarray,
    sample_rate: int,
    *,
    threshold_db: float = -40.0,
    frame_s: float = 0.005,
    relative_db: float | None = -30.0,
) -> float | None:
    """Seconds to the first frame whose RMS is above the threshold, or None if never.

    The threshold is `threshold_db` dBFS, raised to `relative_db` below the
    clip's loudest frame when that is higher (so a quiet background does not
    trigger it).
    """
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    frame = max(1, int(frame_s * sample_rate))
    count = audio.size // frame
    if count == 0:
        return None
    rms = np.sqrt(np.mean(np.square(audio[: count * frame].reshape(count, frame)), axis=1))
    level = 20 * np.log10(np.maximum(rms, 1e-12))
    threshold = threshold_db
    if relative_db is not None:
        threshold = max(threshold, float(level.max()) + relative_db)
    above = np.flatnonzero(level >= threshold)
    if above.size == 0:
        return None
    # refine to the first sample above the threshold amplitude within that frame
    first = int(above[0]) * frame
    amp = 10 ** (threshold / 20)
    inside = np.flatnonzero(np.abs(audio[first : first + frame]) >= amp)
    return (first + (int(inside[0]) if inside.size else 0)) / sample_rate


def _wer(ref: str, hyp: str) -> float:
    from dubbing_assets.core.metrics import wer

    return float(wer(ref, hyp))


def _corpus_wer(lines: Sequence[LineQA]) -> float | None:
    from dubbing_assets.core.metrics import word_errors

    scored = [word_errors(ln.text, ln.asr_text) for ln in lines if ln.asr_text is not None and ln.text.strip()]
    words = sum(n for _, n in scored)
    return sum(e for e, _ in scored) / words if words else None


def _onset(fit: FitResult, stem: tuple[np.ndarray, int] | None, previous_end: float) -> float | None:
    """Where the line's speech starts (seconds, file timeline): in the rendered dub track when given,
    else in the line's own clip."""
    if stem is None:
        audio, sr = read_mono(fit.path)
        rel = detect_onset(audio, sr)
        return None if rel is None else fit.start + rel
    audio, sr = stem
    # search from 0.5 s before the line, but not inside the previous line (unless they overlap)
    window_start = max(fit.start - 0.5, previous_end if previous_end <= fit.start else fit.start)
    lo = max(0, int(window_start * sr))
    hi = min(audio.size, int((fit.start + fit.duration) * sr))
    rel = detect_onset(audio[lo:hi], sr)
    return None if rel is None else lo / sr + rel


def measure_lines(fits: Sequence[FitResult], lines: Sequence[TranslatedLine], *,
                  transcribe: Callable[[Path], str] | None = None,
                  dub_stem: Path | str | None = None) -> list[LineQA]:
    """Each placed line against its source line: onset, sync offset, speed, overflow, round-trip WER."""
    by_index = {ln.index: ln for ln in lines}
    stem: tuple[np.ndarray, int] | None = read_mono(dub_stem) if dub_stem is not None else None
    out: list[LineQA] = []
    previous_end = -math.inf
    for fit in sorted(fits, key=lambda f: f.start):
        line = by_index.get(fit.index)
        text = line.text if line else ""
        onset = _onset(fit, stem, previous_end)
        previous_end = max(previous_end, fit.start + fit.duration)
        source_start = line.start if line else fit.start
        asr_text = transcribe(Path(fit.path)) if transcribe is not None and text.strip() else None
        out.append(LineQA(
            index=fit.index, speaker=line.speaker if line else "?", source_start=source_start,
            source_end=line.end if line else fit.slot_end, dub_start=fit.start, dub_end=fit.start + fit.duration,
            dub_onset=None if onset is None else round(onset, 4),
            sync_offset_ms=None if onset is None else round((onset - source_start) * 1000, 1),
            rate=fit.rate, stretch=fit.stretch, speed=round(fit.rate * fit.stretch, 4), borrowed_s=fit.borrowed_s,
            overflow_s=fit.overflow_s, text=text, asr_text=asr_text,
            wer=None if asr_text is None else round(_wer(text, asr_text), 4)))
    return out


def _sync_check(out: Sequence[LineQA], limits: Mapping[str, float]) -> tuple[Check, dict[str, Any]]:
    signed = [ln.sync_offset_ms for ln in out if ln.sync_offset_ms is not None]
    offsets = [abs(x) for x in signed]
    missing = [ln.index for ln in out if ln.dub_onset is None]
    worst = max(offsets) if offsets else None
    median = round(float(np.median(signed)), 1) if signed else None
    worst_line = next((ln.index for ln in out if ln.sync_offset_ms is not None
                       and abs(ln.sync_offset_ms) == worst), None)
    sync_limit, median_limit = limits["max_abs_sync_ms"], limits["max_abs_median_sync_ms"]
    check = Check(
        "sync",
        not missing and (worst is None or worst <= sync_limit) and (median is None or abs(median) <= median_limit),
        worst,
        f"worst {sync_limit:g} ms, median ± {median_limit:g} ms",
        f"largest |dub onset - source start| {worst if worst is not None else 'n/a'} ms (line {worst_line}); "
        f"signed median {'n/a' if median is None else f'{median:+.1f}'} ms (+ = dub late); "
        f"silent lines: {missing or 'none'}")
    return check, {"max_abs_sync_ms": worst,
                   "mean_abs_sync_ms": round(float(np.mean(offsets)), 1) if offsets else None,
                   "median_sync_ms": median}


def _overflow_check(out: Sequence[LineQA], tolerance: float) -> tuple[Check, dict[str, Any]]:
    overflow = max((ln.overflow_s for ln in out), default=0.0)
    over_lines = [ln.index for ln in out if ln.overflow_s > tolerance]
    below = sum(1 for ln in out if 0 < ln.overflow_s <= tolerance)
    check = Check("overflow", not over_lines, overflow, tolerance,
                  f"lines running more than {tolerance * 1000:g} ms into the next line: {over_lines or 'none'}"
                  + (f" ({below} within the tolerance)" if below else ""))
    return check, {"overflow_lines": len(over_lines), "overflow_tolerance_s": tolerance,
                   "overflow_s_total": round(sum(ln.overflow_s for ln in out), 3)}


def _loudness_checks(loud: Mapping[str, Any], target_lufs: float, limits: Mapping[str, float]) -> list[Check]:
    if not loud:
        return []
    lufs = float(loud.get("integrated_lufs", math.nan))
    peak = float(loud.get("true_peak_db", math.nan))
    clipped = int(loud.get("clipped_samples", 0))
    tol = limits["loudness_tolerance_lu"]
    return [Check("loudness", math.isfinite(lufs) and abs(lufs - target_lufs) <= tol, lufs, f"{target_lufs} ± {tol}",
                  "integrated loudness (LUFS)"),
            Check("true_peak", math.isfinite(peak) and peak <= limits["max_true_peak_db"], peak,
                  limits["max_true_peak_db"], "true peak (dBTP, 4x oversampled)"),
            Check("clipping", clipped <= limits["max_clipped_samples"], float(clipped),
                  limits["max_clipped_samples"], "samples at or above full scale")]


def build_report(
    fits: Sequence[FitResult],
    lines: Sequence[TranslatedLine],
    *,
    loudness: Mapping[str, Any] | None = None,
    target_lufs: float = -23.0,
    transcribe: Callable[[Path], str] | None = None,
    dub_stem: Path | str | None = None,
    source_stem: Path | str | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> QAReport:
    """Measure every line and the mix, and decide the checks.

    `loudness` is the mix's measurement (`MixResult.to_dict()` or
    `loudness.measure_loudness(...)`: `integrated_lufs`, `true_peak_db`,
    `clipped_samples`). `dub_stem`: the placed dub alone (mix(..., speech_wav=))
    to find onsets in the rendered track instead of in the clips.
    """
    limits = {**THRESHOLDS, **(thresholds or {})}
    out = measure_lines(fits, lines, transcribe=transcribe, dub_stem=dub_stem)
    sync, sync_figures = _sync_check(out, limits)
    overflow, overflow_figures = _overflow_check(out, limits["overflow_tolerance_s"])
    speed = max((ln.speed for ln in out), default=1.0)
    checks = [sync, overflow, Check("speed", speed <= limits["max_speed"] + 1e-6, speed,
                                    round(limits["max_speed"], 4), "largest rate x stretch")]
    wers = [ln.wer for ln in out if ln.wer is not None]
    corpus_wer = _corpus_wer(out)
    if corpus_wer is not None:
        # Word errors summed over all lines / reference words: short lines do not dominate the figure.
        checks.append(Check("intelligibility", corpus_wer <= limits["max_mean_wer"], round(corpus_wer, 4),
                            limits["max_mean_wer"],
                            "WER of ASR on the dub lines vs the translated lines (all lines together)"))
    loud = dict(loudness or {})
    checks += _loudness_checks(loud, target_lufs, limits)
    summary = {
        "lines": len(out),
        **sync_figures,
        **overflow_figures,
        "rate_changed_lines": sum(1 for ln in out if ln.rate > 1.0),
        "stretched_lines": sum(1 for ln in out if ln.stretch > 1.0),
        "borrowed_lines": sum(1 for ln in out if ln.borrowed_s > 0),
        "max_speed": speed,
        "mean_wer": round(float(np.mean(wers)), 4) if wers else None,
        "wer": round(corpus_wer, 4) if corpus_wer is not None else None,
        "integrated_lufs": loud.get("integrated_lufs"),
        "true_peak_db": loud.get("true_peak_db"),
        "clipped_samples": loud.get("clipped_samples"),
        **isochrony(out),
        **(vad_isochrony(source_stem, dub_stem) if source_stem is not None and dub_stem is not None else {}),
    }
    report = QAReport(lines=out, checks=checks, loudness=loud, summary=summary, limits=dict(limits))
    report.summary["passed"] = report.passed
    return report


#: A line spoken faster than this (TTS rate x stretch) counts as sped up in the isochrony figures.
SPED_UP = 1.1


def _union_s(spans: Sequence[tuple[float, float]]) -> float:
    total, end = 0.0, -math.inf
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def isochrony(lines: Sequence[LineQA]) -> dict[str, float | int | None]:
    """How closely the dub's speech covers the source's, in time: what a viewer sees as lips moving with
    no voice, or a voice after the lips stopped, and how hard lines had to be sped up to fit.

    Speech overlap is the intersection over union of the source lines' spans and the dub's (from each
    line's audible onset to its end), per line and over the episode; professional human dubs average
    about 0.66 (Brannon et al. 2023). The speaking-time ratio is dub seconds over source seconds.
    """
    pairs = [((ln.source_start, ln.source_end), (ln.dub_onset if ln.dub_onset is not None else ln.dub_start,
                                                 ln.dub_end)) for ln in lines]
    src = [a for a, _ in pairs if a[1] > a[0]]
    dub = [b for _, b in pairs if b[1] > b[0]]
    if not src or not dub:
        return {"speech_overlap": None, "median_line_overlap": None, "speaking_time_ratio": None,
                "sped_up_lines": 0, "sped_up_share": None, "median_speed": None, "p90_speed": None}
    both = _union_s(src) + _union_s(dub) - _union_s(src + dub)  # |A n B| = |A| + |B| - |A u B|
    per_line = [_iou(a, b) for a, b in pairs]
    speeds = np.array([ln.speed for ln in lines], dtype=float)
    sped = int(np.sum(speeds > SPED_UP + 1e-9))
    return {"speech_overlap": round(both / _union_s(src + dub), 4),
            "median_line_overlap": round(float(np.median(per_line)), 4),
            "speaking_time_ratio": round(_union_s(dub) / _union_s(src), 4),
            "sped_up_lines": sped, "sped_up_share": round(sped / len(lines), 4),
            "median_speed": round(float(np.median(speeds)), 4),
            "p90_speed": round(float(np.percentile(speeds, 90)), 4)}


#: A silence between two speech regions at least this long counts as a pause (a breath between phrases).
PAUSE_S = 0.3


def vad_isochrony(source: Path | str | np.ndarray, dub: Path | str | np.ndarray) -> dict[str, float | int | None]:
    """The same question measured on the audio, not the line spans: Silero VAD on the dialogue stem and on
    the dub-only track, their speech overlap (IoU over the episode), and how many pauses of `PAUSE_S` or
    more each has (a dub that runs a line's two phrases together, or breaks one, changes the count)."""
    from dubbing_assets.core.stems import vad_segments

    src = vad_segments(source, min_silence_s=PAUSE_S)
    dub = vad_segments(dub, min_silence_s=PAUSE_S)
    if not src or not dub:
        return {"vad_speech_overlap": None, "source_pauses": max(0, len(src) - 1), "dub_pauses": max(0, len(dub) - 1),
                "pause_count_agreement": None}
    both = _union_s(src) + _union_s(dub) - _union_s(src + dub)
    a, b = len(src) - 1, len(dub) - 1
    return {"vad_speech_overlap": round(both / _union_s(src + dub), 4), "source_pauses": a, "dub_pauses": b,
            "pause_count_agreement": round(1.0 if max(a, b) == 0 else min(a, b) / max(a, b), 4)}


ISOCHRONY_MEANINGS = {
    "speech_overlap": "intersection over union of source and dub speech over the episode (1 = the dub speaks "
                      "exactly when the original does; human dubs average about 0.66)",
    "median_line_overlap": "the same per line, median over the lines",
    "speaking_time_ratio": "seconds of dub speech over seconds of source speech",
    "sped_up_lines": f"lines spoken faster than {SPED_UP}x (TTS rate x stretch) to fit their slot",
    "sped_up_share": f"share of lines spoken faster than {SPED_UP}x",
    "median_speed": "median speed-up over the lines (1 = the voice's natural rate)",
    "p90_speed": "90th percentile of the speed-ups",
    "vad_speech_overlap": "speech overlap measured by a VAD on the dialogue stem and the dub track itself",
    "source_pauses": f"pauses of {PAUSE_S} s or more between speech in the dialogue stem (VAD)",
    "dub_pauses": "the same in the dub track",
    "pause_count_agreement": "fewer pauses over more, of the two counts (1 = the dub pauses as often as the source)",
}


#: A dub line whose voice is less similar than this to the rest of its character's lines is flagged.
CHARACTER_MIN_SIMILARITY = 0.6


def character_voices(clips: Sequence[tuple[int, str, Path | str]], *,
                     low_confidence: Sequence[int] = ()) -> dict[str, Any]:
    """Per character: how alike its dub lines sound, and how far apart the characters are.

    `clips` holds (line index, character, dub clip). Each clip gets a speaker embedding (Resemblyzer, the
    project's identity space); a line's similarity is its cosine to the mean of its character's other
    lines (None for a character's only line); distinctness is the highest cosine between two characters'
    mean voices (lower is better). Lines whose speaker attribution was unsure (`low_confidence`, from the
    diarization) are listed, so a reviewer checks them first.
    """
    from dubbing_assets.core.audio_io import load_audio_mono16k
    from dubbing_assets.core.diarize import embed_span, embed_span_dvector

    vecs: dict[int, np.ndarray] = {}
    dvecs: dict[int, np.ndarray] = {}
    who: dict[int, str] = {}
    for index, speaker, path in clips:
        audio = load_audio_mono16k(path)
        vecs[index] = embed_span(audio, 0.0, len(audio) / 16000)
        dvecs[index] = embed_span_dvector(audio, 0.0, len(audio) / 16000)
        who[index] = speaker

    def unit(v: np.ndarray) -> np.ndarray:
        n = float(np.linalg.norm(v))
        return v / n if n else v

    names = sorted(set(who.values()))
    lines = []
    for index in sorted(vecs):
        others = [vecs[j] for j in vecs if j != index and who[j] == who[index]]
        sim = float(vecs[index] @ unit(np.sum(others, axis=0))) if others else None
        lines.append({"index": index, "speaker": who[index], "similarity": None if sim is None else round(sim, 4),
                      "unlike_character": sim is not None and sim < CHARACTER_MIN_SIMILARITY,
                      "speaker_unsure": index in set(low_confidence)})
    means = {n: unit(np.sum([vecs[i] for i in vecs if who[i] == n], axis=0)) for n in names}
    pairs = [(a, b, float(means[a] @ means[b])) for k, a in enumerate(names) for b in names[k + 1:]]
    closest = max(pairs, key=lambda p: p[2]) if pairs else None
    sims = [ln["similarity"] for ln in lines if ln["similarity"] is not None]
    return {"characters": names, "lines": lines,
            "closest_pair": None if closest is None else {"a": closest[0], "b": closest[1],
                                                          "similarity": round(closest[2], 4)},
            "line_similarity_min": round(min(sims), 4) if sims else None,
            "dvector": _lines_apart(dvecs, who),
            "flagged": [ln["index"] for ln in lines if ln["unlike_character"] or ln["speaker_unsure"]]}


def _lines_apart(vecs: Mapping[int, np.ndarray], who: Mapping[int, str]) -> dict[str, Any]:
    """Line against line in d-vector space, the one the diarization tells voices apart in: the most alike
    lines of two characters and the least alike lines of one (None where no such pair)."""
    across: tuple[float, int, int] | None = None
    within: tuple[float, int, int] | None = None
    keys = sorted(vecs)
    for k, i in enumerate(keys):
        for j in keys[k + 1:]:
            cos = float(vecs[i] @ vecs[j])
            if who[i] != who[j] and (across is None or cos > across[0]):
                across = (cos, i, j)
            if who[i] == who[j] and (within is None or cos < within[0]):
                within = (cos, i, j)

    def pair(found: tuple[float, int, int] | None) -> dict[str, Any] | None:
        return None if found is None else {"similarity": round(found[0], 4), "lines": [found[1], found[2]]}

    return {"two_characters_max": pair(across), "one_character_min": pair(within)}


def character_section(voices: Mapping[str, Any]) -> str:
    """The QA report's Markdown section for `character_voices`."""
    if not voices.get("lines"):
        return ""
    closest = voices.get("closest_pair")
    pair = (f"The two closest characters are {closest['a']} and {closest['b']} (cosine "
            f"{closest['similarity']:.2f} between their mean voices; lower is more distinct)."
            if closest else "One character.")
    apart = voices.get("dvector") or {}
    across, within = apart.get("two_characters_max"), apart.get("one_character_min")
    if across or within:
        pair += " Line against line in d-vectors (the space the diarization tells voices apart in):"
        pair += (f" two characters' lines at most {across['similarity']:.2f} alike (lines "
                 f"{across['lines'][0]} and {across['lines'][1]})" if across else "")
        pair += (";" if across and within else "") + (
            f" one character's lines at least {within['similarity']:.2f} (lines {within['lines'][0]} and "
            f"{within['lines'][1]})" if within else "") + "."
    rows = ["| # | character | similarity to its other lines | flag |", "|---|---|---|---|"]
    for ln in voices["lines"]:
        flag = ", ".join(f for f, on in (("unlike its character", ln["unlike_character"]),
                                         ("speaker unsure", ln["speaker_unsure"])) if on)
        sim = "" if ln["similarity"] is None else f"{ln['similarity']:.3f}"
        rows.append(f"| {ln['index']} | {ln['speaker']} | {sim} | {flag} |")
    return (f"\n\n## Characters\n\n{len(voices['characters'])} characters. {pair} A line is flagged when its "
            f"voice is less than {CHARACTER_MIN_SIMILARITY:.2f} like its character's other lines, or when the "
            "diarization was unsure who speaks it.\n\n" + "\n".join(rows) + "\n")


def cloning_section(cloning: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """High mode's part of the QA report: each line's engine and similarity, every fallback with its reason."""
    if not cloning:
        return "", {}
    rows = cloning["lines"]
    sims = [r["similarity"] for r in rows if r.get("similarity") is not None]
    meta = {"cloned_lines": cloning["cloned"], "fallback_lines": cloning["fallback"],
            "clone_threshold": cloning["threshold"],
            "clone_similarity_min": round(min(sims), 4) if sims else -1.0,
            "clone_similarity_median": round(sorted(sims)[len(sims) // 2], 4) if sims else -1.0}
    table = md_table([{"#": r["index"], "speaker": r["speaker"], "engine": r["engine"],
                       "similarity": "" if r.get("similarity") is None else f"{r['similarity']:.3f}",
                       "why not cloned": r.get("fallback_reason") or r.get("note") or ""} for r in rows],
                     ["#", "speaker", "engine", "similarity", "why not cloned"]) if rows else ""
    text = (f"\n\n## Voices (high mode)\n\n{cloning['cloned']} of {len(rows)} lines spoken by the cloned voice, "
            f"{cloning['fallback']} by the character's low-mode voice. A cloned line is kept when its speaker "
            f"similarity to the character's reference speech reaches {cloning['threshold']:.2f} "
            f"(DUBBING_CLONE_MIN_SIMILARITY) with one of the tried seeds.\n\n{table}\n")
    return text, meta
