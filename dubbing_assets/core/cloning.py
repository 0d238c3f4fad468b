"""Two-pass voice cloning (high mode).

Pass 1, once per character (`pick_references`, `prepare_character`): choose
clean reference speech from the episode's dialogue stem: the character's own
lines, cut away from any overlap with other speakers' lines, not clipped,
with an SNR estimate above a threshold, best first, until there are enough
seconds (default >= 6 s). The references give the cloning engine's
conditioning (XTTS v2: GPT latents + speaker embedding, computed once and
kept in the encrypted character store as ``Character.extra["xtts"]``) and a
Resemblyzer reference embedding for the check below.

Pass 2, per line (`VerifiedCloneEngine`, a `TTSEngine` that `fit_lines` can
use as it is): synthesize with the character's conditioning; embed the result
with Resemblyzer; when its cosine similarity to the character's reference is
under the threshold, try again with the next seed; when every seed fails (or
the engine raises), speak the line with the low-mode (Piper) voice instead.
Every decision is recorded (`LineOutcome`) for the QA report.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.audio_io import as_mono16k
from dubbing_assets.core.contracts import Voice
from dubbing_assets.core.tts import SynthResult, TTSEngine
from dubbing_assets.errors import DubbingError, EngineError, ModelNotFoundError, ToolNotFoundError

SAMPLE_RATE = 16000
#: Reference speech wanted per character (XTTS clones well from 6-15 s).
MIN_REFERENCE_S = 6.0
MAX_REFERENCE_S = 15.0
#: Lines shorter than this (after removing overlaps) are not used as references.
MIN_SPAN_S = 1.0
#: Minimum SNR estimate (dB) of a reference span against the stem's noise floor.
MIN_SNR_DB = 12.0
#: Samples at or above this magnitude count as clipped; spans with more than MAX_CLIPPED are rejected.
#: (Normal speech at -20 dBFS RMS can touch full scale on a few peaks: 0.1-0.2 % of samples on the
#: fixtures; audibly clipped speech has several per cent.)
CLIP_LEVEL = 0.985
MAX_CLIPPED = 0.005
#: Resemblyzer cosine similarity (synthesized line vs character reference) a clone must reach.
MIN_SIMILARITY = 0.70
#: Seeds tried per line before falling back to the low-mode voice.
DEFAULT_SEEDS = (0, 1, 2)


# --------------------------------------------------------------------------------------------
# pass 1: reference picking


@dataclass
class ReferenceSpan:
    """One candidate reference: a character's line (minus overlaps) and how clean it is."""

    line: int
    start: float
    end: float
    snr_db: float
    clipped: float  # fraction of samples at or above CLIP_LEVEL
    overlap_s: float  # seconds removed because another speaker's line overlapped
    chosen: bool = False
    rejected: str | None = None

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass
class ReferenceChoice:
    """Pass 1's answer for one character, with every candidate and why it was or was not used."""

    speaker: str
    spans: list[tuple[float, float]]
    seconds: float
    enough: bool
    noise_floor_db: float
    candidates: list[ReferenceSpan] = field(default_factory=list)
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spans"] = [list(s) for s in self.spans]
        return data


def _field(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, Mapping) else getattr(item, name)


def _lines(script_lines: Sequence[Any]) -> list[tuple[int, float, float, str]]:
    """(index, start, end, speaker) of `Line`s, `TranslatedLine`s or dicts with those keys."""
    out = []
    for k, item in enumerate(script_lines):
        has_index = ("index" in item) if isinstance(item, Mapping) else hasattr(item, "index")
        index = _field(item, "index") if has_index else k
        out.append((int(index), float(_field(item, "start")), float(_field(item, "end")),
                    str(_field(item, "speaker"))))
    return out


