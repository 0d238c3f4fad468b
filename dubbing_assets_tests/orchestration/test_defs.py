"""The code location loads, and its graph is the one the design describes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from dubbing_assets.core.requests import STAGES
from dubbing_assets.definitions import defs

ROOT = Path(__file__).resolve().parents[2]


def test_every_stage_is_one_partitioned_asset_in_group_dubbing() -> None:
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == set(STAGES)
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name == "dubbing"
        assert isinstance(node.partitions_def, dg.DynamicPartitionsDefinition)
        assert node.partitions_def.name == "episodes"


def test_graph_edges_follow_the_flow() -> None:
    graph = defs.resolve_asset_graph()

    def parents(name: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}

    assert parents("source_media") == set()
    assert parents("audio_stems") == {"source_media"}
    assert "audio_stems" in parents("script")
    assert parents("cast") >= {"speakers"}
    assert parents("dub_speech") >= {"translation", "cast"}
    assert parents("dub_mix") == {"audio_stems", "dub_speech"}
    assert "dub_mix" in parents("dubbed_video")
    assert "qa_report" in parents("library_entry")


def test_gpu_heavy_assets_use_the_gpu_pool() -> None:
    graph = defs.resolve_asset_graph()
    pools = {k.to_user_string(): graph.get(k).pools for k in graph.get_all_asset_keys()}
    assert pools["script"] == {"gpu"} and pools["dub_speech"] == {"gpu"}


def test_jobs_carry_lane_tags_and_the_sensor_runs_by_default() -> None:
    low = defs.resolve_job_def("dub_episode")
    high = defs.resolve_job_def("dub_episode_high")
    assert low.tags["dubbing/lane"] == "cpu" and high.tags["dubbing/lane"] == "gpu"
    sensor = defs.get_sensor_def("inbox_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert {j.name for j in sensor.jobs} == {"dub_episode", "dub_episode_high"}


def test_qa_checks_are_declared() -> None:
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert {"sync", "overflow", "loudness", "true_peak", "intelligibility"} <= checks


def test_workspace_yaml_validates(tmp_path: Path) -> None:
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path))
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    exe = Path(sys.executable).with_name("dagster")
    proc = subprocess.run([str(exe), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


def test_instance_config_is_valid(tmp_path: Path) -> None:
    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        by_key = {(lim["key"], str(lim.get("value"))): lim["limit"] for lim in limits}
        assert by_key[("dubbing/lane", "gpu")] == 1
        assert any(k[0] == "dubbing/owner" for k in by_key)
    finally:
        instance.dispose()


def test_the_executor_comes_from_dubbing_executor() -> None:
    """In-process by default (one process per run); the others by name; a typo is an error, not a default."""
    import pytest

    from dubbing_assets.errors import ConfigError
    from dubbing_assets.orchestration.jobs import step_executor

    assert defs.resolve_job_def("dub_episode").executor_def is dg.in_process_executor
    assert defs.resolve_job_def("dub_episode_high").executor_def is dg.in_process_executor
    assert step_executor("multiprocess") is dg.multiprocess_executor
    forkserver = step_executor("forkserver")
    assert forkserver.name == "forkserver_executor"
    with pytest.raises(ConfigError, match="DUBBING_EXECUTOR='threads' is not valid"):
        step_executor("threads")
    env = dict(os.environ, DUBBING_EXECUTOR="multiprocess")
    code = ("from dubbing_assets.definitions import defs; "
            "print(defs.resolve_job_def('dub_episode').executor_def.name)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "multiprocess", out.stdout
