"""Resources: settings, keys, models and scratch space, all resolved at run time.

Nothing here reads the environment at import; `load_settings()` runs when a
step starts, so one code location serves every deployment.
"""


import os
import shutil
import tempfile
from functools import cached_property
from pathlib import Path

import dagster as dg

from dubbing_assets.core.crypto import TEMP_PREFIX as CRYPTO_TEMP_PREFIX
from dubbing_assets.core.crypto import Keyring, cleanup_stale_temporaries
from dubbing_assets.core.settings import Settings, load_settings

#: Step scratch folders use the crypto layer's temp prefix, so the stale-temporaries sweep knows them.
TEMP_PREFIX = CRYPTO_TEMP_PREFIX


def keyring_from_settings(settings: Settings) -> Keyring:
    """The keyring file (created on first use), plus DUBBING_KEY if set.

    DUBBING_KEY (standard base64 of 32 bytes) lets containers receive the key
    as a secret instead of a file; it becomes the active key.
    """
    ring = Keyring.load_or_create(settings.keyring)
    env_key = os.environ.get("DUBBING_KEY", "").strip()
    if env_key:
        ring = Keyring.from_env_key(env_key, base=ring)
    return ring


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
