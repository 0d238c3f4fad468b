"""What every stage runs with: one `Runtime` per step, built by the orchestration's resource.

A stage is a plain function of its inputs and a runtime (`core.stages`), so it runs the same
under Dagster, in a test or in a notebook. The runtime holds the settings, the keyring (opened
once, by the same resolver as the CLI), the model registry (built once), the device, the step's
scratch folder and a cache of loaded models: a stage asks for "the whisper model" or "the Piper
engine" and gets the one already loaded in this process if there is one.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, TypeVar

from dubbing_assets.core.crypto import TEMP_PREFIX, Keyring, cleanup_stale_temporaries, open_keyring
from dubbing_assets.core.settings import Settings, load_settings

T = TypeVar("T")


class Log(Protocol):
    def info(self, msg: str) -> Any: ...
    def warning(self, msg: str) -> Any: ...


class Runtime:
    """Settings, keyring, registry, device, scratch and loaded models for the stages of one step.

    `allow_download` lets engines fetch weights on machines with a network; offline machines use
    models shipped in installed packages. `log` is where stages report progress (the step's log
    under Dagster, the `dubbing_assets` logger otherwise).
    """

    def __init__(self, settings: Settings | None = None, *, allow_download: bool = False,
                 log: Log | None = None) -> None:
        self._settings = settings
        self.allow_download = allow_download
        self.log: Log = log or logging.getLogger("dubbing_assets")
        self._models: dict[tuple[str, ...], Any] = {}

    @cached_property
    def settings(self) -> Settings:
        return (self._settings or load_settings()).ensure()

    @cached_property
    def keyring(self) -> Keyring:
        """The keyring file plus DUBBING_KEY if set: the same resolver as the CLI (`open_keyring`).

        Never created here: a run that finds no keyring fails with a message naming the file and what
        to run, instead of making a new keyring whose key nothing else knows.
        """
        return open_keyring(self.settings.keyring)

    @cached_property
    def registry(self) -> Any:  # -> ModelRegistry (import kept lazy: torch-free startup)
        from dubbing_assets.core.models import ModelRegistry

        s = self.settings
        return ModelRegistry(cache_dir=s.cache / "models", models_dir=s.models_dir,
                             allow_download=self.allow_download)

    @property
    def device(self) -> str:
        """DUBBING_DEVICE as set (``auto``, ``cpu``, ``cuda``); `core.device` resolves it per runtime."""
        return self.settings.device

    @cached_property
    def scratch(self) -> Path:
        """This step's private scratch folder (mode 0700 parent), removed by `close`."""
        base = self.settings.tmp
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        return Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=base))

    def workdir(self, name: str) -> Path:
        """A scratch folder for one stage of this step."""
        path = self.scratch / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def model(self, key: tuple[str, ...], load: Callable[[], T]) -> T:
        """The model loaded under `key` in this runtime, loading it the first time."""
        if key not in self._models:
            self._models[key] = load()
        return self._models[key]

    def tts(self, name: str, **options: Any) -> Any:
        """A TTS engine by name (entry point `dubbing_assets.tts`), one instance per runtime, with the options
        the settings give that engine (Piper: the catalogue voices of DUBBING_PIPER_VOICES)."""
        from dubbing_assets.core.tts import get_engine

        if name == "piper":
            options = {"catalogue": self.settings.piper_voices, **options}
        return self.model(("tts", name, *sorted(f"{k}={v}" for k, v in options.items())),
                          lambda: get_engine(name, registry=self.registry, **options))

    def transcriber(self, model: str) -> Any:
        """A faster-whisper transcriber for `model` on the configured device, one per runtime."""
        from dubbing_assets.core.asr import Transcriber

        return self.model(("asr", model), lambda: Transcriber(model, registry=self.registry, device=self.device))

    def close(self) -> None:
        """Remove the scratch folder and what earlier, killed steps left in the temp folder."""
        scratch = self.__dict__.pop("scratch", None)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        settings = self.__dict__.get("settings")
        if settings is not None:
            cleanup_stale_temporaries(settings.tmp)
        self._models.clear()
