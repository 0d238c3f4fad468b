"""Run the real pipeline in-process on an isolated home (shared by the orchestration tests)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from dubbing_assets.core.contracts import EpisodeRecord
from dubbing_assets.core.crypto import Keyring
from dubbing_assets.core.fsutil import file_sha256
from dubbing_assets.core.inbox import write_episode_record
from dubbing_assets.core.settings import load_settings
from dubbing_assets_tests.conftest import MEDIA


def prepare_episode(home: Path, *, clip: str | Path = "ja_two_speakers.mkv", series: str = "alpha-series",
                    episode: str = "e01", mode: str = "low", target: str = "en",
                    sidecars: Mapping[str, Path] | None = None) -> tuple[dg.DagsterInstance, str]:
    """Lay out an inbox file and its episode record as the sensor would; register the partition.

    ``clip`` is a fixture name or a path to any media file; ``sidecars`` maps
    the part after the episode name (".ass", ".en.ass") to a file copied there.
    """
    os.environ["DUBBING_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster_home")
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    settings = load_settings().ensure()
    if not settings.keyring.exists():  # what `dubbing instance init` does: runs never create one
        Keyring.create(settings.keyring)
    folder = settings.inbox / series
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(clip).suffix
    shutil.copyfile(MEDIA / clip, folder / f"{episode}{suffix}")
    for tail, path in (sidecars or {}).items():
        shutil.copyfile(path, folder / f"{episode}{tail}")
    key = f"{series}-{episode}"
    write_episode_record(settings.episodes, EpisodeRecord(
        key=key, series=series, source=f"{series}/{episode}{suffix}",
        fingerprint=file_sha256(folder / f"{episode}{suffix}"), owner="tester", mode=mode, target_lang=target))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", [key])
    return instance, key


def run_stages(instance: dg.DagsterInstance, key: str, stages: list[str] | None = None) -> dg.ExecuteInProcessResult:
    from dubbing_assets.definitions import defs

    job = defs.resolve_job_def("dub_episode")
    selection = [dg.AssetKey(s) for s in stages] if stages else None
    return job.execute_in_process(partition_key=key, instance=instance, asset_selection=selection,
                                  raise_on_error=False)


def step_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    return [ev.event_specific_data.error.to_string() for ev in result.all_events
            if ev.event_type_value == "STEP_FAILURE"]


def materialization_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    mats = result.asset_materializations_for_node(asset)
    assert mats, f"{asset} was not materialized"
    return {k: v.value for k, v in mats[-1].metadata.items()}
