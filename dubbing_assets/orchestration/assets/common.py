"""Helpers shared by the stage modules: the episode record, failures, metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg

from dubbing_assets.core.safepath import check_slug, safe_join
from dubbing_assets.errors import DubbingError
from dubbing_assets.orchestration.jobs import GROUP as GROUP  # one group name, shared with the jobs
from dubbing_assets.orchestration.partitions import episodes
from dubbing_assets.orchestration.tags import GPU_POOL as GPU_POOL

PARTITIONS = episodes


def episode_record(context: dg.AssetExecutionContext, settings) -> dict[str, Any]:
    """The sensor's record for this partition: source path and submission options."""
    key = check_slug(context.partition_key, "episode key")
    path = safe_join(settings.episodes, f"{key}.json")
    if not path.exists():
        raise dg.Failure(
            description=f"No episode record for {key}: episodes enter through the inbox sensor "
            f"(drop the file into the inbox or run `dubbing submit FILE`), not by adding a partition by hand.")
    return json.loads(path.read_text(encoding="utf-8"))


def source_path(settings, record: dict[str, Any]) -> Path:
    parts = record["source"].split("/")
    if len(parts) != 2:
        raise dg.Failure(description=f"Episode record names an invalid source {record['source']!r}.")
    return safe_join(settings.inbox, *parts)


class user_errors:
    """Turn the project's user-facing errors into `dg.Failure` with the message shown in the UI."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and isinstance(exc, DubbingError):
            raise dg.Failure(description=str(exc), metadata={"error": type(exc).__name__}) from exc
        return False


def md_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |\n" for r in rows)
    return head + body
