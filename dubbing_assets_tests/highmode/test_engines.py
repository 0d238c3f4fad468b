"""The optional-engine registry works in the base install (no xtts extra needed to import or ask)."""

from __future__ import annotations

import pytest

from dubbing_assets.core.engines import ENGINE_MODULES, ensure_engine
from dubbing_assets.core.engines.xtts import split_for_retry, xtts_available
from dubbing_assets.core.tts import ENGINES, get_engine
from dubbing_assets.errors import ToolNotFoundError


def test_xtts_registers_on_import_without_loading_anything() -> None:
    assert ENGINE_MODULES["xtts"] == "dubbing_assets.core.engines.xtts"
    assert ensure_engine("xtts") and "xtts" in ENGINES
    assert not ensure_engine("no-such-engine")


@pytest.mark.required  # CI runs it in .venv, which has no xtts extra
@pytest.mark.skipif(xtts_available(), reason="the xtts extra is installed here; test_xtts.py covers the engine")
def test_xtts_without_the_extra_says_how_to_install_it() -> None:
    with pytest.raises(ToolNotFoundError, match=r"scripts/dev.py setup --high"):
        get_engine("xtts")


def test_split_for_retry() -> None:
    assert split_for_retry("Two melon buns. You can have one!") == ["Two melon buns.", "You can have one!"]
    assert split_for_retry("one two three four") == ["one two", "three four"]
    assert split_for_retry("word") == ["word"]
