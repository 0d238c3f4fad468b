"""Fresh-machine smoke test: a real dagster-daemon dubs a synthetic clip submitted with the CLI.

The clip is built here (ffmpeg `testsrc` video + Piper speech as AAC), the
instance lives in temporary folders, and the only way in is `dubbing submit`
(the inbox sensor queues the run). A second, different clip under the same
series/episode must update the library manifest in place.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dubbing_assets_tests.e2e_helpers import (
    FFMPEG_SKIP,
    REPO,
    find_ffmpeg,
    make_clip,
    make_home,
    start_daemon,
    streams_summary,
)

pytestmark = [pytest.mark.e2e, pytest.mark.required, pytest.mark.timeout(1800)]

SERIES, EPISODE = "Smoke Series", "e01"
WAIT_S = 600


def _manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    assert path.exists(), f"manifest.json was not written in {folder} (found: {sorted(folder.glob('*'))})"
    return json.loads(path.read_text())


def _assert_one_process_per_run(e2e, key: str) -> None:
    """The default executor (DUBBING_EXECUTOR=in_process) runs every stage in the run worker: no stage pays
    for a new Python with torch imported again."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(e2e.dagster_home)) as instance:
        (run,) = instance.get_runs(dg.RunsFilter(tags={"dubbing/episode": key}))
        pids: dict[str, set[int]] = {}
        for kind in (dg.DagsterEventType.RUN_START, dg.DagsterEventType.STEP_START):
            for record in instance.get_records_for_run(run.run_id, of_type=kind, limit=1000).records:
                pids.setdefault(kind.name, set()).add(record.event_log_entry.dagster_event.pid)
    assert len(pids.get("STEP_START", ())) == 1 and pids["STEP_START"] == pids.get("RUN_START"), (
        f"the run's stages ran in more than its run worker's process: {pids}")


def test_fresh_machine_dubs_a_clip_through_the_daemon(tmp_path: Path) -> None:
    ffmpeg = find_ffmpeg()
    assert ffmpeg is not None, FFMPEG_SKIP  # imageio-ffmpeg, a dependency, ships one: none at all is a bug
    started = time.monotonic()
    clip1 = make_clip(tmp_path / "clip1.mp4", "Good morning. The train leaves soon.", ffmpeg=ffmpeg)
    clip2 = make_clip(tmp_path / "clip2.mp4", "Hello there. Where is my ticket?", ffmpeg=ffmpeg)

    e2e = make_home(tmp_path / "instance", owner="smoke-tester")
    workspace = REPO / "workspace.yaml"
    ok = False
    try:
        e2e.dubbing("instance", "init")
        t_daemon = time.monotonic()
        start_daemon(e2e, workspace)
        print(f"[smoke] daemon ready in {time.monotonic() - t_daemon:.1f}s", flush=True)

        # -- first submission ------------------------------------------------------------------------
        t_run = time.monotonic()
        key = e2e.submit(clip1, SERIES, EPISODE)
        assert key == "smoke-series-e01", f"unexpected episode key {key!r}"
        waited = e2e.wait(key, WAIT_S)
        print(waited.stdout, waited.stderr, flush=True)
        assert waited.returncode == 0, (f"`dubbing wait {key}` exited {waited.returncode} "
                                        f"(0 success, 1 failure, 2 timeout)\n{e2e.diagnostics()}")
        print(f"[smoke] first run done in {time.monotonic() - t_run:.1f}s", flush=True)
        _assert_one_process_per_run(e2e, key)

        folder = e2e.home / "library" / "smoke-series" / key
        first = _manifest(folder)
        assert first["visibility"] == "private", first
        video = Path(first["video_path"])
        assert video.exists() and video.stat().st_size > 0, f"delivered video {video} missing"
        assert video.parent == folder and video.name.startswith(key), video

        delivered = streams_summary(video)
        source = streams_summary(clip1)
        vids = [s for s in delivered["streams"] if s["type"] == "video"]
        assert len(vids) == 1, delivered["streams"]
        assert vids[0]["codec"] == "h264" and (vids[0]["width"], vids[0]["height"]) == (320, 240), vids
        assert delivered["video_frames"] == source["video_frames"], (
            f"video not copied frame for frame: {delivered['video_frames']} vs {source['video_frames']}")
        audio = delivered["audio"]
        assert len(audio) == 2, f"expected dub + original audio, got {audio}"
        langs = [a["language"] for a in audio]
        assert langs == ["eng", "eng"], f"expected the dub and the original tagged 'eng': {langs}"
        assert delivered["subtitles"], f"no subtitle track in {video.name}: {delivered['streams']}"
        for name in ("qa_report.md", "qa_timeline.png"):
            assert (folder / name).exists(), f"{name} missing in {folder}"

        # -- a changed clip under the same series/episode updates the entry ---------------------------
        time.sleep(1.1)  # timestamps have sub-second precision, but keep them clearly apart
        t_run2 = time.monotonic()
        key2 = e2e.submit(clip2, SERIES, EPISODE)
        assert key2 == key, f"resubmission got another key: {key2!r} != {key!r}"
        # No waiting for the sensor here: `dubbing wait` itself waits while the request is pending.
        waited = e2e.wait(key, WAIT_S)
        print(waited.stdout, waited.stderr, flush=True)
        assert waited.returncode == 0, f"2nd `dubbing wait` exited {waited.returncode}\n{e2e.diagnostics()}"
        second = _manifest(folder)
        if second["updated_at"] == first["updated_at"]:
            raise AssertionError(
                "`dubbing wait` returned success for the resubmitted clip but the manifest was not "
                f"rewritten: it reported the earlier run.\nfirst={first}\nsecond={second}\n{e2e.diagnostics()}")
        print(f"[smoke] second run done in {time.monotonic() - t_run2:.1f}s", flush=True)
        assert second["created_at"] == first["created_at"], (first["created_at"], second["created_at"])
        assert second["updated_at"] > first["updated_at"], (first["updated_at"], second["updated_at"])
        fp1, fp2 = first["source"]["fingerprint"], second["source"]["fingerprint"]
        assert fp1 and fp2 and fp1 != fp2, f"source fingerprint did not change: {fp1!r} -> {fp2!r}"
        assert second["visibility"] == "private"
        assert Path(second["video_path"]).exists()
        ok = True
    finally:
        if not ok:
            print(e2e.diagnostics(), flush=True)
        e2e.procs.stop_all()
        print(f"[smoke] wall time {time.monotonic() - started:.1f}s", flush=True)

