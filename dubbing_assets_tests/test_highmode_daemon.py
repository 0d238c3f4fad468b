"""High mode end to end: `ja_two_speakers.mkv` cloned by XTTS v2 through the gpu lane of a real daemon.

Runs in `.venv-high` (marker `highmode`), with the tiny random XTTS v2 and Wav2Lip checkpoints that
`scripts/dev.py tiny-models` writes in `DUBBING_MODELS_DIR`. The voices are noise, so the similarity gate is
opened (`DUBBING_CLONE_MIN_SIMILARITY=-1`: every line keeps its cloned audio; the fallback path is tested
in `highmode/test_xtts.py`); the structure, the timing fit of XTTS audio, the mix, the MKV and QA are real.
A second episode of the same series reuses each character's stored conditioning.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dubbing_assets_tests.e2e_helpers import REPO, make_home, start_daemon, streams_summary

pytestmark = [pytest.mark.e2e, pytest.mark.highmode, pytest.mark.required, pytest.mark.timeout(1800)]

CLIP = REPO / "dubbing_assets_tests" / "data" / "media" / "ja_two_speakers.mkv"
WAIT_S = 900


def _run_of(dagster_home: Path, key: str):
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        runs = instance.get_runs(dg.RunsFilter(tags={"dubbing/episode": key}))
        assert runs, f"no run tagged with episode {key}"
        return runs[0]
    finally:
        instance.dispose()


def test_two_speakers_cloned_through_the_gpu_lane(tmp_path: Path) -> None:
    from dubbing_assets.core.random_models import write_tiny_models

    started = time.monotonic()
    models = tmp_path / "models"
    write_tiny_models(models)
    e2e = make_home(tmp_path / "instance", owner="high-tester",
                    extra_env={"DUBBING_MODELS_DIR": str(models), "DUBBING_CLONE_MIN_SIMILARITY": "-1",
                               "DUBBING_DEVICE": "cpu"})
    ok = False
    try:
        e2e.dubbing("instance", "init")
        start_daemon(e2e, REPO / "workspace.yaml")
        key = e2e.submit(CLIP, "Alpha Series", "e01", "--mode", "high", "--to", "en")
        waited = e2e.wait(key, WAIT_S)
        print(waited.stdout, waited.stderr, flush=True)
        assert waited.returncode == 0, f"`dubbing wait {key}` exited {waited.returncode}\n{e2e.diagnostics()}"
        print(f"[high] e01 delivered {time.monotonic() - started:.0f}s after the start", flush=True)

        run = _run_of(e2e.dagster_home, key)
        assert run.job_name == "dub_episode_high", run.job_name
        assert run.tags.get("dubbing/lane") == "gpu", run.tags

        folder = e2e.home / "library" / "alpha-series" / key
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["mode"] == "high"
        chars = manifest["characters"]
        assert len(chars) == 2, chars
        for label, info in chars.items():
            assert info["engine"] == "xtts", (label, info)
            assert info["reference_s"] >= 3.0, (label, info)
            assert info["conditioning"] == "computed in this episode", (label, info)
            assert info["lines"] and all(ln["engine"] == "xtts" and ln["similarity"] is not None
                                         for ln in info["lines"]), (label, info["lines"])
        assert sum(len(i["lines"]) for i in chars.values()) == 4
        assert "xtts" in manifest["engines"]["tts"]
        checks = manifest["qa"]["checks"]
        # QA is real: timing, loudness and peaks hold, and the random voice's noise is not intelligible.
        assert all(checks[name] for name in ("sync", "overflow", "loudness", "true_peak", "clipping")), checks
        assert checks["intelligibility"] is False and manifest["qa"]["passed"] is False, manifest["qa"]
        report = (folder / "qa_report.md").read_text()
        assert "## Voices (high mode)" in report and "4 of 4 lines spoken by the cloned voice" in report

        video = Path(manifest["video_path"])
        delivered, source = streams_summary(video), streams_summary(CLIP)
        assert [a["language"] for a in delivered["audio"]] == ["eng", "jpn"], delivered["audio"]
        assert delivered["video_frames"] == source["video_frames"]
        assert delivered["subtitles"], delivered["streams"]

        # -- a second episode of the series: the stored conditioning is reused -------------------------
        key2 = e2e.submit(CLIP, "Alpha Series", "e02", "--mode", "high", "--to", "en")
        waited = e2e.wait(key2, WAIT_S)
        assert waited.returncode == 0, f"`dubbing wait {key2}` exited {waited.returncode}\n{e2e.diagnostics()}"
        second = json.loads((e2e.home / "library" / "alpha-series" / key2 / "manifest.json").read_text())
        assert {i["character_id"] for i in second["characters"].values()} == {
            i["character_id"] for i in chars.values()}
        for info in second["characters"].values():
            assert info["engine"] == "xtts" and info["conditioning"] == "reused from the character store", info
        print(f"[high] both episodes delivered in {time.monotonic() - started:.0f}s", flush=True)
        ok = True
    finally:
        if not ok:
            print(e2e.diagnostics(), flush=True)
        e2e.procs.stop_all()
