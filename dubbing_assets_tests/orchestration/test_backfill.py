"""Backfills as the README shows them: `dagster job backfill` on the command line.

A real `dagster` CLI process on a temporary DAGSTER_HOME that uses the repo's
dagster.yaml (queued run coordinator). No daemon runs, so the backfill's runs
must stay QUEUED, each carrying its job's default lane tags, and wait for the
queue like any other run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus, RunsFilter

from dubbing_assets.orchestration.tags import LANE, MODE, OWNER, PRIORITY

REPO = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")  # the venv's CLI, next to its python
if not DAGSTER.exists():
    DAGSTER = Path(shutil.which("dagster") or DAGSTER)
SEASON = ["alpha-s01e01", "alpha-s01e02", "alpha-s01e03"]


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("backfill")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DUBBING_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(root / "dagster_home"), DUBBING_HOME=str(root / "dubbing"),
               DAGSTER_DISABLE_TELEMETRY="yes")
    (root / "dagster_home").mkdir()
    shutil.copyfile(REPO / "dagster.yaml", root / "dagster_home" / "dagster.yaml")
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        # What the sensor does when it first sees each episode.
        instance.add_dynamic_partitions("episodes", SEASON)
    yield env


def backfill(env: dict[str, str], *args: str) -> str:
    """Run `dagster job backfill -w workspace.yaml ... --noprompt`; return the backfill id."""
    cmd = [str(DAGSTER), "job", "backfill", "-w", "workspace.yaml", *args, "--noprompt"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.search(r"Launched backfill job `(\w+)`", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return match[1]


def runs_of(env: dict[str, str], backfill_id: str) -> list[DagsterRun]:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert instance.get_backfill(backfill_id) is not None
        return list(instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id})))


def test_season_backfill_of_chosen_episodes_is_queued_in_the_cpu_lane(homes: dict[str, str]) -> None:
    backfill_id = backfill(homes, "-j", "dub_episode", "--partitions", "alpha-s01e01,alpha-s01e02")
    runs = runs_of(homes, backfill_id)
    assert sorted(r.tags["dagster/partition"] for r in runs) == ["alpha-s01e01", "alpha-s01e02"]
    for run in runs:
        assert run.job_name == "dub_episode"
        assert run.status == DagsterRunStatus.QUEUED  # waits for the queue (no daemon here)
        assert (run.tags[LANE], run.tags[MODE], run.tags[OWNER], run.tags[PRIORITY]) == (
            "cpu", "low", "backfill", "0")


def test_backfill_all_episodes(homes: dict[str, str]) -> None:
    runs = runs_of(homes, backfill(homes, "-j", "dub_episode", "--all"))
    assert sorted(r.tags["dagster/partition"] for r in runs) == SEASON
    assert {(r.status, r.tags[LANE]) for r in runs} == {(DagsterRunStatus.QUEUED, "cpu")}


def test_high_mode_backfill_goes_to_the_gpu_lane_with_the_given_owner(homes: dict[str, str]) -> None:
    tags = '{"dubbing/owner": "alice", "dagster/priority": "-5"}'
    runs = runs_of(homes, backfill(homes, "-j", "dub_episode_high", "--partitions", "alpha-s01e03",
                                   "--tags", tags))
    (run,) = runs
    assert run.job_name == "dub_episode_high" and run.status == DagsterRunStatus.QUEUED
    assert (run.tags[LANE], run.tags[MODE], run.tags[OWNER], run.tags[PRIORITY]) == ("gpu", "high", "alice", "-5")
