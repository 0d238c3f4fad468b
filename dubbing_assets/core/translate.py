"""Translation engines: a `Script` in the source language to a `Translation`.

Every engine keeps the script's line structure (index, timing, speaker) and
only fills in text, so timing fit and casting downstream never depend on
which engine ran. Engines, by registered name:

* ``passthrough``: the target language is the source language.
* ``subtitles``: the episode carries subtitles in the target language;
  their events are aligned to script lines by time overlap.
* ``whisper-translate``: multilingual whisper with task="translate" on each
  line's own audio span (cut from the dialogue stem). English output only.
* ``ctranslate2``: a local opus-mt (Marian) or NLLB model converted for
  CTranslate2, with the tokenizer shipped in the same folder.

`choose_engine` implements "auto"; `apply_glossary` checks per-series terms.
A new engine is one class plus one entry point in the `dubbing_assets.translator` group (core/plugins.py).
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dubbing_assets.core.contracts import Script, TranslatedLine, Translation
from dubbing_assets.core.models import ModelRegistry
from dubbing_assets.errors import ConfigError, EngineError, ModelNotFoundError

SAMPLE_RATE = 16000


@runtime_checkable
class Translator(Protocol):
    """Translates a script; ``ctx`` carries engine inputs (audio, subtitles...)."""

    name: str

    def translate(self, script: Script, target_lang: str, **ctx: Any) -> Translation: ...


def _lang(code: str | None) -> str:
    from dubbing_assets.core.media import normalize_language

    return normalize_language(code) or (code or "und")


def _line(line: Any, text: str, speaker: str | None = None) -> TranslatedLine:
    return TranslatedLine(index=line.index, start=line.start, end=line.end, speaker=speaker or line.speaker,
                          source_text=line.text, text=text)


def _default_registry() -> ModelRegistry:
    from dubbing_assets.core.settings import load_settings

    return ModelRegistry.from_settings(load_settings())


# -- passthrough -------------------------------------------------------------

class PassthroughTranslator:
    """Same language in and out: the text is copied (re-voicing without translation)."""

    name = "passthrough"

    def translate(self, script: Script, target_lang: str, **ctx: Any) -> Translation:
        target = _lang(target_lang)
        return Translation(source_language=script.language, target_language=target, engine=self.name,
                           lines=[_line(ln, ln.text) for ln in script.lines],
                           meta={"same_language": _lang(script.language) == target})


# -- subtitles ----------------------------------------------------------------

def align_by_overlap(script: Script, events: Script, *,
                     max_gap_s: float = 0.5) -> tuple[list[list[int]], list[int]]:
    """Assign each subtitle event to the script line it overlaps most.

    Returns (event indices per line, events matched to no line). An event
    overlapping no line goes to the nearest line within ``max_gap_s``;
    one farther away is unmatched (it is reported, not silently dropped).
    """
    per_line: list[list[int]] = [[] for _ in script.lines]
    unmatched: list[int] = []
    for ei, ev in enumerate(events.lines):
        best, best_overlap = None, 0.0
        for li, ln in enumerate(script.lines):
            overlap = min(ev.end, ln.end) - max(ev.start, ln.start)
            if overlap > best_overlap:
                best, best_overlap = li, overlap
        if best is None:
            gaps = [(max(ln.start - ev.end, ev.start - ln.end), li) for li, ln in enumerate(script.lines)]
            if gaps and min(gaps)[0] <= max_gap_s:
                best = min(gaps)[1]
        if best is None:
            unmatched.append(ei)
        else:
            per_line[best].append(ei)
    return per_line, unmatched


class SubtitleTranslator:
    """Uses the episode's own target-language subtitles, aligned to the script by time.

    ctx: ``subtitles`` (a subtitle file, pysubs2 object or `Script`) or
    ``media`` (the episode file: its track in the target language is used).
    Lines that no event covers get empty text and are listed in
    ``meta['unaligned_lines']`` for review.
    """

    name = "subtitles"

    def translate(self, script: Script, target_lang: str, **ctx: Any) -> Translation:
        from dubbing_assets.core.subtitles import script_from_subtitles

        target = _lang(target_lang)
        source = ctx.get("subtitles")
        if isinstance(source, Script):
            events = source
        elif source is not None:
            events = script_from_subtitles(source, target)
        elif ctx.get("media") is not None:
            events = script_from_subtitles(ctx["media"], target)
        else:
            raise ConfigError("The 'subtitles' translation engine needs subtitles= or media= with a "
                              f"{target!r} subtitle track.")
        per_line, unmatched = align_by_overlap(script, events)
        lines = []
        unaligned = []
        for ln, idxs in zip(script.lines, per_line, strict=True):
            texts = [events.lines[i].text for i in sorted(idxs, key=lambda i: events.lines[i].start)]
            actors = {events.lines[i].speaker for i in idxs} - {"unknown"}
            speaker = ln.speaker if ln.speaker != "unknown" or len(actors) != 1 else actors.pop()
            if not idxs:
                unaligned.append(ln.index)
            lines.append(_line(ln, " ".join(texts).strip(), speaker))
        return Translation(source_language=script.language, target_language=target, engine=self.name,
                           lines=lines, meta={"events": len(events.lines), "unaligned_lines": unaligned,
                                 "unmatched_events": unmatched, "origin": events.meta.get("origin")})


# -- whisper-translate -------------------------------------------------------

class WhisperTranslator:
    """Speech translation to English with multilingual whisper, line by line.

    ctx: ``audio`` (the dialogue stem: path, or 16 kHz mono floats). Each
    line's span (padded by ``pad_s``) is cut and translated on its own, so the
    English text stays attached to the right line and speaker.
    """

    name = "whisper-translate"

    def __init__(self, transcriber: Any = None, *, model: str = "whisper-base",
                 registry: ModelRegistry | None = None, device: str = "auto", pad_s: float = 0.15,
                 candidates: int = 1) -> None:
        self._transcriber = transcriber
        self.model = model
        self._registry = registry
        self.device = device
        self.pad_s = pad_s
        self.candidates = max(1, int(candidates))

    @property
    def transcriber(self) -> Any:
        if self._transcriber is None:
            from dubbing_assets.core.asr import Transcriber

            self._transcriber = Transcriber(self.model, registry=self._registry, device=self.device)
        return self._transcriber

    def translate(self, script: Script, target_lang: str, **ctx: Any) -> Translation:
        target = _lang(target_lang)
        if target != "en":
            raise ConfigError(f"whisper-translate only produces English, not {target!r}; use the "
                              "'ctranslate2' engine with a local model, or target-language subtitles.")
        audio = ctx.get("audio")
        if audio is None:
            raise ConfigError("whisper-translate needs audio= (the dialogue stem) to translate each line.")
        if not isinstance(audio, np.ndarray):
            from dubbing_assets.core.audio_io import load_audio_mono16k

            audio = load_audio_mono16k(audio)
        source = None if script.language in ("und", "") else script.language
        lines = []
        for ln in script.lines:
            a = max(0, int((ln.start - self.pad_s) * SAMPLE_RATE))
            b = min(len(audio), int((ln.end + self.pad_s) * SAMPLE_RATE))
            clip = audio[a:b]
            if not clip.size:
                lines.append(_line(ln, ""))
            elif self.candidates == 1:
                lines.append(_line(ln, self.transcriber.text(clip, language=source, task="translate")))
            else:  # the beam's n-best: the first is what text() returns
                readings = self.transcriber.hypotheses(clip, language=source, task="translate",
                                                       beams=self.candidates)
                line = _line(ln, readings[0][0] if readings else "")
                line.alternatives = [{"text": t, "logprob": lp} for t, lp in readings]
                lines.append(line)
        return Translation(source_language=script.language, target_language="en", engine=self.name,
                           lines=lines, meta={"model": self.model, "pad_s": self.pad_s,
                                              "candidates": self.candidates})


# -- ctranslate2 (opus-mt / NLLB) --------------------------------------------

_NLLB_CODES = {
    "en": "eng_Latn", "ja": "jpn_Jpan", "fr": "fra_Latn", "de": "deu_Latn", "es": "spa_Latn",
    "it": "ita_Latn", "pt": "por_Latn", "ru": "rus_Cyrl", "zh": "zho_Hans", "ko": "kor_Hang",
    "ar": "arb_Arab", "hi": "hin_Deva", "nl": "nld_Latn", "pl": "pol_Latn", "tr": "tur_Latn",
    "uk": "ukr_Cyrl", "vi": "vie_Latn", "id": "ind_Latn", "th": "tha_Thai", "sv": "swe_Latn",
}


def ct2_model_candidates(source_lang: str, target_lang: str) -> list[str]:
    """Registry names tried for a language pair: a pair-specific opus-mt model, then NLLB."""
    s, t = _lang(source_lang), _lang(target_lang)
    return [f"opus-mt-{s}-{t}", f"opus-mt-mul-{t}", "nllb-200-distilled-600M", "nllb-200"]


def find_ct2_model(registry: ModelRegistry, source_lang: str, target_lang: str) -> Path | None:
    """The first local CTranslate2 MT model for the pair, or None."""
    for name in ct2_model_candidates(source_lang, target_lang):
        try:
            path = registry.resolve(name)
        except ModelNotFoundError:
            continue
        if (path / "model.bin").is_file():
            return path
    return None


class _Tokenizer:
    """The model folder's own tokenizer: Marian's source/target.spm, or a Hugging Face tokenizer."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.kind = ""
        if (folder / "source.spm").is_file():
            import sentencepiece as spm

            self.kind = "spm"
            self.src = spm.SentencePieceProcessor(model_file=str(folder / "source.spm"))
            tgt = folder / "target.spm"
            self.tgt = spm.SentencePieceProcessor(model_file=str(tgt)) if tgt.is_file() else self.src
        elif any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json",
                                                  "sentencepiece.bpe.model")):
            self.kind = "hf"
            try:
                from transformers import AutoTokenizer

                self.hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            except ImportError as exc:
                raise ModelNotFoundError(f"The tokenizer in {folder} needs transformers: "
                                         "`pip install transformers sentencepiece`.") from exc
        else:
            raise ModelNotFoundError(f"{folder} has no tokenizer (source.spm/target.spm or tokenizer.json); "
                                     "copy the tokenizer files of the original model next to model.bin.")

    def encode(self, text: str, src_code: str | None) -> list[str]:
        if self.kind == "spm":
            return [*self.src.encode(text, out_type=str), "</s>"]
        if src_code is not None and hasattr(self.hf, "src_lang"):
            self.hf.src_lang = src_code
        return self.hf.convert_ids_to_tokens(self.hf.encode(text))

    def decode(self, tokens: list[str]) -> str:
        if self.kind == "spm":
            return self.tgt.decode_pieces([t for t in tokens if t not in ("</s>", "<pad>", "<unk>")]).strip()
        ids = self.hf.convert_tokens_to_ids(tokens)
        return self.hf.decode(ids, skip_special_tokens=True).strip()


