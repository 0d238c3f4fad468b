"""Queue limits: Dagster's own queued-run daemon, driven on an instance configured by the repo's dagster.yaml.

The run launcher is Dagster's `MockedRunLauncher`: it launches nothing, so a
dequeued run stays STARTING (or STARTED once we say so) and keeps its slot
until the test marks it finished.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteRepositoryOrigin
from dagster._core.storage.dagster_run import (
    IN_PROGRESS_RUN_STATUSES,
    DagsterRun,
    DagsterRunStatus,
    RunsFilter,
)
from dagster._core.test_utils import create_run_for_test, create_test_daemon_workspace_context
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from dubbing_assets.definitions import defs
from dubbing_assets.orchestration.tags import LANE, OWNER, PRIORITY, run_tags

REPO = Path(__file__).resolve().parents[2]
CONFIG: dict[str, Any] = yaml.safe_load((REPO / "dagster.yaml").read_text())
RUN_LIMITS = CONFIG["concurrency"]["runs"]


def _limit(key: str, value: Any) -> int:
    (limit,) = [t["limit"] for t in RUN_LIMITS["tag_concurrency_limits"] if t["key"] == key and t["value"] == value]
    return limit


GPU_LIMIT = _limit(LANE, "gpu")
CPU_LIMIT = _limit(LANE, "cpu")
OWNER_LIMIT = _limit(OWNER, {"applyLimitPerUniqueValue": True})
MAX_RUNS = RUN_LIMITS["max_concurrent_runs"]

# (owner, mode, priority) in submission order: 3 owners, both lanes, mixed priorities.
SUBMISSIONS = [
    ("alice", "low", 7), ("alice", "low", 6), ("alice", "high", 5), ("bob", "low", 1),
    ("bob", "high", 0), ("bob", "high", 9), ("carol", "low", 3), ("carol", "low", 0),
    ("carol", "high", 2), ("alice", "low", 8), ("bob", "low", -1), ("carol", "high", 0),
]


def test_repo_config_is_what_this_test_assumes() -> None:
    assert CONFIG["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert (GPU_LIMIT, CPU_LIMIT, OWNER_LIMIT) == (1, 2, 2)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    overrides = {**CONFIG, "run_launcher": {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}}
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(overrides=overrides, temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def workspace(instance: dg.DagsterInstance) -> Iterator[WorkspaceProcessContext]:
    with create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as context:
        yield context


def _submit(instance: dg.DagsterInstance, owner: str, mode: str, priority: int, n: int,
            key: str | None = None) -> DagsterRun:
    """A QUEUED run as the sensor's request would create it: job default tags, then the request's tags."""
    job = defs.resolve_job_def("dub_episode_high" if mode == "high" else "dub_episode")
    key = key or f"show-e{n:02d}"
    tags = {**job.tags, **run_tags(mode=mode, owner=owner, priority=priority, episode=key),
            "dagster/partition": key}
    origin = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("dubbing_assets"), "__repository__")
    return create_run_for_test(instance, job_name=job.name, status=DagsterRunStatus.QUEUED, tags=tags,
                               remote_job_origin=origin.get_job_origin(job.name))


def _in_progress(instance: dg.DagsterInstance) -> list[DagsterRun]:
    return list(instance.get_runs(RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES))))


def _queued(instance: dg.DagsterInstance) -> list[DagsterRun]:
    return list(instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.QUEUED])))


def _priority(run: DagsterRun) -> int:
    return int(run.tags[PRIORITY])


def _summary(runs: list[DagsterRun]) -> list[tuple[str, str, int]]:
    return [(r.tags[OWNER], r.tags[LANE], _priority(r)) for r in runs]


def _blockers(run: DagsterRun, running: list[DagsterRun]) -> set[str]:
    """Which of dagster.yaml's limits keep `run` from starting next to `running` (empty: it may start)."""
    lanes = Counter(r.tags[LANE] for r in running)
    owners = Counter(r.tags[OWNER] for r in running)
    blockers = set()
    if len(running) >= MAX_RUNS:
        blockers.add("max_concurrent_runs")
    if lanes[run.tags[LANE]] >= {"gpu": GPU_LIMIT, "cpu": CPU_LIMIT}[run.tags[LANE]]:
        blockers.add("lane")
    if owners[run.tags[OWNER]] >= OWNER_LIMIT:
        blockers.add("owner")
    return blockers


def _finish(instance: dg.DagsterInstance, run: DagsterRun) -> None:
    event = DagsterEvent(event_type_value=DagsterEventType.RUN_SUCCESS.value, job_name=run.job_name)
    instance.report_dagster_event(event, run_id=run.run_id)


def _start(instance: dg.DagsterInstance, run: DagsterRun) -> None:
    event = DagsterEvent(event_type_value=DagsterEventType.RUN_START.value, job_name=run.job_name)
    instance.report_dagster_event(event, run_id=run.run_id)


