"""A Docker run launcher that routes each run by its lane, for a mixed CPU/GPU fleet.

Dagster's DockerRunLauncher takes the image from the code location (or its
own `image`) and gives every run the same container kwargs, so one instance
cannot send high-mode runs to the CUDA image with the GPUs and low-mode runs
to the small CPU image without them. This launcher reads the run's
`dubbing/lane` tag (tags.py puts it on every run: sensor, UI, backfills) and
applies that lane's image, environment and container kwargs on top of the
launcher's own. It fails closed: when `lanes` is configured, a run whose lane
is not listed is refused with a clear message rather than started in the
wrong image (a GPU job in the CPU image would fall back silently).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import Field, Map, Permissive, Shape, StringSource
from dagster._utils.merger import merge_dicts
from dagster_docker import DockerRunLauncher
from dagster_docker.container_context import DockerContainerContext
from dagster_docker.utils import DOCKER_CONFIG_SCHEMA, validate_docker_config, validate_docker_image

from dubbing_assets.orchestration.tags import LANE

DEFAULT_LANE = "cpu"  # runs launched without a lane tag (an ad-hoc asset materialization) are CPU work

LANE_SCHEMA = Shape({
    "image": Field(StringSource, is_required=False,
                   description="The lane's image; without it the code location's (or the launcher's) image."),
    "env_vars": Field([str], is_required=False, description="Extra KEY or KEY=VALUE entries for the lane's runs."),
    "container_kwargs": Field(Permissive(), is_required=False,
                              description="Extra docker-py create() kwargs for the lane (device_requests, ...)."),
})


class LaneDockerRunLauncher(DockerRunLauncher):
    """DockerRunLauncher plus `lanes: {cpu: {...}, gpu: {...}}` keyed on the run's `dubbing/lane` tag."""

    def __init__(self, inst_data: Any = None, lanes: Mapping[str, Mapping[str, Any]] | None = None,
                 **config: Any) -> None:
        self.lanes = {name: dict(lane) for name, lane in (lanes or {}).items()}
        for lane in self.lanes.values():
            validate_docker_config(None, None, lane.get("container_kwargs"))
            if lane.get("image"):
                validate_docker_image(lane["image"])
        super().__init__(inst_data=inst_data, **config)

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return merge_dicts(DOCKER_CONFIG_SCHEMA, {"lanes": Field(Map(str, LANE_SCHEMA), is_required=False)})

    def lane_of(self, run: Any) -> dict[str, Any]:
        """The lane's settings for a run; {} when no lanes are configured (plain DockerRunLauncher)."""
        if not self.lanes:
            return {}
        name = run.tags.get(LANE, DEFAULT_LANE)
        if name not in self.lanes:
            raise ValueError(
                f"Run {run.run_id} is on lane {name!r}, which this instance's run launcher does not serve "
                f"(lanes: {', '.join(sorted(self.lanes))}); add it under run_launcher.config.lanes in dagster.yaml.")
        return self.lanes[name]

    def get_container_context(self, dagster_run: Any) -> DockerContainerContext:
        context = super().get_container_context(dagster_run)
        lane = self.lane_of(dagster_run)
        if not lane:
            return context
        return context.merge(DockerContainerContext(env_vars=lane.get("env_vars") or [],
                                                    container_kwargs=lane.get("container_kwargs") or {}))

    def _launch_container_with_command(self, run: Any, docker_image: str, command: list[str]) -> None:
        image = self.lane_of(run).get("image") or docker_image
        super()._launch_container_with_command(run, image, command)
