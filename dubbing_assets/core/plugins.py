"""Engines are found one way: Python entry points, one group per kind.

| group                        | kind                       | built by                 |
|------------------------------|----------------------------|--------------------------|
| ``dubbing_assets.tts``       | a `tts.TTSEngine`          | `tts.get_engine`         |
| ``dubbing_assets.translator``| a `translate.Translator`   | `translate.get_translator` |
| ``dubbing_assets.separator`` | a `stems.Separator`        | `stems.get_separator`    |
| ``dubbing_assets.lipsync``   | a `lipsync.LipSyncPlugin`  | `lipsync.get_plugin`     |

The project's own engines are declared in its ``pyproject.toml`` like anyone
else's, so a new engine is one module plus one line there::

    [project.entry-points."dubbing_assets.tts"]
    mytts = "dubbing_assets.core.engines.mytts:MyEngine"

and another package adds one with the same line in its own metadata, without
touching this project. Nothing is imported until an engine is asked for by
name, so an engine of an extra (XTTS) costs the base install nothing.

A checkout installed in editable mode keeps the metadata of its last
``pip install -e .``; entry points added since are read from the checkout's
own ``pyproject.toml`` too, so a pull never needs a reinstall to find them.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from dubbing_assets.errors import ConfigError, DubbingError

TTS = "dubbing_assets.tts"
TRANSLATOR = "dubbing_assets.translator"
SEPARATOR = "dubbing_assets.separator"
LIPSYNC = "dubbing_assets.lipsync"

_CHECKOUT_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@lru_cache(maxsize=1)
def _checkout_declarations() -> dict[str, dict[str, str]]:
    """The entry points the checkout's pyproject.toml declares ({} in an installed wheel, which has none)."""
    try:
        project = tomllib.loads(_CHECKOUT_PYPROJECT.read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    if project.get("name") not in ("dubbing_assets", "dubbing-assets"):
        return {}
    return {group: dict(eps) for group, eps in (project.get("entry-points") or {}).items()}


def declared(group: str) -> dict[str, EntryPoint]:
    """Every engine of `group` by name: the installed metadata's, then the checkout's (nothing imported)."""
    found = {ep.name: ep for ep in entry_points(group=group)}
    for name, value in _checkout_declarations().get(group, {}).items():
        found.setdefault(name, EntryPoint(name, value, group))
    return found


def load(group: str, name: str, *, kind: str, hint: str = "",
         error: type[DubbingError] = ConfigError) -> Any:
    """The object (a class or factory) registered as `name` in `group`.

    An unknown name raises `error` listing the names there are; an engine
    that fails to import raises ConfigError naming its entry point.
    """
    engines = declared(group)
    if name not in engines:
        raise error(f"Unknown {kind} {name!r}; {hint}choose one of: {', '.join(sorted(engines))}.")
    try:
        return engines[name].load()
    except Exception as exc:  # noqa: BLE001 - a broken third-party engine is its owner's to fix
        raise ConfigError(f"{kind[0].upper()}{kind[1:]} {name!r} ({engines[name].value}) failed to import: "
                          f"{exc}") from exc