def _subtract(span: tuple[float, float], others: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Pieces of `span` not covered by any of `others`."""
    pieces = [span]
    for a, b in others:
        nxt = []
        for s, e in pieces:
            if b <= s or a >= e:
                nxt.append((s, e))
                continue
            if a > s:
                nxt.append((s, a))
            if b < e:
                nxt.append((b, e))
        pieces = nxt
    return pieces


def _frame_power(audio: np.ndarray, frame: int) -> np.ndarray:
    n = audio.size // frame
    if n == 0:
        return np.zeros(0)
    return (audio[: n * frame].reshape(n, frame).astype(np.float64) ** 2).mean(axis=1)


def noise_floor(audio: np.ndarray, lines: Sequence[tuple[float, float]], *, sample_rate: int = SAMPLE_RATE,
                margin_s: float = 0.15) -> float:
    """Noise power of the stem: median 20 ms frame power outside every line (plus a margin).

    Where the gaps are too short (< 0.5 s in all), the 10th percentile of all
    frames is used instead.
    """
    frame = int(0.02 * sample_rate)
    mask = np.ones(audio.size, dtype=bool)
    for a, b in lines:
        mask[max(0, int((a - margin_s) * sample_rate)): max(0, int((b + margin_s) * sample_rate))] = False
    gaps = audio[mask]
    power = _frame_power(gaps, frame) if gaps.size >= 0.5 * sample_rate else np.zeros(0)
    if power.size == 0:
        power = np.percentile(_frame_power(audio, frame), 10, keepdims=True) if audio.size >= frame else np.ones(1)
        return float(max(power[0], 1e-12))
    return float(max(np.median(power), 1e-12))


def select_references(
    dialogue_wav: str | Path | np.ndarray,
    script_lines: Sequence[Any],
    speaker: str,
    *,
    min_total_s: float = MIN_REFERENCE_S,
    max_total_s: float = MAX_REFERENCE_S,
    min_span_s: float = MIN_SPAN_S,
    min_snr_db: float = MIN_SNR_DB,
    max_clipped: float = MAX_CLIPPED,
) -> ReferenceChoice:
    """Pass 1 for one speaker, with the reasons (see `pick_references` for the rules).

    `dialogue_wav` is the dialogue stem (a path, or 16 kHz mono samples);
    `script_lines` carry ``start``, ``end`` and ``speaker`` (seconds, file timeline).
    When fewer than `min_total_s` clean seconds exist, the clean ones are
    still returned with ``enough=False`` and a note, so the caller decides.
    """
    audio = as_mono16k(dialogue_wav)
    lines = _lines(script_lines)
    floor = noise_floor(audio, [(a, b) for _, a, b, _ in lines])
    floor_db = 10 * np.log10(floor)
    frame = int(0.02 * SAMPLE_RATE)
    candidates: list[ReferenceSpan] = []
    for index, start, end, who in lines:
        if who != speaker:
            continue
        others = [(a, b) for i, a, b, s in lines if s != speaker and i != index]
        pieces = _subtract((start, end), others)
        kept = max(pieces, key=lambda p: p[1] - p[0]) if pieces else (start, start)
        overlap = round((end - start) - sum(b - a for a, b in pieces), 3)
        clip = audio[int(kept[0] * SAMPLE_RATE): int(kept[1] * SAMPLE_RATE)]
        power = _frame_power(clip, frame)
        if power.size:
            active = power[power >= np.percentile(power, 50)]  # the voiced half of the span
            # noise under this line: the quietest frames of the span (pauses between words),
            # never less than the stem's floor between lines
            noise = max(floor, float(np.percentile(power, 10)))
            snr = float(10 * np.log10(max(active.mean(), 1e-12) / noise))
        else:
            snr = float("-inf")
        clipped = float(np.mean(np.abs(clip) >= CLIP_LEVEL)) if clip.size else 0.0
        cand = ReferenceSpan(index, round(kept[0], 3), round(kept[1], 3), round(snr, 2), clipped, overlap)
        if kept[0] >= audio.size / SAMPLE_RATE:
            cand.rejected = "outside the audio"
        elif cand.seconds < min_span_s:
            cand.rejected = (f"too short after removing overlap ({cand.seconds:.2f} s)" if overlap > 0
                             else f"too short ({cand.seconds:.2f} s)")
        elif clipped > max_clipped:
            cand.rejected = f"clipped ({clipped:.2%} of samples)"
        elif snr < min_snr_db:
            cand.rejected = f"noisy (SNR {snr:.1f} dB < {min_snr_db:.1f} dB)"
        candidates.append(cand)
    usable = sorted((c for c in candidates if c.rejected is None),
                    key=lambda c: (min(c.snr_db, 40.0) + 4.0 * min(c.seconds, 6.0), -c.overlap_s), reverse=True)
    total = 0.0
    for cand in usable:
        if total >= max_total_s:
            cand.rejected = "not needed (enough seconds already)"
            continue
        cand.chosen = True
        total += cand.seconds
    chosen = sorted((c for c in candidates if c.chosen), key=lambda c: c.start)
    enough = total >= min_total_s
    note = None
    if not candidates:
        note = f"speaker {speaker!r} has no lines"
    elif not enough:
        note = f"only {total:.1f} s of clean reference speech (< {min_total_s:.1f} s wanted)"
    return ReferenceChoice(speaker, [(c.start, c.end) for c in chosen], round(total, 3), enough,
                           round(float(floor_db), 2), candidates, note)


def pick_references(
    dialogue_wav: str | Path | np.ndarray, script_lines: Sequence[Any], speaker: str, **kw: Any
) -> list[tuple[float, float]]:
    """Pass 1: clean reference spans ``(start, end)`` in seconds for `speaker`, in time order.

    A span is one of the speaker's lines with any part overlapped by another
    speaker's line removed (the longest remaining piece is kept); it is used
    only when it is at least `min_span_s` long, has at most `max_clipped` of
    its samples clipped, and its SNR estimate (its louder half of 20 ms frames
    against the larger of its own quietest 10 % and the stem's floor between
    lines) is at least `min_snr_db`. The cleanest
    and longest come first, until `max_total_s`; fewer than `min_total_s`
    seconds is allowed (see `select_references` for the reasons and flag).
    """
    return select_references(dialogue_wav, script_lines, speaker, **kw).spans


def cut_references(dialogue_wav: str | Path, spans: Sequence[tuple[float, float]], out_dir: Path, *,
                   sample_rate: int = 24000) -> list[Path]:
    """Cut each span of the stem into its own mono WAV (ffmpeg, disk to disk) for the cloning engine."""
    from dubbing_assets.core.ffmpeg import run_ffmpeg

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (a, b) in enumerate(spans):
        out = out_dir / f"ref-{k:02d}.wav"
        run_ffmpeg(["-ss", f"{a:.3f}", "-to", f"{b:.3f}", "-i", dialogue_wav, "-map", "0:a:0", "-ac", "1",
                    "-ar", str(sample_rate), "-c:a", "pcm_s16le", out], what="cutting a reference clip")
        paths.append(out)
    return paths


def reference_embedding(dialogue_wav: str | Path | np.ndarray, spans: Sequence[tuple[float, float]]) -> list[float]:
    """The character's Resemblyzer reference: mean of the spans' embeddings, L2-normalised."""
    from dubbing_assets.core.diarize import embed_span

    audio = as_mono16k(dialogue_wav)
    vecs = [embed_span(audio, a, b) for a, b in spans]
    if not vecs:
        return []
    mean = np.mean(np.stack(vecs), axis=0)
    norm = float(np.linalg.norm(mean))
    return [float(v) for v in (mean / norm if norm > 0 else mean)]


@dataclass
class CharacterCloning:
    """What pass 1 keeps for one character (goes into ``Character.extra["xtts"]``, encrypted)."""

    speaker: str
    references: ReferenceChoice
    latents: dict[str, Any] | None  # the engine's conditioning, JSON-friendly
    reference_embedding: list[float]
    engine_version: str
    note: str | None = None

    def to_store(self) -> dict[str, Any]:
        return {"latents": self.latents, "reference_embedding": self.reference_embedding,
                "spans": [list(s) for s in self.references.spans], "seconds": self.references.seconds,
                "enough": self.references.enough, "engine_version": self.engine_version, "note": self.note}

    def voice(self, fallback: Voice, *, language: str = "en", model: str = "xtts-v2") -> Voice:
        """The high-mode `Voice` of this character; `fallback` is its low-mode (Piper) voice."""
        return clone_voice(self.to_store(), fallback, language=language, model=model)


def clone_voice(stored: Mapping[str, Any], fallback: Voice, *, language: str = "en", model: str = "xtts-v2") -> Voice:
    """A cloning `Voice` from ``Character.extra["xtts"]`` (see `CharacterCloning.to_store`)."""
    return Voice(engine="xtts", voice=model, settings={
        "xtts_latents": stored.get("latents"), "reference_embedding": list(stored.get("reference_embedding") or []),
        "language": language, "fallback_voice": asdict(fallback)})


def fallback_voice(voice: Voice) -> Voice | None:
    """The low-mode `Voice` a cloning voice keeps in its settings (`clone_voice`); None for other voices."""
    data = (voice.settings or {}).get("fallback_voice")
    if not data:
        return None
    return Voice.from_dict(data)


def prepare_character(
    engine: Any,
    dialogue_wav: str | Path,
    script_lines: Sequence[Any],
    speaker: str,
    work_dir: Path,
    **pick: Any,
) -> CharacterCloning:
    """Pass 1 for one character: pick references, cut them, compute conditioning and reference embedding.

    `engine` needs ``conditioning(list_of_wavs) -> dict`` (`XTTSEngine`). With
    no usable reference at all, ``latents`` is None and the note says why:
    that character then gets its low-mode voice for every line.
    """
    choice = select_references(dialogue_wav, script_lines, speaker, **pick)
    version = str(getattr(engine, "version", ""))
    if not choice.spans:
        return CharacterCloning(speaker, choice, None, [], version,
                                note=choice.note or "no clean reference speech")
    wavs = cut_references(dialogue_wav, choice.spans, Path(work_dir) / _safe(speaker))
    latents = engine.conditioning(wavs)
    return CharacterCloning(speaker, choice, latents, reference_embedding(dialogue_wav, choice.spans), version,
                            note=choice.note)


def _safe(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# pass 2: verified synthesis


@dataclass
class LineOutcome:
    """How one line was finally spoken (for QA)."""

    text: str
    speaker_voice: str
    engine: str  # the engine that produced the kept audio
    seed: int | None
    similarity: float | None
    attempts: list[dict[str, Any]]
    fallback_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resemblyzer_similarity(wav: Path, reference: Sequence[float]) -> float:
    """Cosine similarity of the Resemblyzer embedding of `wav` to `reference` (L2-normalised)."""
    from dubbing_assets.core.audio_io import load_audio_mono16k
    from dubbing_assets.core.diarize import embed_span

    audio = load_audio_mono16k(wav)
    emb = embed_span(audio, 0.0, audio.size / SAMPLE_RATE)
    ref = np.asarray(reference, dtype=np.float32)
    denom = float(np.linalg.norm(emb) * np.linalg.norm(ref))
    return float(emb @ ref / denom) if denom > 0 else 0.0


class VerifiedCloneEngine:
    """A `TTSEngine` over a cloning engine that checks each line and falls back (pass 2).

    `voice.settings` of a cloning voice: ``reference_embedding`` (Resemblyzer,
    256 floats), ``fallback_voice`` (a low-mode `Voice` as a dict) and the
    primary engine's own settings (``xtts_latents``, ``language``). Voices of
    any other engine go to `fallback` as they are.

    A line is tried with each of `seeds` (passed as ``settings["seed"]``);
    the first whose similarity reaches `threshold` is kept. A line whose
    synthesis raises (`EngineError`, e.g. out of GPU memory after the engine's
    own retries) tries the next seed; a missing model or package is raised,
    not hidden behind the fallback. The choice is
    remembered per (voice, text), so the timing fit's re-renders at another
    rate reuse the seed (or the fallback) without re-checking. `outcomes`
    holds one `LineOutcome` per (voice, text).
    """

    def __init__(
        self,
        primary: TTSEngine,
        fallback: TTSEngine,
        *,
        threshold: float = MIN_SIMILARITY,
        seeds: Sequence[int] = DEFAULT_SEEDS,
        similarity: Callable[[Path, Sequence[float]], float] = resemblyzer_similarity,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.name = f"{primary.name}+verify"
        self.threshold = float(threshold)
        self.seeds = tuple(int(s) for s in seeds) or (0,)
        self.similarity = similarity
        self.outcomes: dict[str, LineOutcome] = {}
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return (f"{self.primary.version} | verify {self.threshold:.3f} seeds {list(self.seeds)} | "
                f"fallback {self.fallback.version}")

    def identity_for(self, voice: Voice) -> tuple[str, str]:
        """As `version`, but with the fallback at the version of this voice's own fallback voice: a low-mode
        voice added to the bank leaves cloned lines cached (see `tts.identity_of`)."""
        from dubbing_assets.core.tts import identity_of

        fb = fallback_voice(voice) or (voice if voice.engine != self.primary.name else None)
        fallback = " ".join(identity_of(self.fallback, fb)) if fb is not None else self.fallback.version
        return self.name, (f"{self.primary.version} | verify {self.threshold:.3f} seeds {list(self.seeds)} | "
                           f"fallback {fallback}")

    def voices(self) -> list[str]:
        return self.primary.voices()

    @staticmethod
    def _key(text: str, voice: Voice) -> str:
        settings = {k: v for k, v in (voice.settings or {}).items() if k != "xtts_latents"}
        latents = (voice.settings or {}).get("xtts_latents")
        blob = json.dumps([text, voice.engine, voice.voice, settings, latents is not None and
                           hashlib.sha256(json.dumps(latents, sort_keys=True).encode()).hexdigest()],
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def outcome(self, text: str, voice: Voice) -> LineOutcome | None:
        return self.outcomes.get(self._key(text, voice))

    def _fallback(self, text: str, voice: Voice, out_wav: Path, rate: float) -> SynthResult:
        fb = fallback_voice(voice)
        if fb is None:
            raise EngineError(f"Line {text[:40]!r}: cloning failed and the voice has no fallback_voice.")
        return self.fallback.synthesize(text, fb, out_wav, rate=rate)

    def synthesize(self, text: str, voice: Voice, out_wav: Path, *, rate: float = 1.0) -> SynthResult:
        out_wav = Path(out_wav)
        if voice.engine != self.primary.name:
            return self.fallback.synthesize(text, voice, out_wav, rate=rate)
        key = self._key(text, voice)
        with self._lock:
            known = self.outcomes.get(key)
        if known is not None:
            if known.fallback_reason is not None:
                return self._fallback(text, voice, out_wav, rate)
            return self.primary.synthesize(text, _seeded(voice, known.seed), out_wav, rate=rate)
        settings = voice.settings or {}
        reference = settings.get("reference_embedding") or []
        attempts: list[dict[str, Any]] = []
        reason: str | None = None
        if not settings.get("xtts_latents") and not settings.get("reference_wav"):
            reason = "no conditioning for this character (no clean reference speech)"
        else:
            for seed in self.seeds:
                try:
                    result = self.primary.synthesize(text, _seeded(voice, seed), out_wav, rate=rate)
                except (ModelNotFoundError, ToolNotFoundError):
                    raise  # set-up problems are the user's to fix, not a reason to degrade every line
                except (DubbingError, RuntimeError) as exc:
                    attempts.append({"seed": seed, "error": str(exc)[:300]})
                    continue
                sim = float(self.similarity(result.path, reference)) if reference else None
                attempts.append({"seed": seed, "similarity": None if sim is None else round(sim, 4)})
                if sim is None or sim >= self.threshold:
                    outcome = LineOutcome(text, voice.voice, self.primary.name, seed, sim, attempts)
                    with self._lock:
                        self.outcomes[key] = outcome
                    return result
            best = max((a["similarity"] for a in attempts if a.get("similarity") is not None), default=None)
            errors = [a for a in attempts if "error" in a]
            if best is None and errors:
                reason = f"{self.primary.name} failed on every seed: {errors[-1]['error']}"
            else:
                reason = (f"voice similarity {best:.3f} < {self.threshold:.3f} after {len(self.seeds)} seeds"
                          if best is not None else "no similarity measured")
        result = self._fallback(text, voice, out_wav, rate)
        outcome = LineOutcome(text, voice.voice, self.fallback.name, None, None, attempts, fallback_reason=reason)
        with self._lock:
            self.outcomes[key] = outcome
        return result

    def report(self) -> dict[str, Any]:
        """Summary for QA: lines cloned, lines that fell back and why."""
        outs = list(self.outcomes.values())
        return {"lines": len(outs), "cloned": sum(o.fallback_reason is None for o in outs),
                "fallback": sum(o.fallback_reason is not None for o in outs),
                "retried": sum(len(o.attempts) > 1 for o in outs),
                "details": [o.to_dict() for o in outs]}


def _seeded(voice: Voice, seed: int | None) -> Voice:
    return replace(voice, settings={**(voice.settings or {}), "seed": seed})
