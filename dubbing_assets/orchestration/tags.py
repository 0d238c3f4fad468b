"""Run tags, computed in one place.

The lane tag routes a run to the GPU or CPU queue (limits in dagster.yaml's
`concurrency:` block), the owner tag feeds the per-owner limit, and
`dagster/priority` orders the queue. `dagster/retry_strategy` says how a run
whose worker died is retried (dagster.yaml's `run_retries`): from the failure,
keeping the stages that finished.
"""

from __future__ import annotations

LANE = "dubbing/lane"
OWNER = "dubbing/owner"
PRIORITY = "dagster/priority"
EPISODE = "dubbing/episode"
MODE = "dubbing/mode"
RETRY_STRATEGY = "dagster/retry_strategy"

MODES = ("low", "high")


def lane_for(mode: str) -> str:
    """High mode (voice cloning, lip-sync) needs the GPU; low mode runs on CPUs."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not valid; use 'low' or 'high'.")
    return "gpu" if mode == "high" else "cpu"


def run_tags(*, mode: str = "low", owner: str = "unknown", priority: int = 0, episode: str | None = None
             ) -> dict[str, str]:
    tags = {LANE: lane_for(mode), OWNER: owner or "unknown", PRIORITY: str(int(priority)), MODE: mode,
            RETRY_STRATEGY: "FROM_FAILURE"}
    if episode:
        tags[EPISODE] = episode
    return tags


def job_default_tags(mode: str) -> dict[str, str]:
    """Defaults on the jobs themselves, so `dagster job backfill` runs carry a lane too."""
    return run_tags(mode=mode, owner="backfill", priority=0)
