"""The two jobs the sensor targets: one per lane, same assets.

Each carries default tags, so runs launched from the UI or by
`dagster job backfill` are routed to a lane too.
"""

import dagster as dg

from dubbing_assets.orchestration.partitions import episodes
from dubbing_assets.orchestration.tags import job_default_tags

GROUP = "dubbing"


def _lane_job(name: str, mode: str, description: str):  # -> an unresolved asset job
    return dg.define_asset_job(name=name, selection=dg.AssetSelection.groups(GROUP), partitions_def=episodes,
                               tags=job_default_tags(mode), description=description)


dub_episode_job = _lane_job(
    "dub_episode", "low", "Dub one episode in low mode (CPU lane): signal-processing stems, Piper voices.")
dub_episode_high_job = _lane_job(
    "dub_episode_high", "high", "Dub one episode in high mode (GPU lane): voice cloning and model-based separation.")
