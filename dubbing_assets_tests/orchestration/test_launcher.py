"""The mixed-fleet run launcher (docker/dagster.gpu.yaml): each run's lane picks its image and GPUs.

The launcher is built from the deployment file itself, through Dagster's config schema; the
container each lane gets is checked here without a Docker daemon, and for real in
test_docker_deploy.py (where a high-mode run starts from the gpu lane's image).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._core.storage.dagster_run import DagsterRun

from dubbing_assets.orchestration.launcher import LaneDockerRunLauncher
from dubbing_assets.orchestration.tags import LANE, run_tags

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def launcher(monkeypatch: pytest.MonkeyPatch) -> LaneDockerRunLauncher:
    monkeypatch.setenv("DUBBING_RUN_IMAGE", "dubbing-assets:cpu")
    monkeypatch.setenv("DUBBING_GPU_IMAGE", "dubbing-assets:cuda")
    config = yaml.safe_load((REPO / "docker" / "dagster.gpu.yaml").read_text())["run_launcher"]
    assert config["class"] == "LaneDockerRunLauncher"
    result = process_config(LaneDockerRunLauncher.config_type(), config["config"])
    assert result.success, result.errors
    return LaneDockerRunLauncher(**result.value)


def _run(tags: dict[str, str]) -> DagsterRun:
    return DagsterRun(job_name="dub_episode", run_id="0" * 8 + "-0000-0000-0000-" + "0" * 12, tags=tags)


def test_gpu_lane_gets_the_cuda_image_and_the_gpus(launcher: LaneDockerRunLauncher) -> None:
    run = _run(run_tags(mode="high", owner="a", episode="s__e01"))
    assert launcher.lane_of(run)["image"] == "dubbing-assets:cuda"
    kwargs = launcher.get_container_context(run).container_kwargs
    assert kwargs["device_requests"][0]["driver"] == "nvidia", kwargs
    assert kwargs["volumes"]["dubbing_secrets"]["mode"] == "ro"  # the launcher's own kwargs kept


def test_cpu_lane_keeps_the_code_locations_image_without_gpus(launcher: LaneDockerRunLauncher) -> None:
    for run in (_run(run_tags(mode="low", owner="a")), _run({})):  # no lane tag: an ad-hoc materialization
        assert "image" not in launcher.lane_of(run)  # the code location's image (DAGSTER_CURRENT_IMAGE)
        context = launcher.get_container_context(run)
        assert "device_requests" not in context.container_kwargs
        # the lane's DUBBING_DEVICE=cpu comes after the forwarded one, so it wins in the container
        env_vars = list(context.env_vars)
        assert env_vars.index("DUBBING_DEVICE=cpu") > env_vars.index("DUBBING_DEVICE")


def test_a_lane_the_fleet_does_not_serve_is_refused(launcher: LaneDockerRunLauncher) -> None:
    with pytest.raises(ValueError, match="lane 'tpu'.*lanes: cpu, gpu"):
        launcher.lane_of(_run({LANE: "tpu"}))


def test_without_lanes_it_is_a_plain_docker_run_launcher() -> None:
    launcher = LaneDockerRunLauncher(image="dubbing-assets:cpu", container_kwargs={"auto_remove": True})
    run = _run(run_tags(mode="high"))
    assert launcher.lane_of(run) == {}
    assert launcher.get_container_context(run).container_kwargs == {"auto_remove": True}


def test_bad_lane_kwargs_are_refused_at_start_up() -> None:
    with pytest.raises(Exception, match="'image' cannot be used in 'container_kwargs'"):
        LaneDockerRunLauncher(lanes={"gpu": {"container_kwargs": {"image": "x"}}})
