"""A killed run resumes by itself (issue 14, item 14): `kill -9` of every process of a run in the middle of
`dub_speech`, through a real daemon, ends in a delivered episode with no manual step.

dagster.yaml's `run_retries` (worker deaths only, not stage errors) and the runs' `dagster/retry_strategy:
FROM_FAILURE` make the daemon re-execute the run from the failure: the stages that finished are not run
again. `dubbing wait` follows the retry, and `dubbing status` names the stage the first run stopped in.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from dubbing_assets_tests.e2e_helpers import REPO, make_home, process_tree, start_daemon, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.required, pytest.mark.timeout(1800)]

CLIP = REPO / "dubbing_assets_tests" / "data" / "media" / "ja_two_speakers.mkv"


def _processes_of(instance, run_id: str) -> list[int]:
    """The run worker (the process that reported RUN_START) and all its descendants: the step processes.
    Its parent, the code server, is left alone, as a crash of one run would leave it."""
    import dagster as dg

    workers = {r.event_log_entry.dagster_event.pid for r in instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_START).records}
    return sorted(process_tree(workers))


def _step_events(instance, run_id: str, kind) -> list[str]:
    return [r.event_log_entry.step_key
            for r in instance.get_records_for_run(run_id, of_type=kind, limit=1000).records]


def test_killed_run_is_retried_from_the_failure_and_delivered(tmp_path: Path) -> None:
    import dagster as dg

    from dubbing_assets.orchestration.instance import Runs

    e2e = make_home(tmp_path / "instance", owner="crash-tester")
    ok = False
    try:
        e2e.dubbing("instance", "init")
        start_daemon(e2e, REPO / "workspace.yaml")
        key = e2e.submit(CLIP, "Crash Series", "e01", "--to", "en")
        instance = dg.DagsterInstance.from_config(str(e2e.dagster_home))

        def run_in_dub_speech():
            runs = instance.get_runs(dg.RunsFilter(tags={"dubbing/episode": key}))
            if runs and "dub_speech" in _step_events(instance, runs[0].run_id, dg.DagsterEventType.STEP_START):
                return runs[0]
            return None

        first = wait_until("the run to reach dub_speech", run_in_dub_speech, 600, interval=0.2,
                           on_fail=e2e.diagnostics)
        pids = _processes_of(instance, first.run_id)
        assert pids, "found no process of the run to kill"
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed_at = time.monotonic()
        print(f"[crash] killed {len(pids)} processes of run {first.run_id[:8]} in dub_speech", flush=True)

        waited = e2e.wait(key, 900)
        print(waited.stdout, waited.stderr, flush=True)
        assert waited.returncode == 0, f"`dubbing wait` exited {waited.returncode}\n{e2e.diagnostics()}"
        print(f"[crash] delivered {time.monotonic() - killed_at:.0f}s after the kill", flush=True)
        assert "failed in dub_speech" in waited.stdout, waited.stdout  # wait said what happened, then followed

        runs = instance.get_runs(dg.RunsFilter(tags={"dubbing/episode": key}))
        assert len(runs) == 2, [(r.run_id, r.status) for r in runs]
        retry, parent = runs
        assert parent.run_id == first.run_id and parent.status == dg.DagsterRunStatus.FAILURE
        assert retry.status == dg.DagsterRunStatus.SUCCESS
        assert retry.tags.get("dagster/parent_run_id") == first.run_id
        runs_api = Runs(instance=instance)
        failed = runs_api.failed_stage(next(r for r in runs_api.for_episode(key) if r.run_id == first.run_id))
        assert failed["stage"] == "dub_speech" and failed["will_retry"] == "true", failed
        redone = set(_step_events(instance, retry.run_id, dg.DagsterEventType.STEP_START))
        done_before = set(_step_events(instance, first.run_id, dg.DagsterEventType.STEP_SUCCESS))
        assert "dub_speech" in redone and "library_entry" in redone, redone
        assert not (redone & done_before), f"finished stages ran again: {sorted(redone & done_before)}"
        manifest = e2e.home / "library" / "crash-series" / key / "manifest.json"
        assert manifest.exists()
        status = e2e.dubbing("status", key).stdout
        assert "SUCCESS" in status, status
        instance.dispose()
        ok = True
    finally:
        if not ok:
            print(e2e.diagnostics(), flush=True)
        e2e.procs.stop_all()
