"""The one resource: it builds the stages' `Runtime` when a step starts and closes it when the step ends.

Nothing here reads the environment at import; settings load when a step first asks, so one code
location serves every deployment. The IO manager takes the same resource, so artifacts are
encrypted with the keyring the stages use.
"""

from functools import cached_property

import dagster as dg

from dubbing_assets.core.crypto import TEMP_PREFIX as CRYPTO_TEMP_PREFIX
from dubbing_assets.core.runtime import Runtime

#: Step scratch folders use the crypto layer's temp prefix, so the stale-temporaries sweep knows them.
TEMP_PREFIX = CRYPTO_TEMP_PREFIX


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

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        runtime = self.__dict__.get("runtime")
        if runtime is not None:
            runtime.close()
