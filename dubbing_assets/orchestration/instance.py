"""What the `dubbing` CLI needs of the Dagster instance, in one place.

The CLI reads runs, cancels them and prepares the instance; it never imports
Dagster itself (the architecture test enforces it), so a change of Dagster's
API lands here and nowhere else. Runs come back as plain `RunView`s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from dubbing_assets.errors import DubbingError
from dubbing_assets.orchestration.tags import EPISODE, GPU_POOL, LANE

#: Run statuses after which nothing more happens to a run.
TERMINAL = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
#: Statuses a cancel applies to.
CANCELABLE = frozenset({"QUEUED", "NOT_STARTED", "STARTING", "STARTED"})
RUN_KEY = "dagster/run_key"
#: The stages of a failed run's event log that say where it stopped.
_STEP_EVENTS = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS,
                dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_SKIPPED}


@dataclass(frozen=True)
class RunView:
    """One run as the CLI shows it."""

    run_id: str
    status: str
    job: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def lane(self) -> str | None:
        return self.tags.get(LANE)

    @property
    def run_key(self) -> str | None:
        return self.tags.get(RUN_KEY)

    @property
    def retry_of(self) -> str | None:
        return self.tags.get("dagster/parent_run_id")


def _uses_local_sqlite(home: Path) -> bool:
    """True when the instance keeps its storage in SQLite files under DAGSTER_HOME (no storage configured)."""
    config_file = home / "dagster.yaml"
    try:
        config = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
    except (OSError, yaml.YAMLError):
        return True
    return not any(k in (config or {}) for k in ("storage", "run_storage", "event_log_storage",
                                                  "schedule_storage"))


class Runs:
    """The instance, seen from the CLI: an episode's runs, why one failed, cancel, prepare.

    Only `prepare` (for `dubbing instance init`) may create the storage: two
    processes creating SQLite storage at once (a `dubbing wait` racing a
    daemon's first seconds) can leave the schedule database with two alembic
    heads, and the code location never loads again.
    """

    def __init__(self, *, create: bool = False, instance: dg.DagsterInstance | None = None) -> None:
        if instance is not None:  # one the caller opened (tests, tools holding an instance already)
            self._instance = instance
            return
        home = os.environ.get("DAGSTER_HOME", "").strip()
        if home and not create and _uses_local_sqlite(Path(home)):
            missing = [db for db in ("history/runs.db", "schedules/schedules.db") if not (Path(home) / db).exists()]
            if missing:
                raise DubbingError(f"The Dagster instance in DAGSTER_HOME={home} is not initialised ({missing[0]} "
                                   "is missing): run `dubbing instance init` once, before starting dagster-daemon.")
        try:
            self._instance = dg.DagsterInstance.get()
        except Exception as exc:  # noqa: BLE001 - DAGSTER_HOME unset or invalid
            raise DubbingError(f"No Dagster instance: {exc}. Set DAGSTER_HOME to the instance folder.") from exc

    @property
    def retries(self) -> int:
        """How many automatic retries the instance makes of a failed run (0 when run retries are off)."""
        return int(self._instance.run_retries_max_retries) if self._instance.run_retries_enabled else 0

    def for_episode(self, key: str, limit: int = 20) -> list[RunView]:
        """The episode's runs, newest first."""
        runs = self._instance.get_runs(filters=dg.RunsFilter(tags={EPISODE: key}), limit=limit)
        return [RunView(r.run_id, r.status.value, r.job_name, dict(r.tags)) for r in runs]

    def failed_stage(self, run: RunView) -> dict[str, Any] | None:
        """The stage a failed run stopped in and why: a step that failed, else one that started and never
        ended (its worker died), with the run's failure reason and whether a retry from the failure follows."""
        if run.status != "FAILURE":
            return None
        started, ended, failed = [], set(), {}
        for record in self._instance.get_records_for_run(run.run_id, of_type=_STEP_EVENTS, limit=1000).records:
            entry = record.event_log_entry
            step, kind = entry.step_key, entry.dagster_event.event_type
            if kind == dg.DagsterEventType.STEP_START:
                started.append(step)
            elif kind == dg.DagsterEventType.STEP_FAILURE:
                error = entry.dagster_event.step_failure_data.error
                failed[step] = error.message.strip().splitlines()[-1][:300] if error else "failed"
            else:
                ended.add(step)
        stage = next(iter(failed), None) or next((st for st in started if st not in ended), None)
        reason = failed.get(stage) if stage in failed else None
        if reason is None:
            tag = run.tags.get("dagster/failure_reason", "")
            reason = ("the run worker stopped while this stage ran (killed, out of memory or a restart)"
                      if tag in ("", "RUN_WORKER_DIED", "UNEXPECTED_TERMINATION", "UNKNOWN") else tag.lower())
        will_retry = run.tags.get("dagster/will_retry")
        attempt = int(run.tags.get("dagster/retry_number", "0"))
        if will_retry == "true":
            nxt = (f"retrying from {stage or 'the failure'} (retry {attempt + 1} of {self.retries}); "
                   "finished stages are kept")
        elif will_retry == "false" or not self.retries:
            nxt = f"no automatic retry; fix the cause, then `dubbing rerun EPISODE --from {stage or 'STAGE'}`"
        else:
            nxt = "the daemon is deciding whether to retry it"
        return {"stage": stage, "reason": reason, "next": nxt, "will_retry": will_retry}

    def cancel(self, run: RunView) -> None:
        self._instance.run_coordinator.cancel_run(run.run_id)

    def prepare(self, gpu_slots: int) -> None:
        """Create the run, event and schedule storage the daemon and sensors use; set the gpu pool's limit."""
        self._instance.get_runs(limit=1)
        self._instance.all_instigator_state()
        self._instance.event_log_storage.set_concurrency_slots(GPU_POOL, gpu_slots)


__all__ = ["CANCELABLE", "GPU_POOL", "TERMINAL", "RunView", "Runs"]
