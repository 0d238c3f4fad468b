"""XTTS v2 voice cloning (high mode) through the maintained ``coqui-tts`` fork.

Needs the ``xtts`` extra, installed into its own environment by
``scripts/dev.py setup --high`` (``.venv-high``; the pins and why are in
pyproject.toml); the base install never imports coqui-tts. Importing it registers the engine
as ``"xtts"`` in `core.tts`::

    from dubbing_assets.core.engines.xtts import XTTSEngine
    engine = XTTSEngine(registry=registry)                 # nothing loaded yet
    latents = engine.conditioning([Path("ref-00.wav"), Path("ref-01.wav")])  # once per character
    voice = Voice("xtts", "xtts-v2", settings={"xtts_latents": latents, "language": "en", "seed": 0})
    engine.synthesize("Two melon buns.", voice, Path("line.wav"), rate=1.1)

The checkpoint is a folder with ``config.json``, ``model.pth`` and
``vocab.json`` (the released XTTS v2 layout), found by the model registry as
``xtts-v2`` (``DUBBING_MODELS_DIR/xtts-v2/``) or given as a path; the
package's own `ModelManager` download is tried only when downloads are
allowed. The model loads once per engine instance, on CUDA when available.

`conditioning` returns JSON-friendly lists (GPT conditioning latents and the
decoder's speaker embedding) so the character store can keep them
(``Character.extra["xtts"]``, encrypted) and later episodes skip the work.
Reference audio is read with soundfile, so no audio I/O backend of
torchaudio/torchcodec is needed.

On a CUDA out-of-memory error for one line, the line is retried after
emptying the cache, then split into sentences (or halves) and spoken piece by
piece; only if that fails too does the line raise `EngineError`, which the
high-mode wrapper (`core.cloning.VerifiedCloneEngine`) turns into a fallback
to the low-mode voice, so one line never kills the episode.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.audio_io import write_wav_atomic
from dubbing_assets.core.contracts import Voice
from dubbing_assets.core.device import torch_device
from dubbing_assets.core.tts import (
    POSTPROCESS_VERSION,
    SynthResult,
    _peak_normalise,
    shift_voice,
)
from dubbing_assets.errors import EngineError, ModelNotFoundError, ToolNotFoundError

#: Model-registry name of the XTTS v2 checkpoint folder.
XTTS_MODEL = "xtts-v2"
#: coqui-tts model id used by its own ModelManager (downloads only when allowed).
COQUI_MODEL_ID = "tts_models/multilingual/multi-dataset/xtts_v2"
CHECKPOINT_FILES = ("config.json", "model.pth", "vocab.json")
LATENTS_FORMAT = "xtts-latents/1"
#: Pieces of an out-of-memory line are split at most this many times (halves of halves...).
MAX_OOM_SPLITS = 3

_INSTALL_HINT = (
    "XTTS v2 needs the xtts extra in its own environment: `python3.11 scripts/dev.py setup --high` "
    "(creates .venv-high), or `pip install 'dubbing_assets[xtts]'` into a fresh venv."
)


def xtts_available() -> bool:
    """True when the coqui-tts package (module ``TTS``) is installed (nothing is imported)."""
    return importlib.util.find_spec("TTS") is not None


def _import_xtts() -> tuple[Any, Any]:
    """(XttsConfig, Xtts) from coqui-tts, or ToolNotFoundError naming the exact import failure."""
    try:
        from TTS.tts.configs.xtts_config import XttsConfig
        from TTS.tts.models.xtts import Xtts
    except ImportError as exc:
        detail = " ".join(str(exc).split())[:400]
        raise ToolNotFoundError(f"coqui-tts could not be imported ({detail}). {_INSTALL_HINT}") from exc
    return XttsConfig, Xtts


def resolve_xtts_model(
    name_or_path: str | Path | None = None,
    registry: Any | None = None,
    *,
    allow_download: bool | None = None,
) -> Path:
    """The XTTS v2 checkpoint folder (config.json + model.pth + vocab.json).

    An existing path (the folder, or its ``model.pth``) is used as it is;
    anything else is a registry name (default ``xtts-v2``). When the
    registry does not have it and downloads are allowed (`allow_download`,
    else the registry's own setting), coqui-tts' ModelManager downloads it
    into the registry's cache.
    """
    if name_or_path is not None and Path(name_or_path).expanduser().exists():
        folder = Path(name_or_path).expanduser()
        folder = folder.parent if folder.is_file() else folder
    else:
        if registry is None:
            from dubbing_assets.core.models import ModelRegistry

            registry = ModelRegistry(cache_dir=Path(tempfile.gettempdir()) / "dubbing-models")
        allowed = bool(registry.allow_download if allow_download is None else allow_download)
        try:
            folder = Path(registry.resolve(str(name_or_path or XTTS_MODEL)))
        except ModelNotFoundError as exc:
            if not allowed:
                raise ModelNotFoundError(
                    f"XTTS v2 checkpoint {str(name_or_path or XTTS_MODEL)!r} not found: put config.json, "
                    f"model.pth and vocab.json in DUBBING_MODELS_DIR/{XTTS_MODEL}/, or allow downloads."
                ) from exc
            folder = _download(Path(registry.cache_dir) / "downloads" / "coqui")
    missing = [f for f in CHECKPOINT_FILES if not (folder / f).is_file()]
    if missing:
        raise ModelNotFoundError(
            f"The XTTS v2 folder {folder} lacks {', '.join(missing)}; it needs {', '.join(CHECKPOINT_FILES)}."
        )
    return folder


def _download(prefix: Path) -> Path:
    if not xtts_available():
        raise ToolNotFoundError(_INSTALL_HINT)
    try:
        from TTS.utils.manage import ModelManager

        path, _, _ = ModelManager(output_prefix=str(prefix), progress_bar=False).download_model(COQUI_MODEL_ID)
    except Exception as exc:  # noqa: BLE001 - any network/hub/licence failure
        raise ModelNotFoundError(
            f"Downloading XTTS v2 failed ({exc}); the model's licence must be accepted (COQUI_TOS_AGREED=1) "
            f"and the machine needs a network, or put the files in DUBBING_MODELS_DIR/{XTTS_MODEL}/."
        ) from exc
    path = Path(path)
    return path.parent if path.is_file() else path




def split_for_retry(text: str) -> list[str]:
    """Sentences of `text`, or its two halves at a word boundary when it is one sentence."""
    parts = [p.strip() for p in re.split(r"(?<=[.!?;:。！？])\s+", text.strip()) if p.strip()]
    if len(parts) > 1:
        return parts
    words = text.split()
    if len(words) < 2:
        return [text]
    mid = len(words) // 2
    return [" ".join(words[:mid]), " ".join(words[mid:])]


def _is_oom(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, oom) or "out of memory" in str(exc).lower()


class XTTSEngine:
    """XTTS v2 zero-shot cloning as a `TTSEngine` (name ``"xtts"``).

    `model_path`: checkpoint folder or registry name (default ``xtts-v2``);
    `device`: ``"cuda"``/``"cpu"`` (default: CUDA when available);
    `seed`: default seed of a line when the voice has none (``settings["seed"]``);
    `temperature` and `generate_kwargs` go to XTTS ``inference`` (and on to
    Hugging Face ``generate``).

    Voice settings read: ``xtts_latents`` (from `conditioning`) or
    ``reference_wav`` (a path or list of paths, conditioned on first use),
    ``language`` (default `language`), ``seed``, ``temperature``.
    """

    name = "xtts"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        registry: Any | None = None,
        device: str | None = None,
        language: str = "en",
        seed: int = 0,
        temperature: float | None = None,
        allow_download: bool | None = None,
        generate_kwargs: dict[str, Any] | None = None,
        sentence_silence_s: float = 0.1,
    ) -> None:
        if not xtts_available():
            raise ToolNotFoundError(_INSTALL_HINT)
        self._model_arg = model_path
        self._registry = registry
        self._allow_download = allow_download
        self._device = device
        self.language = language
        self.seed = int(seed)
        self.temperature = temperature
        self.generate_kwargs = dict(generate_kwargs or {})
        self.sentence_silence_s = sentence_silence_s
        self._folder: Path | None = None
        self._model: Any = None
        self._version: str | None = None
        self._lock = threading.RLock()
        self._ref_cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        #: Lines that needed an out-of-memory retry: (text head, what was done).
        self.oom_events: list[tuple[str, str]] = []

    # -- model ---------------------------------------------------------------
    @property
    def folder(self) -> Path:
        if self._folder is None:
            self._folder = resolve_xtts_model(self._model_arg, self._registry, allow_download=self._allow_download)
        return self._folder

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = torch_device()
        return self._device

    @property
    def version(self) -> str:
        if self._version is None:
            from importlib.metadata import version as pkg_version

            digest = hashlib.sha256()
            for fname in CHECKPOINT_FILES:
                path = self.folder / fname
                digest.update(fname.encode())
                digest.update(str(path.stat().st_size).encode())
                if fname != "model.pth":
                    digest.update(path.read_bytes())
            self._version = (f"coqui-tts {pkg_version('coqui-tts')}; xtts {digest.hexdigest()[:16]}; "
                             f"temperature {self.temperature}; post {POSTPROCESS_VERSION}")
        return self._version

    def voices(self) -> list[str]:
        return [XTTS_MODEL]

    def model(self) -> Any:
        """The loaded XTTS model (loaded once per engine instance)."""
        with self._lock:
            if self._model is None:
                xtts_config, xtts = _import_xtts()
                folder = self.folder
                try:
                    config = xtts_config()
                    config.load_json(str(folder / "config.json"))
                    model = xtts(config)
                    model.load_checkpoint(config, checkpoint_dir=str(folder), use_deepspeed=False, eval=True)
                except (OSError, RuntimeError, KeyError, ValueError) as exc:
                    raise ModelNotFoundError(f"XTTS v2 could not load the checkpoint in {folder}: {exc}") from exc
                model.to(self.device)
                model.eval()  # Xtts.eval() returns None, so no chaining
                self._model = model
            return self._model

    # -- conditioning --------------------------------------------------------
    def conditioning(self, reference_wavs: Sequence[str | Path]) -> dict[str, Any]:
        """GPT conditioning latents and speaker embedding of the reference clips, as lists.

        Compute once per character and keep the result (JSON) in the
        character store; pass it back as ``voice.settings["xtts_latents"]``.
        """
        import soundfile as sf
        import torch
        import torchaudio.functional as taf

        paths = [Path(p) for p in reference_wavs]
        if not paths:
            raise EngineError("XTTS conditioning needs at least one reference clip.")
        model = self.model()
        cfg = model.config
        max_ref = int(getattr(cfg, "max_ref_len", 30) or 30)
        audios, embeddings, seconds = [], [], 0.0
        with self._lock, torch.inference_mode():
            for path in paths:
                try:
                    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
                except Exception as exc:  # noqa: BLE001 - unreadable reference
                    raise EngineError(f"Cannot read the reference clip {path.name}: {exc}") from exc
                audio = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))[None, :]
                if sr != 22050:
                    audio = taf.resample(audio, int(sr), 22050)
                audio = audio[:, : 22050 * max_ref].to(self.device)
                if getattr(cfg, "sound_norm_refs", False):
                    audio = audio / audio.abs().max().clamp_min(1e-8) * 0.75
                seconds += audio.shape[1] / 22050
                embeddings.append(model.get_speaker_embedding(audio, 22050))
                audios.append(audio)
            try:
                gpt = model.get_gpt_cond_latents(torch.cat(audios, dim=-1), 22050,
                                                 length=int(getattr(cfg, "gpt_cond_len", 12)),
                                                 chunk_length=int(getattr(cfg, "gpt_cond_chunk_len", 4)))
            except RuntimeError as exc:  # e.g. "reference audio too short"
                raise EngineError(f"XTTS conditioning failed: {exc}") from exc
            speaker = torch.stack(embeddings).mean(dim=0)
        return {
            "format": LATENTS_FORMAT,
            "model": self.version.split(";")[1].strip(),
            "reference_s": round(seconds, 3),
            "gpt_cond_latent": {"shape": list(gpt.shape), "data": gpt.detach().float().cpu().flatten().tolist()},
            "speaker_embedding": {"shape": list(speaker.shape),
                                  "data": speaker.detach().float().cpu().flatten().tolist()},
        }

    def latents_to_tensors(self, latents: dict[str, Any]) -> tuple[Any, Any]:
        """(gpt_cond_latent, speaker_embedding) tensors on the engine's device from `conditioning`'s dict."""
        import torch

        if not isinstance(latents, dict) or latents.get("format") != LATENTS_FORMAT:
            raise EngineError("voice.settings['xtts_latents'] is not an XTTS conditioning made by this engine; "
                              "recompute it with XTTSEngine.conditioning.")

        def tensor(item: dict[str, Any]) -> Any:
            return torch.tensor(item["data"], dtype=torch.float32).reshape(item["shape"]).to(self.device)

        return tensor(latents["gpt_cond_latent"]), tensor(latents["speaker_embedding"])

    def _voice_latents(self, settings: dict[str, Any]) -> dict[str, Any]:
        latents = settings.get("xtts_latents")
        if latents:
            return latents
        refs = settings.get("reference_wav")
        if not refs:
            raise EngineError("An XTTS voice needs settings['xtts_latents'] or settings['reference_wav'].")
        paths = [Path(refs)] if isinstance(refs, str | Path) else [Path(r) for r in refs]
        key = tuple((str(p), p.stat().st_mtime_ns if p.exists() else 0) for p in paths)
        if key not in self._ref_cache:
            self._ref_cache[key] = self.conditioning(paths)
        return self._ref_cache[key]

    # -- synthesis -----------------------------------------------------------
    def _generate(self, text: str, language: str, gpt: Any, speaker: Any, seed: int, speed: float,
                  temperature: float | None) -> np.ndarray:
        import torch

        model = self.model()
        kwargs = dict(self.generate_kwargs)
        if temperature is not None:
            kwargs["temperature"] = float(temperature)
        limit = getattr(model.tokenizer, "char_limits", {}).get(language.split("-")[0], 250)
        devices = [torch.cuda.current_device()] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = model.inference(text, language, gpt, speaker, speed=speed,
                                  enable_text_splitting=len(text) > limit, **kwargs)
        return np.asarray(out["wav"], dtype=np.float32).reshape(-1)

    def _free_cuda(self) -> None:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _speak(self, text: str, language: str, gpt: Any, speaker: Any, seed: int, speed: float,
               temperature: float | None, depth: int = 0) -> np.ndarray:
        """One line, with the out-of-memory retries (same line once more, then smaller pieces)."""
        for attempt in range(2):
            try:
                return self._generate(text, language, gpt, speaker, seed, speed, temperature)
            except (RuntimeError, MemoryError) as exc:
                if not _is_oom(exc):
                    raise
                self._free_cuda()
                if attempt == 0:
                    self.oom_events.append((text[:60], "retry after empty_cache"))
        pieces = split_for_retry(text)
        if len(pieces) < 2 or depth >= MAX_OOM_SPLITS:
            raise EngineError(f"XTTS ran out of memory on line {text[:60]!r} even after splitting it.")
        self.oom_events.append((text[:60], f"split into {len(pieces)} pieces"))
        gap = np.zeros(int(self.sentence_silence_s * 24000), dtype=np.float32)
        parts: list[np.ndarray] = []
        for piece in pieces:
            if parts:
                parts.append(gap)
            parts.append(self._speak(piece, language, gpt, speaker, seed, speed, temperature, depth + 1))
        return np.concatenate(parts)

    def synthesize(self, text: str, voice: Voice, out_wav: Path, *, rate: float = 1.0) -> SynthResult:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        settings = dict(voice.settings or {})
        language = str(settings.get("language") or self.language)
        seed = int(settings["seed"]) if settings.get("seed") is not None else self.seed
        temperature = settings.get("temperature", self.temperature)
        speed = float(rate) / max(float(voice.length_scale or 1.0), 0.05)
        model = self.model()
        sample_rate = int(getattr(model.config.model_args, "output_sample_rate", 24000) or 24000)
        with self._lock:
            gpt, speaker = self.latents_to_tensors(self._voice_latents(settings))
            try:
                audio = self._speak(text.strip() or ".", language, gpt, speaker, seed, speed, temperature)
            except EngineError:
                raise
            except (RuntimeError, AssertionError, ValueError, IndexError, NotImplementedError) as exc:
                raise EngineError(f"XTTS failed on line {text[:60]!r}: {exc}") from exc
        if audio.size == 0:
            audio = np.zeros(int(0.1 * sample_rate), dtype=np.float32)
        audio = shift_voice(audio, sample_rate, float(voice.pitch_semitones))
        audio = _peak_normalise(np.nan_to_num(audio), -1.0)
        write_wav_atomic(Path(out_wav), audio, sample_rate)
        return SynthResult(Path(out_wav), len(audio) / sample_rate, sample_rate)

