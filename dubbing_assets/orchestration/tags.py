"""Run tags, computed in one place.

The lane tag routes a run to the GPU or CPU queue (limits in dagster.yaml's
`concurrency:` block), the owner tag feeds the per-owner limit, and
`dagster/priority` orders the queue. `dagster/retry_strategy` says how a run
whose worker died is retried (dagster.yaml's `run_retries`): from the failure,
keeping the stages that finished.

`DUBBING_LANE_TAGS` names a YAML file of extra run tags per lane (for
Kubernetes, docker/k8s/run-tags.yaml: the gpu lane's `dagster-k8s/config`,
which puts its runs in the CUDA image on GPU nodes); mapping values become
JSON, as Dagster's launchers read them. The jobs' default tags read it when
the code location loads, the sensor's on every tick.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from dubbing_assets.errors import ConfigError

LANE = "dubbing/lane"
OWNER = "dubbing/owner"
PRIORITY = "dagster/priority"
EPISODE = "dubbing/episode"
MODE = "dubbing/mode"
RETRY_STRATEGY = "dagster/retry_strategy"

MODES = ("low", "high")
#: GPU-heavy stages share the `gpu` pool (its limit set by `dubbing instance init --gpu-slots`).
GPU_POOL = "gpu"


def lane_for(mode: str) -> str:
    """High mode (voice cloning, lip-sync) needs the GPU; low mode runs on CPUs."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not valid; use 'low' or 'high'.")
    return "gpu" if mode == "high" else "cpu"


def lane_tags(lane: str) -> dict[str, str]:
    """The deployment's extra tags for a lane (DUBBING_LANE_TAGS), {} without the setting."""
    name = os.environ.get("DUBBING_LANE_TAGS", "").strip()
    if not name:
        return {}
    path = Path(name).expanduser()
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"DUBBING_LANE_TAGS={name}: cannot be read as YAML ({exc}).") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict | type(None)) for v in data.values()):
        raise ConfigError(f"DUBBING_LANE_TAGS={name}: expected a mapping of lane -> {{tag: value}}.")
    extra = data.get(lane) or {}
    reserved = set(extra) & {LANE, OWNER, PRIORITY, EPISODE, MODE, RETRY_STRATEGY}
    if reserved:
        raise ConfigError(f"DUBBING_LANE_TAGS={name}: lane {lane!r} sets {sorted(reserved)}, which the project sets.")
    return {str(k): v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in extra.items()}


def run_tags(*, mode: str = "low", owner: str = "unknown", priority: int = 0, episode: str | None = None
             ) -> dict[str, str]:
    lane = lane_for(mode)
    tags = {**lane_tags(lane), LANE: lane, OWNER: owner or "unknown", PRIORITY: str(int(priority)), MODE: mode,
            RETRY_STRATEGY: "FROM_FAILURE"}
    if episode:
        tags[EPISODE] = episode
    return tags


def job_default_tags(mode: str) -> dict[str, str]:
    """Defaults on the jobs themselves, so `dagster job backfill` runs carry a lane too."""
    return run_tags(mode=mode, owner="backfill", priority=0)
