"""The optional-engine registry works in the base install (no xtts extra needed to import or ask)."""

from __future__ import annotations

import pytest

from dubbing_assets.core import plugins
from dubbing_assets.core.engines.xtts import split_for_retry, xtts_available
from dubbing_assets.core.tts import get_engine
from dubbing_assets.errors import ConfigError, ToolNotFoundError


def test_xtts_is_declared_and_loads_without_the_extra() -> None:
    assert plugins.declared(plugins.TTS)["xtts"].value == "dubbing_assets.core.engines.xtts:XTTSEngine"
    assert plugins.load(plugins.TTS, "xtts", kind="TTS engine").__name__ == "XTTSEngine"  # no model, no torch
    with pytest.raises(ConfigError, match="Unknown TTS engine 'no-such-engine'"):
        get_engine("no-such-engine")


@pytest.mark.required  # CI runs it in .venv, which has no xtts extra
@pytest.mark.skipif(xtts_available(), reason="the xtts extra is installed here; test_xtts.py covers the engine")
def test_xtts_without_the_extra_says_how_to_install_it() -> None:
    with pytest.raises(ToolNotFoundError, match=r"scripts/dev.py setup --high"):
        get_engine("xtts")


def test_split_for_retry() -> None:
    assert split_for_retry("Two melon buns. You can have one!") == ["Two melon buns.", "You can have one!"]
    assert split_for_retry("one two three four") == ["one two", "three four"]
    assert split_for_retry("word") == ["word"]
