"""The one resource: it builds the stages' `Runtime` when a step starts and closes it when the step ends.

Nothing here reads the environment at import; settings load when a step first asks, so one code
location serves every deployment. The IO manager takes the same resource, so artifacts are
encrypted with the keyring the stages use.
"""

from functools import cached_property
from pathlib import Path
from typing import Any

import dagster as dg

from dubbing_assets.core.crypto import TEMP_PREFIX as CRYPTO_TEMP_PREFIX
from dubbing_assets.core.crypto import Keyring, open_keyring
from dubbing_assets.core.runtime import Runtime
from dubbing_assets.core.settings import Settings

#: Step scratch folders use the crypto layer's temp prefix, so the stale-temporaries sweep knows them.
TEMP_PREFIX = CRYPTO_TEMP_PREFIX


def keyring_from_settings(settings: Settings) -> Keyring:
    """The keyring the runtime opens for `settings` (`open_keyring`: the file plus DUBBING_KEY)."""
    return open_keyring(settings.keyring)


class DubbingResource(dg.ConfigurableResource):
    """The stages' runtime: settings, keyring, model registry, device, scratch and loaded models.

    `allow_download` lets engines fetch weights on machines with a network; offline machines use
    models shipped in installed packages.
    """

    allow_download: bool = False

    @cached_property
    def runtime(self) -> Runtime:
        return Runtime(allow_download=self.allow_download)

    def for_step(self, context: dg.AssetExecutionContext) -> Runtime:
        """The runtime, reporting to this step's log."""
        rt = self.runtime
        rt.log = context.log
        return rt

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def keyring(self) -> Keyring:
        return self.runtime.keyring

    @property
    def registry(self) -> Any:
        return self.runtime.registry

    def workdir(self, name: str) -> Path:
        """A private scratch folder for one step; removed when the step ends."""
        return self.runtime.workdir(name)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        runtime = self.__dict__.get("runtime")
        if runtime is not None:
            runtime.close()