def _vocabulary(folder: Path) -> set[str]:
    for name in ("shared_vocabulary.json", "target_vocabulary.json"):
        if (folder / name).is_file():
            return set(json.loads((folder / name).read_text(encoding="utf-8")))
    for name in ("shared_vocabulary.txt", "target_vocabulary.txt"):
        if (folder / name).is_file():
            return set((folder / name).read_text(encoding="utf-8").splitlines())
    return set()


class CTranslate2Translator:
    """Text MT with a local CTranslate2 model (opus-mt Marian or NLLB) and its own tokenizer.

    ``model`` is a folder or registry name; None picks the first of
    `ct2_model_candidates` that resolves (``DUBBING_MODELS_DIR/opus-mt-ja-en``...).
    Multilingual models (NLLB/M2M100) get the language codes they expect.
    """

    name = "ctranslate2"

    def __init__(self, model: str | Path | None = None, *, registry: ModelRegistry | None = None,
                 device: str = "auto", beam_size: int = 4, max_decoding_length: int = 256,
                 batch_size: int = 16, candidates: int = 1) -> None:
        self.model = model
        #: readings kept per line (the beam's n-best, the beam widened to hold them)
        self.candidates = max(1, int(candidates))
        self._registry = registry
        self.device = device
        self.beam_size = beam_size
        self.max_decoding_length = max_decoding_length
        self.batch_size = batch_size
        self._loaded: dict[Path, tuple[Any, _Tokenizer]] = {}

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            self._registry = _default_registry()
        return self._registry

    def model_path(self, source_lang: str, target_lang: str) -> Path:
        """The model folder for this pair, or ModelNotFoundError saying where to put one."""
        if self.model is not None:
            path = self.registry.resolve(str(self.model))
        else:
            found = find_ct2_model(self.registry, source_lang, target_lang)
            if found is None:
                pair = ct2_model_candidates(source_lang, target_lang)[0]
                names = f"{pair}, nllb-200-distilled-600M"
                raise ModelNotFoundError(
                    f"No CTranslate2 translation model for {source_lang}->{target_lang}: convert one "
                    f"(ct2-transformers-converter, copying its tokenizer files) into DUBBING_MODELS_DIR "
                    f"as one of: {names}."
                )
            path = found
        if not (path / "model.bin").is_file():
            raise ModelNotFoundError(f"{path} is not a CTranslate2 model folder (no model.bin); convert the "
                                     "model with ct2-transformers-converter.")
        return path

    def _load(self, path: Path) -> tuple[Any, _Tokenizer]:
        if path not in self._loaded:
            import ctranslate2

            from dubbing_assets.core.device import ctranslate2_device

            device, compute = ctranslate2_device(self.device)
            try:
                translator = ctranslate2.Translator(str(path), device=device, compute_type=compute)
            except Exception as exc:  # noqa: BLE001
                raise EngineError(f"Loading the CTranslate2 model in {path} failed ({exc}).") from exc
            self._loaded[path] = (translator, _Tokenizer(path))
        return self._loaded[path]

    def translate_texts(self, texts: list[str], source_lang: str, target_lang: str) -> tuple[list[str], Path]:
        """Translate plain strings; returns (translations, model folder used)."""
        nbest, path = self.translate_nbest(texts, source_lang, target_lang, 1)
        return [readings[0][0] if readings else "" for readings in nbest], path

    def translate_nbest(self, texts: list[str], source_lang: str, target_lang: str, n: int
                        ) -> tuple[list[list[tuple[str, float]]], Path]:
        """Each string's n best translations [(text, average log-probability per token)], unique, best
        first; and the model folder used."""
        path = self.model_path(source_lang, target_lang)
        translator, tokenizer = self._load(path)
        vocab = _vocabulary(path)
        src_code = tgt_prefix = None
        s, t = _lang(source_lang), _lang(target_lang)
        if _NLLB_CODES.get(t) in vocab:
            src_code, tgt_prefix = _NLLB_CODES.get(s), _NLLB_CODES[t]
        elif f"__{t}__" in vocab:
            src_code, tgt_prefix = f"__{s}__", f"__{t}__"
        batch = [tokenizer.encode(text, src_code) for text in texts]
        if tokenizer.kind == "spm" and src_code is not None and tgt_prefix and tgt_prefix.startswith("__"):
            batch = [[src_code, *tokens] for tokens in batch]
        try:
            results = translator.translate_batch(
                batch, beam_size=max(self.beam_size, n), num_hypotheses=n, return_scores=True,
                max_decoding_length=self.max_decoding_length, max_batch_size=self.batch_size,
                target_prefix=[[tgt_prefix]] * len(batch) if tgt_prefix else None,
            )
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"CTranslate2 translation with {path.name} failed: {exc}") from exc
        out: list[list[tuple[str, float]]] = []
        for result in results:
            readings: list[tuple[str, float]] = []
            for tokens, score in zip(result.hypotheses, result.scores, strict=True):
                if tgt_prefix and tokens and tokens[0] == tgt_prefix:
                    tokens = tokens[1:]
                text = tokenizer.decode(tokens)
                if text not in (r[0] for r in readings):
                    readings.append((text, round(float(score), 4)))  # length-normalised by CTranslate2
            out.append(readings)
        return out, path

    def translate(self, script: Script, target_lang: str, **ctx: Any) -> Translation:
        target = _lang(target_lang)
        texts = [ln.text for ln in script.lines]
        nbest, path = self.translate_nbest(texts, script.language, target, self.candidates) if texts else ([], Path())
        lines = []
        for ln, readings in zip(script.lines, nbest, strict=True):
            line = _line(ln, readings[0][0] if readings else "")
            if self.candidates > 1:
                line.alternatives = [{"text": t, "logprob": lp} for t, lp in readings]
            lines.append(line)
        return Translation(source_language=script.language, target_language=target, engine=self.name,
                           lines=lines, meta={"model": path.name, "beam_size": max(self.beam_size, self.candidates),
                                              "candidates": self.candidates})


