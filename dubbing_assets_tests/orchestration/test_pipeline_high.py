"""High mode on a machine without the XTTS extra or lip-sync weights: the episode is still delivered,
in the GPU pool, with the reasons recorded (never a silent downgrade)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from dubbing_assets.core.settings import load_settings
from dubbing_assets_tests.orchestration.pipeline_helpers import (
    materialization_metadata,
    prepare_episode,
    run_stages,
    step_failures,
)

pytestmark = [pytest.mark.slow]


def test_high_mode_degrades_with_reasons(tmp_path) -> None:
    instance, key = prepare_episode(tmp_path / "home", episode="e03", mode="high")
    result = run_stages(instance, key)
    assert result.success, step_failures(result)
    cast = materialization_metadata(result, "cast")
    assert cast["mode"] == "high"
    if importlib.util.find_spec("TTS") is None:
        assert "high mode unavailable" in cast["high_mode"]
    lip = materialization_metadata(result, "lip_sync")
    assert lip["synced"] is False and lip["reason"]
    folder = load_settings().output / "alpha-series" / key
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["qa"]["passed"] is True
    assert (folder / f"{key}.mkv").exists()
