"""Speech recognition over faster-whisper: audio in, a timed `Script` out.

One line per whisper segment (whisper already breaks at pauses and sentence
ends), with word timestamps kept for the timing fit downstream. Whisper's
segment edges drift into the silence around speech by a few hundred ms, so
each line's start/end is then snapped to Silero VAD speech edges when they are
close (``refine_with_vad``): the dub is placed where the original voice is.

Model choice ("auto"): tiny.en for English, multilingual base otherwise,
both resolved by the model registry (offline packages first). Models load on
first use and stay loaded for the life of the `Transcriber`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.audio_io import as_mono16k
from dubbing_assets.core.contracts import Line, Script, Word
from dubbing_assets.core.device import ctranslate2_device
from dubbing_assets.core.models import ModelRegistry
from dubbing_assets.errors import ConfigError, EngineError

SAMPLE_RATE = 16000
UNKNOWN_SPEAKER = "unknown"


@dataclass(frozen=True)
class AsrOptions:
    """Decoding options, in one place (mirrors faster-whisper's own options tuple)."""

    beam_size: int = 5
    vad_filter: bool = True
    vad_min_silence_ms: int = 500
    word_timestamps: bool = True
    condition_on_previous_text: bool = True
    refine_with_vad: bool = True
    #: A line edge moves to a VAD speech edge only when it is at most this far.
    refine_max_shift_s: float = 0.6


#: A speech region overlapping a line by no more than this, or by less than a quarter of the region, is
#: not the line's own (VAD frames are 32 ms; a neighbour's region can run two frames into the line).
GRAZE_S = 0.05


def _own(region: tuple[float, float], start: float, end: float) -> bool:
    overlap = min(region[1], end) - max(region[0], start)
    return overlap > GRAZE_S and overlap >= 0.25 * (region[1] - region[0])


def refine_line_times(lines: list[Line], speech: Sequence[tuple[float, float]], *,
                      max_shift_s: float = 0.6) -> None:
    """Snap each line's start/end to nearby VAD speech edges, in place.

    Whisper tends to start a line early (in the silence before it) and to end
    it late or early by ~0.1-0.4 s. Rules: a start in silence moves forward
    to where speech begins; a start just after the beginning of a speech
    region moves back to it, unless the previous line is still speaking
    there. Ends mirror that. Shifts above ``max_shift_s`` are ignored, except
    a start in silence whose first word reaches into the speech (whisper
    stretched it back across the pause), and a line never crosses its
    neighbours.
    """
    if not speech:
        return
    regions = sorted(speech)
    for i, line in enumerate(lines):
        prev_end = lines[i - 1].end if i > 0 else 0.0
        next_start = lines[i + 1].start if i + 1 < len(lines) else float("inf")
        # a region the line only grazes (whisper closes the pause: this line starts where the last one ended,
        # and that one's speech region ends a frame or two later) is the neighbour's speech, not this line's
        inside = [r for r in regions if _own(r, line.start, line.end)]
        if not inside:
            continue
        first, last = inside[0], inside[-1]
        start, end = line.start, line.end
        # a first word that reaches into the line's first speech region was stretched back across the pause
        # (whisper starts a line where the last one ended): that speech is where the line starts, however long
        # the pause
        first_word_reaches = bool(line.words) and line.words[0].end >= first[0]
        if first[0] > start and (first[0] - start <= max_shift_s or first_word_reaches):
            start = first[0]  # started in silence
        elif first[0] <= start and start - first[0] <= max_shift_s and first[0] >= prev_end:
            start = first[0]  # started late inside speech that belongs to this line
        if last[1] < end and end - last[1] <= max_shift_s:
            end = last[1]  # ran on into silence
        elif last[1] >= end and last[1] - end <= max_shift_s and last[1] <= next_start:
            end = last[1]  # stopped before the voice did
        if line.words:
            start = min(start, line.words[0].end)
            end = max(end, line.words[-1].start)
        if end > start:
            line.start, line.end = round(start, 3), round(end, 3)


#: WhisperModels loaded in this process, by (folder, device, compute type, threads).
_LOADED: dict[tuple[str, str, str, int], Any] = {}


class Transcriber:
    """faster-whisper with VAD, word timestamps and language detection.

    ``model`` is "auto" (tiny.en for English, base otherwise), a registry
    name ("whisper-base"), or a model folder. ``transcribe`` returns a
    `Script` whose ``meta`` records the model, language and its probability.
    """

    def __init__(self, model: str = "auto", *, registry: ModelRegistry | None = None, device: str = "auto",
                 compute_type: str | None = None, cpu_threads: int = 0,
                 options: AsrOptions | None = None) -> None:
        self.model = model or "auto"
        self._registry = registry
        self.device, self.compute_type = ctranslate2_device(device, compute_type)
        self.cpu_threads = cpu_threads
        self.options = options or AsrOptions()
        self._models: dict[str, Any] = {}
        self._load_s = 0.0  # time spent loading models, reported apart from decoding

    # -- models --------------------------------------------------------------
    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            from dubbing_assets.core.settings import load_settings

            self._registry = ModelRegistry.from_settings(load_settings())
        return self._registry

    def model_name_for(self, language: str | None, task: str = "transcribe") -> str:
        """Which model serves this language/task (English-only models cannot translate)."""
        if self.model != "auto":
            return self.model
        if language == "en" and task == "transcribe":
            return "whisper-tiny.en"
        return "whisper-base"

    def load(self, name: str) -> Any:
        """The loaded WhisperModel for ``name``: loaded once per process (a run's stages share a process
        under the in-process executor, so QA reuses the script stage's model), then reused."""
        if name not in self._models:
            started = time.perf_counter()
            path = self.registry.resolve(name)
            key = (str(path), self.device, self.compute_type, self.cpu_threads)
            if key not in _LOADED:
                from faster_whisper import WhisperModel

                try:
                    _LOADED[key] = WhisperModel(str(path), device=self.device, compute_type=self.compute_type,
                                                cpu_threads=self.cpu_threads)
                except Exception as exc:  # noqa: BLE001 - CT2 raises RuntimeError/ValueError
                    raise EngineError(f"Loading whisper model {name!r} from {path} failed ({exc}); "
                                      "check the model folder or set DUBBING_DEVICE=cpu.") from exc
            self._models[name] = _LOADED[key]
            self._load_s += time.perf_counter() - started
        return self._models[name]

    def detect_language(self, wav: str | Path | np.ndarray) -> tuple[str, float]:
        """(language, probability) from the multilingual model, on speech only."""
        audio = as_mono16k(wav)
        name = self.model if self.model != "auto" else "whisper-base"
        model = self.load(name)
        if not model.model.is_multilingual:
            return "en", 1.0
        language, prob, _ = model.detect_language(audio, vad_filter=self.options.vad_filter,
                                                  language_detection_segments=1)
        return language, float(prob)

    # -- transcription -------------------------------------------------------
    def transcribe(self, wav: str | Path | np.ndarray, *, language: str | None = None,
                   task: str = "transcribe", initial_prompt: str | None = None) -> Script:
        """Transcribe (or, with task="translate", translate to English) into a timed Script.

        ``wav`` is a media/WAV path or 16 kHz mono float audio. Speakers are
        left as "unknown" for diarization to fill.
        """
        if task not in ("transcribe", "translate"):
            raise ConfigError(f"ASR task {task!r} is not valid; use 'transcribe' or 'translate'.")
        if language is not None:  # container tags ("jpn") and engine codes ("ja") both work
            from dubbing_assets.core.media import normalize_language

            language = normalize_language(language)
        audio = as_mono16k(wav)
        duration = len(audio) / SAMPLE_RATE
        started = time.perf_counter()
        load_before = self._load_s
        detected = language is None
        prob = 1.0
        if language is None and self.model == "auto":
            language, prob = self.detect_language(audio)
        name = self.model_name_for(language, task)
        model = self.load(name)
        if task == "translate" and not model.model.is_multilingual:
            raise ConfigError(f"Model {name!r} is English-only and cannot translate; use a multilingual "
                              "model such as 'whisper-base'.")
        opts = self.options
        vad_parameters = {"min_silence_duration_ms": opts.vad_min_silence_ms} if opts.vad_filter else None
        try:
            segments, info = model.transcribe(
                audio, language=language, task=task, beam_size=opts.beam_size,
                word_timestamps=opts.word_timestamps, vad_filter=opts.vad_filter,
                vad_parameters=vad_parameters,
                condition_on_previous_text=opts.condition_on_previous_text, initial_prompt=initial_prompt,
            )
            segments = list(segments)
        except Exception as exc:  # noqa: BLE001 - decoding errors
            raise EngineError(f"Transcription with {name!r} failed: {exc}") from exc
        if detected and self.model != "auto":
            prob = float(info.language_probability)
        lines: list[Line] = []
        for seg in segments:
            text = seg.text.strip()
            if not text:
                continue
            words = [Word(start=round(float(w.start), 3), end=round(float(w.end), 3), text=w.word,
                          probability=round(float(w.probability), 4)) for w in (seg.words or [])]
            start = words[0].start if words else float(seg.start)
            end = words[-1].end if words else float(seg.end)
            lines.append(Line(index=len(lines), start=round(start, 3), end=round(end, 3),
                              speaker=UNKNOWN_SPEAKER, text=text, words=words))
        if opts.refine_with_vad and lines:
            from dubbing_assets.core.stems import vad_segments

            refine_line_times(lines, vad_segments(audio, pad_s=0.0), max_shift_s=opts.refine_max_shift_s)
        load_s = self._load_s - load_before
        elapsed = time.perf_counter() - started - load_s
        out_language = "en" if task == "translate" else (language or info.language)
        return Script(language=out_language, source="asr", lines=lines, meta={
            "engine": "faster-whisper", "model": name, "device": self.device,
            "compute_type": self.compute_type, "task": task,
            "language": info.language if task == "transcribe" else language or info.language,
            "language_probability": round(prob, 4), "language_detected": detected,
            "duration_s": round(duration, 3), "transcribe_s": round(elapsed, 3), "load_s": round(load_s, 3),
            "rtf": round(elapsed / duration, 4) if duration else None,
            "vad_filter": opts.vad_filter, "refined_with_vad": opts.refine_with_vad,
        })

    def _short_clip_model(self, language: str | None, task: str) -> tuple[str, Any]:
        name = self.model_name_for(language, task)
        model = self.load(name)
        if task == "translate" and not model.model.is_multilingual:
            raise ConfigError(f"Model {name!r} is English-only and cannot translate; use 'whisper-base'.")
        return name, model

    def text(self, audio: np.ndarray, *, language: str | None, task: str = "transcribe") -> str:
        """Plain text of a short clip (one line's audio): no VAD, no word timing.

        Used by whisper-translate on each line's span, where the clip is
        already known to hold speech.
        """
        name, model = self._short_clip_model(language, task)
        try:
            segments, _ = model.transcribe(audio.astype(np.float32, copy=False), language=language, task=task,
                                           beam_size=self.options.beam_size, vad_filter=False,
                                           condition_on_previous_text=False, without_timestamps=True)
            return " ".join(s.text.strip() for s in segments).strip()
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"Whisper {task} with {name!r} failed: {exc}") from exc

    def hypotheses(self, audio: np.ndarray, *, language: str | None, task: str = "translate",
                   beams: int = 5) -> list[tuple[str, float]]:
        """Several readings of one short clip: [(text, average log-probability per token)], unique.

        The beam's n-best, the first of them the text `text()` returns (the same features, prompt and
        options as faster-whisper's first, temperature-0 pass). Used to choose, among what whisper could
        have said, the line that fits its slot (`core.fit_choice`). No sampling: CTranslate2 seeds each
        worker thread's generator once per process, so samples differ between two calls, and a rerun
        would then change lines (and miss the line cache) for nothing.
        """
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        name, model = self._short_clip_model(language, task)
        clip = audio.astype(np.float32, copy=False)
        if language is None:
            language, _ = self.detect_language(clip)
        try:
            features = model.feature_extractor(clip)
            encoded = model.encode(pad_or_trim(features[:, :-1]))  # transcribe()'s content frames
            tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task=task, language=language)
            prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
            common = {"length_penalty": 1.0, "max_length": model.max_length, "return_scores": True,
                      "suppress_blank": True, "suppress_tokens": get_suppressed_tokens(tokenizer, [-1]),
                      "max_initial_timestamp_index": int(round(1.0 / model.time_precision))}
            result = model.model.generate(encoded, [prompt], beam_size=beams, num_hypotheses=beams, **common)[0]
        except Exception as exc:  # noqa: BLE001 - decoding errors
            raise EngineError(f"Whisper {task} with {name!r} failed: {exc}") from exc
        out: list[tuple[str, float]] = []
        seen: set[str] = set()
        for tokens, score in zip(result.sequences_ids, result.scores, strict=True):
            text = tokenizer.decode(tokens).strip()
            if not text or text.lower() in seen:
                continue
            seen.add(text.lower())
            out.append((text, round(float(score) * len(tokens) / (len(tokens) + 1), 4)))
        return out