def get_translator(name: str, **kwargs: Any) -> Translator:
    """Build a translation engine by its registered name (not "auto": see `choose_engine`)."""
    from dubbing_assets.core import plugins

    cls = plugins.load(plugins.TRANSLATOR, name, kind="translation engine",
                       hint="set DUBBING_TRANSLATION_ENGINE to 'auto' or ")
    return cls(**kwargs)


def choose_engine(script: Script, target_lang: str, *, subtitle_languages: Iterable[str | None] = (),
                  registry: ModelRegistry | None = None) -> str:
    """The "auto" rule: passthrough, then the episode's own subtitles, then whisper (to English), then CT2.

    ``subtitle_languages`` are the languages of the episode's text subtitle
    tracks. Raises ModelNotFoundError when nothing can produce the target.
    """
    source, target = _lang(script.language), _lang(target_lang)
    if source == target:
        return PassthroughTranslator.name
    if target in {_lang(code) for code in subtitle_languages if code}:
        return SubtitleTranslator.name
    if target == "en":
        return WhisperTranslator.name
    if find_ct2_model(registry or _default_registry(), source, target) is not None:
        return CTranslate2Translator.name
    raise ModelNotFoundError(
        f"Nothing can translate {source}->{target}: whisper only translates into English and no local "
        f"CTranslate2 model was found. Put a converted opus-mt-{source}-{target} or NLLB model in "
        f"DUBBING_MODELS_DIR, or supply {target} subtitles with the episode."
    )


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def apply_glossary(translation: Translation, glossary: dict[str, str]) -> Translation:
    """Record, per line, whether the series glossary's target terms survived translation.

    ``glossary`` maps a source term to its required target term (character
    names, places, attacks). A line whose source text contains a source term
    but whose translation lacks the target term gets ``glossary_ok=False``
    and the term in ``glossary_missing``; text is not rewritten (a reviewer
    decides). Matching ignores case and width (NFKC).
    """
    terms = [(_fold(src), tgt) for src, tgt in glossary.items() if src and tgt]
    lines = []
    missing_lines = 0
    for ln in translation.lines:
        source, text = _fold(ln.source_text), _fold(ln.text)
        missing = [tgt for src, tgt in terms if src in source and _fold(tgt) not in text]
        if missing:
            missing_lines += 1
        lines.append(replace(ln, glossary_ok=not missing, glossary_missing=missing))
    meta = {**translation.meta, "glossary": {"terms": len(terms), "lines_missing_terms": missing_lines}}
    return Translation(source_language=translation.source_language,
                       target_language=translation.target_language, engine=translation.engine,
                       lines=lines, meta=meta)
