"""Resources: settings, keys, models and scratch space, all resolved at run time.

Nothing here reads the environment at import; `load_settings()` runs when a
step starts, so one code location serves every deployment.
"""


import shutil
import tempfile
from functools import cached_property
from pathlib import Path

import dagster as dg

from dubbing_assets.core.crypto import TEMP_PREFIX as CRYPTO_TEMP_PREFIX
from dubbing_assets.core.crypto import Keyring, cleanup_stale_temporaries, open_keyring
from dubbing_assets.core.settings import Settings, load_settings

#: Step scratch folders use the crypto layer's temp prefix, so the stale-temporaries sweep knows them.
TEMP_PREFIX = CRYPTO_TEMP_PREFIX


def keyring_from_settings(settings: Settings) -> Keyring:
    """The keyring file plus DUBBING_KEY if set: the same resolver as the CLI (`open_keyring`).

    Never created here: a run that finds no keyring fails with a message naming the file and what to
    run (`dubbing instance init`), instead of making a new keyring whose key nothing else knows (the
    episode's other artifacts would then be unreadable). DUBBING_KEY alone (a container's mounted
    secret) is enough without a file.
    """
    return open_keyring(settings.keyring)


class DubbingResource(dg.ConfigurableResource):
    """Settings, keyring, model registry and a per-step scratch folder.

    `allow_download` lets engines fetch weights on machines with a network;
    offline machines use models shipped in installed packages.
    """

    allow_download: bool = False

    @cached_property
    def settings(self) -> Settings:
        return load_settings().ensure()

    @cached_property
    def keyring(self) -> Keyring:
        return keyring_from_settings(self.settings)

    @cached_property
    def registry(self):  # -> ModelRegistry (import kept lazy: torch-free startup)
        from dubbing_assets.core.models import ModelRegistry

        return ModelRegistry(cache_dir=self.settings.cache / "models", models_dir=self.settings.models_dir,
                             allow_download=self.allow_download)

    @cached_property
    def _scratch(self) -> Path:
        base = self.settings.tmp
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        return Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=base))

    def workdir(self, name: str) -> Path:
        """A private scratch folder for one step; removed when the step ends."""
        path = self._scratch / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        scratch = self.__dict__.get("_scratch")
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        settings = self.__dict__.get("settings")
        if settings is not None:
            cleanup_stale_temporaries(settings.tmp)