def test_queue_holds_lane_and_owner_limits_and_orders_by_priority(
        instance: dg.DagsterInstance, workspace: WorkspaceProcessContext) -> None:
    for n, (owner, mode, priority) in enumerate(SUBMISSIONS):
        _submit(instance, owner, mode, priority, n)
    assert len(_queued(instance)) == 12
    launcher = instance.run_launcher
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)

    launch_order: list[list[DagsterRun]] = []
    owner_only_blocks = 0
    for _ in range(40):
        before = len(launcher.queue())
        list(daemon.run_iteration(workspace))
        launched = [instance.get_run_by_id(r.run_id) for r in launcher.queue()[before:]]
        launch_order.append(launched)
        running = _in_progress(instance)
        queued = _queued(instance)

        # The limits from dagster.yaml hold at every step.
        lanes = Counter(r.tags[LANE] for r in running)
        owners = Counter(r.tags[OWNER] for r in running)
        assert lanes["gpu"] <= GPU_LIMIT, _summary(running)
        assert lanes["cpu"] <= CPU_LIMIT, _summary(running)
        assert max(owners.values(), default=0) <= OWNER_LIMIT, _summary(running)
        assert len(running) <= MAX_RUNS

        # Within one pass, runs launch in priority order, and every run left queued is held back by a
        # limit when its turn came, that is next to the runs already going plus those launched in this
        # pass ahead of it (higher or equal priority): a run of higher priority is never passed over.
        assert [_priority(r) for r in launched] == sorted((_priority(r) for r in launched), reverse=True)
        launched_ids = {r.run_id for r in launched}
        for run in queued:
            ahead = [r for r in running if r.run_id not in launched_ids or _priority(r) >= _priority(run)]
            blockers = _blockers(run, ahead)
            assert blockers, f"{_summary([run])} could have started next to {_summary(ahead)}"
            owner_only_blocks += blockers == {"owner"}

        if not queued and not running:
            break
        # Some launched runs report STARTED; the oldest in-progress one finishes before the next pass.
        for run in running:
            if run.status == DagsterRunStatus.STARTING and _priority(run) % 2 == 0:
                _start(instance, run)
        if running:
            launch_index = {r.run_id: i for i, r in enumerate(launcher.queue())}
            _finish(instance, min(running, key=lambda r: launch_index[r.run_id]))
    else:
        pytest.fail("the queue never drained")

    launched_ids = [r.run_id for batch in launch_order for r in batch]
    assert len(launched_ids) == 12 and len(set(launched_ids)) == 12
    # First pass: the top run of each lane and owner, best priority first, until the lanes are full.
    assert _summary(launch_order[0]) == [
        ("bob", "gpu", 9), ("alice", "cpu", 8), ("alice", "cpu", 7)]
    # The per-owner limit was actually exercised: a lane had room but the owner did not.
    assert owner_only_blocks > 0


def test_owner_limit_alone_holds_a_third_run_back(
        instance: dg.DagsterInstance, workspace: WorkspaceProcessContext) -> None:
    """alice fills both her slots; her third run waits although the CPU lane has room for it."""
    for n, (mode, priority) in enumerate([("high", 5), ("low", 4), ("low", 3)]):
        _submit(instance, "alice", mode, priority, n)
    _submit(instance, "bob", "low", 0, 9)
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
    list(daemon.run_iteration(workspace))
    running = _in_progress(instance)
    # bob's priority-0 run took the CPU slot that alice's priority-3 run could not have.
    assert sorted((r.tags[OWNER], _priority(r)) for r in running) == [("alice", 4), ("alice", 5), ("bob", 0)]
    (waiting,) = _queued(instance)
    assert (waiting.tags[OWNER], _priority(waiting)) == ("alice", 3)
    _finish(instance, next(r for r in running if r.tags[OWNER] == "bob"))
    list(daemon.run_iteration(workspace))
    # The CPU lane has a free slot now, yet alice already holds two: still queued.
    (waiting,) = _queued(instance)
    assert _blockers(waiting, _in_progress(instance)) == {"owner"}
    _finish(instance, next(r for r in _in_progress(instance) if _priority(r) == 5))
    list(daemon.run_iteration(workspace))
    assert _queued(instance) == []


def test_one_run_per_episode_at_a_time(instance: dg.DagsterInstance, workspace: WorkspaceProcessContext) -> None:
    """Two runs of one episode (a resubmission, a UI launch, a backfill) never run together: they would
    replace each other's artifacts. Another episode is not held back by it."""
    assert _limit("dagster/partition", {"applyLimitPerUniqueValue": True}) == 1
    first = _submit(instance, "alice", "low", 5, 0, key="show-e01")
    again = _submit(instance, "bob", "low", 9, 1, key="show-e01")
    other = _submit(instance, "carol", "low", 0, 2, key="show-e02")
    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
    list(daemon.run_iteration(workspace))
    running = {r.run_id for r in _in_progress(instance)}
    # bob's run has the higher priority, so it went first; alice's waits for it, carol's does not.
    assert running == {again.run_id, other.run_id}, _summary(_in_progress(instance))
    assert [r.run_id for r in _queued(instance)] == [first.run_id]
    _finish(instance, instance.get_run_by_id(again.run_id))
    list(daemon.run_iteration(workspace))
    assert first.run_id in {r.run_id for r in _in_progress(instance)} and _queued(instance) == []
