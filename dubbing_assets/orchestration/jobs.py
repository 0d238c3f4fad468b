"""The two jobs the sensor targets: one per lane, same assets.

Each carries default tags, so runs launched from the UI or by
`dagster job backfill` are routed to a lane too.

The executor is chosen by `DUBBING_EXECUTOR` when the code location loads.
`in_process` (the default) runs a run's stages one after another in its run
worker: one process per run, torch and the engines imported once, where the
multiprocess executor starts a fresh Python for each of the twelve stages
(about 3 s each here, a fifth of a short episode's run; bench/pipeline.py).
`multiprocess` keeps Dagster's default, which runs independent stages side by
side; `forkserver` is the same from a server that has imported the project
once. Pools (the gpu pool) and retries from the failure hold with every one.
"""

import os

import dagster as dg

from dubbing_assets.errors import ConfigError
from dubbing_assets.orchestration.partitions import episodes
from dubbing_assets.orchestration.tags import job_default_tags

GROUP = "dubbing"
EXECUTORS = ("in_process", "multiprocess", "forkserver")


def step_executor(name: str | None = None) -> dg.ExecutorDefinition:
    """The executor DUBBING_EXECUTOR names (or `name`), with a clear error for any other value."""
    name = (name if name is not None else os.environ.get("DUBBING_EXECUTOR", "")).strip() or "in_process"
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "forkserver":
        return dg.multiprocess_executor.configured(
            {"start_method": {"forkserver": {"preload_modules": ["dubbing_assets.definitions"]}}},
            name="forkserver_executor")
    raise ConfigError(f"DUBBING_EXECUTOR={name!r} is not valid; use one of {', '.join(EXECUTORS)}.")


def _lane_job(name: str, mode: str, description: str):  # -> an unresolved asset job
    return dg.define_asset_job(name=name, selection=dg.AssetSelection.groups(GROUP), partitions_def=episodes,
                               tags=job_default_tags(mode), description=description,
                               executor_def=step_executor())


dub_episode_job = _lane_job(
    "dub_episode", "low", "Dub one episode in low mode (CPU lane): signal-processing stems, Piper voices.")
dub_episode_high_job = _lane_job(
    "dub_episode_high", "high", "Dub one episode in high mode (GPU lane): voice cloning and model-based separation.")
