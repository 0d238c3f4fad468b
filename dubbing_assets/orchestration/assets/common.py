"""What the asset modules share: partitions, the group, failures shown in the UI, metadata tables."""

from __future__ import annotations

import dagster as dg

from dubbing_assets.core.markdown import md_table as md_table
from dubbing_assets.errors import DubbingError
from dubbing_assets.orchestration.jobs import GROUP as GROUP  # one group name, shared with the jobs
from dubbing_assets.orchestration.partitions import episodes
from dubbing_assets.orchestration.tags import GPU_POOL as GPU_POOL

PARTITIONS = episodes


class user_errors:
    """Turn the project's user-facing errors into `dg.Failure` with the message shown in the UI."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and isinstance(exc, DubbingError):
            raise dg.Failure(description=str(exc), metadata={"error": type(exc).__name__}) from exc
        return False
