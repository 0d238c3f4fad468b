"""Optional TTS engines that live in their own modules (heavy or extra-only dependencies).

Importing a module here registers its engine with `core.tts.register_engine`;
nothing is imported until an engine is asked for by name, so the base install
never needs an extra's packages::

    from dubbing_assets.core.engines import ensure_engine
    ensure_engine("xtts")              # imports core.engines.xtts, which registers "xtts"
    engine = get_engine("xtts")        # core.tts registry, model still loads lazily
"""

from __future__ import annotations

import importlib

#: Engine name -> module that registers it when imported.
ENGINE_MODULES: dict[str, str] = {
    "xtts": "dubbing_assets.core.engines.xtts",
    "kokoro": "dubbing_assets.core.engines.kokoro",
}


def ensure_engine(name: str) -> bool:
    """Import the module that registers engine `name`; False when no module provides it."""
    module = ENGINE_MODULES.get(name)
    if module is None:
        return False
    importlib.import_module(module)
    return True
