"""The inbox sensor, evaluated for real with `build_sensor_context` on a temporary instance.

Each tick goes through `inbox_sensor.evaluate_tick`, which also resolves the run
requests against the code location (job names, partitions, asset selections)
the way the sensor daemon does; the dynamic-partition requests it returns are
then applied to the instance, as the daemon would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun, DagsterRunStatus
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG
from dagster._core.utils import make_new_run_id

from dubbing_assets.core import review
from dubbing_assets.core.contracts import TranslatedLine, Translation
from dubbing_assets.core.inbox import episode_key
from dubbing_assets.core.requests import SubmitOptions, write_rerun_request, write_submit_request
from dubbing_assets.core.safepath import is_slug
from dubbing_assets.core.settings import Settings, load_settings
from dubbing_assets.definitions import defs
from dubbing_assets.orchestration.sensor import inbox_sensor
from dubbing_assets.orchestration.tags import EPISODE, LANE, MODE, OWNER, PRIORITY
from dubbing_assets_tests.conftest import MEDIA

CLIP = MEDIA / "en_monologue.mp4"
RUN_KEY = re.compile(r"^(?P<key>[a-z0-9-]+):r(?P<rev>[0-9]+):(?P<fp>[0-9a-f]{16})$")


@pytest.fixture
def instance(dubbing_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    monkeypatch.setenv("DUBBING_OWNER", "tester")
    monkeypatch.delenv("DUBBING_SENSOR_MAX_REQUESTS", raising=False)
    # most tests here take a file on its second sighting; the settle rule's own tests set the defaults
    monkeypatch.setenv("DUBBING_INBOX_STABLE_TICKS", "1")
    monkeypatch.setenv("DUBBING_INBOX_SETTLE_S", "0")
    with dg.instance_for_test(temp_dir=os.environ["DAGSTER_HOME"]) as inst:
        yield inst


def _settings() -> Settings:
    return load_settings().ensure()


def tick(instance: dg.DagsterInstance, *, accept: bool = True) -> dg.SensorResult:
    """One sensor evaluation; returns the resolved run requests and partition requests.

    With `accept` (the default) the result is applied as the sensor daemon applies it: partitions
    added, and one run created per run key this sensor has no run for yet (tagged like the daemon's
    runs, never launched). Without it the result is lost, as when a tick's gRPC call times out.
    """
    # instance_ref as well: with it the context loads dynamic partitions the way the daemon's does.
    context = dg.build_sensor_context(instance=instance, instance_ref=instance.get_ref(), definitions=defs,
                                      sensor_name="inbox_sensor")
    data = inbox_sensor.evaluate_tick(context)
    if accept:
        for request in data.dynamic_partitions_requests or []:
            assert isinstance(request, dg.AddDynamicPartitionsRequest)
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        for request in data.run_requests or []:
            tags = {**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: "inbox_sensor"}
            if request.run_key and instance.get_run_records(dg.RunsFilter(tags={
                    RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: "inbox_sensor"}), limit=1):
                continue  # the daemon's dedup: one run per run key
            instance.add_run(DagsterRun(job_name=request.job_name or "dub_episode", run_id=make_new_run_id(),
                                        tags=tags, status=DagsterRunStatus.NOT_STARTED))
    return dg.SensorResult(run_requests=data.run_requests,
                           dynamic_partitions_requests=data.dynamic_partitions_requests or None)


def drop(series: str, name: str, src: Path = CLIP) -> Path:
    folder = _settings().inbox / series
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    shutil.copyfile(src, dest)
    return dest


def added_keys(result: dg.SensorResult) -> list[str]:
    return [k for r in result.dynamic_partitions_requests or [] for k in r.partition_keys]


def bump_mtime(path: Path, seconds: int = 1) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


def test_new_file_gives_one_request_after_it_is_stable(instance: dg.DagsterInstance) -> None:
    drop("Alpha Series", "Alpha Series - 01.mp4")
    first = tick(instance)
    assert first.run_requests == [] and not first.dynamic_partitions_requests

    second = tick(instance)
    assert len(second.run_requests) == 1
    req = second.run_requests[0]
    assert req.job_name == "dub_episode"
    assert req.partition_key == "alpha-series-e01"
    record = json.loads((_settings().episodes / "alpha-series-e01.json").read_text())
    match = RUN_KEY.match(req.run_key or "")
    assert match and match["key"] == "alpha-series-e01" and record["fingerprint"].startswith(match["fp"])
    assert record["source"] == "Alpha Series/Alpha Series - 01.mp4" and record["owner"] == "tester"
    assert req.tags[LANE] == "cpu" and req.tags[OWNER] == "tester" and req.tags[PRIORITY] == "0"
    assert req.tags[MODE] == "low" and req.tags[EPISODE] == "alpha-series-e01"
    assert second.dynamic_partitions_requests == [
        dg.AddDynamicPartitionsRequest(partitions_def_name="episodes", partition_keys=["alpha-series-e01"])]
    assert instance.get_dynamic_partitions("episodes") == ["alpha-series-e01"]

    # The same file again: nothing, however often the sensor ticks.
    for _ in range(2):
        again = tick(instance)
        assert again.run_requests == [] and not again.dynamic_partitions_requests


def test_modified_file_gives_a_new_request(instance: dg.DagsterInstance) -> None:
    path = drop("show", "S01E02.mp4")
    tick(instance)
    (first,) = tick(instance).run_requests
    with open(path, "ab") as fh:
        fh.write(b"\0" * 64)
    bump_mtime(path)
    assert tick(instance).run_requests == []  # changed: wait until it is stable again
    result = tick(instance)
    (second,) = result.run_requests
    assert second.partition_key == first.partition_key == "show-s01e02"
    assert second.run_key != first.run_key
    assert not result.dynamic_partitions_requests  # the partition already exists


def test_reverting_a_file_runs_again(instance: dg.DagsterInstance) -> None:
    """A -> B -> A: the third version is new work (its run key differs from the first's)."""
    path = drop("show", "S01E04.mp4")
    original = path.read_bytes()
    keys = []
    for content in (None, original + b"\0" * 64, original):
        if content is not None:
            path.write_bytes(content)
            bump_mtime(path)
        tick(instance)
        (req,) = tick(instance).run_requests
        keys.append(req.run_key)
    assert len(set(keys)) == 3 and keys[0].split(":")[-1] == keys[2].split(":")[-1]


def test_same_content_dropped_again_after_deletion_does_nothing(instance: dg.DagsterInstance) -> None:
    path = drop("show", "S01E05.mp4")
    tick(instance)
    assert len(tick(instance).run_requests) == 1
    data = path.read_bytes()
    path.unlink()
    tick(instance)
    path.write_bytes(data)
    for _ in range(3):
        assert tick(instance).run_requests == []


def test_touched_but_identical_file_gives_no_request(instance: dg.DagsterInstance) -> None:
    path = drop("show", "S01E03.mp4")
    tick(instance)
    assert len(tick(instance).run_requests) == 1
    bump_mtime(path)  # e.g. copied over with the same bytes
    assert tick(instance).run_requests == []
    assert tick(instance).run_requests == []


def test_partial_upload_waits_until_stable(instance: dg.DagsterInstance) -> None:
    data = CLIP.read_bytes()
    folder = _settings().inbox / "show"
    folder.mkdir(parents=True)
    path = folder / "e05.mp4"
    for i in range(1, 4):  # still growing at every tick
        path.write_bytes(data[: len(data) * i // 4])
        os.utime(path, ns=(10**18 + i, 10**18 + i))
        assert tick(instance).run_requests == []
    path.write_bytes(data)
    assert tick(instance).run_requests == []
    (req,) = tick(instance).run_requests
    assert req.partition_key == "show-e05"


def test_upload_suffixes_are_ignored_until_renamed(instance: dg.DagsterInstance) -> None:
    part = drop("show", "e06.mkv.part", MEDIA / "ja_two_speakers.mkv")
    for _ in range(3):
        assert tick(instance).run_requests == []
    part.rename(part.with_name("e06.mkv"))
    assert tick(instance).run_requests == []
    assert [r.partition_key for r in tick(instance).run_requests] == ["show-e06"]


def test_bad_file_is_quarantined_with_its_reason(instance: dg.DagsterInstance) -> None:
    settings = _settings()
    folder = settings.inbox / "show"
    folder.mkdir(parents=True)
    (folder / "e01.mp4").write_text("this is not a video\n")
    (folder / "e02.mkv").write_bytes(b"")
    _age(folder / "e02.mkv", 601)  # empty for longer than an upload takes to start writing
    assert tick(instance).run_requests == []
    result = tick(instance)
    assert result.run_requests == [] and not result.dynamic_partitions_requests
    assert not (folder / "e01.mp4").exists() and not (folder / "e02.mkv").exists()
    reasons = sorted((settings.quarantine / "show").glob("*.reason.txt"))
    assert len(reasons) == 2
    texts = " ".join(p.read_text() for p in reasons)
    assert "not a video or audio container" in texts and "empty" in texts
    for reason in reasons:  # the file itself sits next to its reason
        assert reason.with_name(reason.name.removesuffix(".reason.txt")).exists()
    assert tick(instance).run_requests == []
    assert instance.get_dynamic_partitions("episodes") == []


def test_two_bad_files_with_the_same_slug_are_both_kept(instance: dg.DagsterInstance) -> None:
    folder = _settings().inbox / "show"
    folder.mkdir(parents=True)
    (folder / "Bad E01.mp4").write_text("one\n")
    (folder / "bad-e01.mp4").write_text("two\n")
    tick(instance)
    tick(instance)
    kept = sorted(p.read_text() for p in (_settings().quarantine / "show").iterdir()
                  if not p.name.endswith(".reason.txt"))
    assert kept == ["one\n", "two\n"]


def test_fifty_files_are_spread_over_ticks_and_requested_once(instance: dg.DagsterInstance,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUBBING_SENSOR_MAX_REQUESTS", "20")
    folder = _settings().inbox / "bulk"
    folder.mkdir(parents=True)
    for i in range(50):  # tiny distinct Matroska files
        (folder / f"e{i:03d}.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + i.to_bytes(4, "big") * 8)
    assert tick(instance).run_requests == []
    per_tick: list[int] = []
    run_keys: list[str] = []
    partitions: list[str] = []
    for _ in range(4):
        result = tick(instance)
        per_tick.append(len(result.run_requests))
        run_keys += [r.run_key for r in result.run_requests]
        partitions += [r.partition_key for r in result.run_requests]
        assert sorted(added_keys(result)) == sorted(r.partition_key for r in result.run_requests)
    assert per_tick == [20, 20, 10, 0]
    assert len(set(run_keys)) == 50 and len(set(partitions)) == 50
    assert set(partitions) == {f"bulk-e{i:02d}" for i in range(50)}
    assert sorted(instance.get_dynamic_partitions("episodes")) == sorted(partitions)


HOSTILE = [
    ("Show [BD] (2024)", "weird {x} [1080p].mkv"),
    ("ショー", "第1話.mkv"),
    ("show", "$(rm -rf ~) ; e09.mkv"),
    ("show", "new\nline e10.mkv"),
    ("show", "..e11.mkv"),
    ("-dash", "-e12-.mkv"),
    ("show", "x" * 240 + ".mkv"),
    ("..hidden-series", "e13.mkv"),
]


def test_hostile_names_give_safe_keys(instance: dg.DagsterInstance) -> None:
    settings = _settings()
    for series, name in HOSTILE:
        drop(series, name, MEDIA / "ja_two_speakers.mkv")
    # A name that is not even UTF-8 (bytes straight from a foreign filesystem).
    raw = os.path.join(os.fsencode(settings.inbox / "show"), b"\xff\xfe e14.mkv")
    shutil.copyfile(MEDIA / "ja_two_speakers.mkv", raw)
    tick(instance)
    result = tick(instance)
    keys = [r.partition_key for r in result.run_requests]
    assert len(keys) == len(HOSTILE)  # dot-names ("..e11.mkv", "..hidden-series/") are episodes too, safely keyed
    assert len(set(keys)) == len(keys)
    for req in result.run_requests:
        assert is_slug(req.partition_key) and len(req.partition_key) <= 120
        assert RUN_KEY.match(req.run_key or "")
        assert is_slug(req.tags[EPISODE])
    assert sorted(added_keys(result)) == sorted(keys)
    # Records are only ever written under episodes/, named by the key.
    assert sorted(p.stem for p in settings.episodes.iterdir()) == sorted(keys)
    # The undecodable name never reaches a key: it is quarantined with a readable reason.
    assert not os.path.exists(raw)
    (reason,) = (settings.quarantine / "show").glob("*.reason.txt")
    assert "UTF-8" in reason.read_text(encoding="utf-8")
    assert tick(instance).run_requests == []


def test_submit_request_selects_the_gpu_lane_and_tags(instance: dg.DagsterInstance) -> None:
    settings = _settings()
    key = episode_key("beta", "Beta S01E04.mkv")
    write_submit_request(settings.requests, key,
                         SubmitOptions(owner="alice", mode="high", priority=7, target_lang="de"))
    drop("beta", "Beta S01E04.mkv", MEDIA / "ja_two_speakers.mkv")
    tick(instance)
    (req,) = tick(instance).run_requests
    assert req.job_name == "dub_episode_high" and req.partition_key == key == "beta-s01e04"
    assert req.tags[LANE] == "gpu" and req.tags[OWNER] == "alice" and req.tags[PRIORITY] == "7"
    assert req.tags[MODE] == "high"
    record = json.loads((settings.episodes / f"{key}.json").read_text())
    assert (record["mode"], record["owner"], record["target_lang"]) == ("high", "alice", "de")


def _requested(instance: dg.DagsterInstance, series: str = "show", name: str = "e01.mp4") -> str:
    drop(series, name)
    tick(instance)
    (req,) = tick(instance).run_requests
    return req.partition_key


def _downstream_of(stage: str) -> set[str]:
    graph = defs.resolve_asset_graph()
    return {k.to_user_string() for k in dg.AssetSelection.assets(stage).downstream().resolve(graph)}


def _upstream_of(stage: str) -> set[str]:
    graph = defs.resolve_asset_graph()
    return {k.to_user_string() for k in dg.AssetSelection.assets(stage).upstream().resolve(graph)} - {stage}


@pytest.mark.parametrize("stage", ["translation", "audio_stems", "dub_mix", "library_entry"])
def test_rerun_request_selects_the_stage_and_downstream(instance: dg.DagsterInstance, stage: str) -> None:
    settings = _settings()
    key = _requested(instance)
    path = write_rerun_request(settings.requests, key, stage)
    result = tick(instance)
    (req,) = result.run_requests
    selected = {k.to_user_string() for k in req.asset_selection or []}
    assert stage in selected and _downstream_of(stage) <= selected
    assert not selected & _upstream_of(stage)
    assert req.partition_key == key and req.job_name == "dub_episode"
    assert req.run_key == f"rerun:{path.stem.removeprefix('rerun-')}"
    assert req.tags[LANE] == "cpu" and req.tags[OWNER] == "tester"
    assert not path.exists() and (settings.requests / "done" / path.name).exists()
    assert tick(instance).run_requests == []  # handled once


def test_rerun_keeps_the_episodes_lane(instance: dg.DagsterInstance) -> None:
    settings = _settings()
    write_submit_request(settings.requests, "gamma-e02", SubmitOptions(owner="bob", mode="high", priority=3))
    key = _requested(instance, "gamma", "e02.mp4")
    write_rerun_request(settings.requests, key, "dub_speech")
    (req,) = tick(instance).run_requests
    assert req.job_name == "dub_episode_high"
    assert (req.tags[LANE], req.tags[OWNER], req.tags[PRIORITY]) == ("gpu", "bob", "3")


def test_rerun_of_an_unknown_episode_is_archived_as_failed(instance: dg.DagsterInstance) -> None:
    settings = _settings()
    path = write_rerun_request(settings.requests, "nobody-e01", "translation")
    assert tick(instance).run_requests == []
    assert (settings.requests / "failed" / path.name).exists()


def _translation() -> Translation:
    lines = [TranslatedLine(index=i, start=float(i), end=i + 0.8, speaker="s0", source_text=f"src {i}",
                            text=f"line {i}") for i in range(3)]
    return Translation(source_language="ja", target_language="en", engine="test", lines=lines)


def test_edited_review_file_reruns_from_translation(instance: dg.DagsterInstance) -> None:
    settings = _settings()
    key = _requested(instance)
    translation = _translation()
    assert review.apply_review(settings.review, key, translation) == 0  # the pipeline writes it
    path = review.review_file(settings.review, key)
    assert tick(instance).run_requests == []  # the pipeline's own file is not an edit

    data = json.loads(path.read_text())
    data["lines"][1]["text"] = "an edited line"
    path.write_text(json.dumps(data))
    bump_mtime(path)  # mtime is the change detector; do not depend on timer granularity
    (req,) = tick(instance).run_requests
    selected = {k.to_user_string() for k in req.asset_selection or []}
    assert "translation" in selected and _downstream_of("translation") <= selected
    assert not selected & _upstream_of("translation")
    assert req.partition_key == key and req.run_key.startswith(f"review:{key}:translation:")
    assert tick(instance).run_requests == []  # one edit, one run

    # The re-run's translation stage applies the edit and rewrites the file: no new run.
    assert review.apply_review(settings.review, key, _translation()) == 1
    bump_mtime(path, 2)
    assert tick(instance).run_requests == []
    assert tick(instance).run_requests == []


def test_review_edit_for_an_unknown_episode_gives_no_run(instance: dg.DagsterInstance) -> None:
    settings = _settings()
    review.apply_review(settings.review, "ghost-e01", _translation())
    path = review.review_file(settings.review, "ghost-e01")
    data = json.loads(path.read_text())
    data["lines"][0]["text"] = "edited"
    path.write_text(json.dumps(data))
    bump_mtime(path)
    assert tick(instance).run_requests == []


@pytest.mark.parametrize("content", ['{"mode": "turbo"}', '{"priority": "high"}', "[1, 2]"])
def test_broken_submit_request_does_not_stall_the_inbox(instance: dg.DagsterInstance, content: str) -> None:
    settings = _settings()
    (settings.requests / "submit-show-e01.json").write_text(content)
    drop("show", "e01.mp4")
    drop("show", "e02.mp4")
    tick(instance)
    result = tick(instance)
    assert sorted(r.partition_key for r in result.run_requests) == ["show-e01", "show-e02"]
    (req,) = [r for r in result.run_requests if r.partition_key == "show-e01"]
    assert (req.job_name, req.tags[LANE], req.tags[OWNER]) == ("dub_episode", "cpu", "tester")
    assert (settings.requests / "failed" / "submit-show-e01.json").exists()
    assert tick(instance).run_requests == []


@pytest.mark.parametrize("content", ["[]", '{"episode": "show-e01"}', "{"])
def test_malformed_rerun_request_is_set_aside(instance: dg.DagsterInstance, content: str) -> None:
    settings = _settings()
    _requested(instance)
    (settings.requests / "rerun-bad.json").write_text(content)
    write_rerun_request(settings.requests, "show-e01", "dub_mix")
    (req,) = tick(instance).run_requests
    assert {k.to_user_string() for k in req.asset_selection or []} >= {"dub_mix", "dubbed_video"}
    assert (settings.requests / "failed" / "rerun-bad.json").exists()


def test_a_submit_request_applies_only_to_its_own_file(instance: dg.DagsterInstance) -> None:
    """A request tied to another file under the same key must not re-label this episode (issue 14, item 2):
    a private episode once became public, with another owner and mode, from a stale request."""
    settings = _settings()
    key = _requested(instance, "gamma", "e01.mp4")  # a private low-mode episode, requested once
    write_submit_request(settings.requests, key, SubmitOptions(
        owner="mallory", mode="high", visibility="public", relpath="gamma/E01 (other).mp4", fingerprint="ab" * 32))
    with open(settings.inbox / "gamma" / "e01.mp4", "ab") as fh:  # the first file's next upload
        fh.write(b"\0" * 64)
    tick(instance)
    (req,) = tick(instance).run_requests
    assert req.partition_key == key and req.tags[OWNER] != "mallory" and req.tags[MODE] == "low"
    record = json.loads((settings.episodes / f"{key}.json").read_text())
    assert (record["visibility"], record["mode"]) == ("private", "low") and record["owner"] != "mallory"
    assert (settings.requests / f"submit-{key}.json").exists()  # left for the file it names


def test_a_lost_tick_result_is_asked_again_until_its_run_exists(instance: dg.DagsterInstance) -> None:
    """Issue 14 item 1: the scanner's state used to be committed before Dagster held the run, so a tick
    whose result was lost (gRPC timeout, daemon crash) left the episode never requested again."""
    submit = drop("Alpha Series", "Alpha Series - 01.mp4")
    key = episode_key("Alpha Series", submit.name)
    write_submit_request(_settings().requests, key, SubmitOptions(owner="dana", mode="high", priority=3,
                                                                  visibility="public"))
    assert not tick(instance).run_requests  # first sight: waits for a stable size
    lost = tick(instance, accept=False)  # requested, but the result never reaches Dagster
    assert [r.partition_key for r in lost.run_requests] == [key]
    assert not instance.get_dynamic_partitions("episodes")

    again = tick(instance)  # asked again, with the same run key and the submitted options
    assert [r.run_key for r in again.run_requests] == [lost.run_requests[0].run_key]
    request = again.run_requests[0]
    assert request.job_name == "dub_episode_high"
    assert request.tags[OWNER] == "dana" and request.tags[PRIORITY] == "3" and request.tags[LANE] == "gpu"
    assert added_keys(again) == [key] and instance.get_dynamic_partitions("episodes") == [key]
    assert len(instance.get_run_records(dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key}))) == 1

    quiet = tick(instance)  # the run exists now: confirmed, nothing more
    assert not quiet.run_requests
    assert not tick(instance).run_requests


def test_a_pending_request_is_dropped_when_its_file_changes_or_goes(instance: dg.DagsterInstance) -> None:
    path = drop("Alpha Series", "Alpha Series - 02.mp4")
    tick(instance)
    first = tick(instance, accept=False)
    assert len(first.run_requests) == 1
    path.unlink()  # gone before its run was created: nothing to ask for any more
    assert not tick(instance).run_requests
    assert not tick(instance).run_requests


def _age(path: Path, seconds: float) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


def test_a_file_is_taken_only_after_settling(instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14 item 6: one unchanged tick used to make a file ready, so an upload that paused for one
    tick (a slow link, a client that preallocates) was taken half-written."""
    monkeypatch.delenv("DUBBING_INBOX_STABLE_TICKS")
    monkeypatch.delenv("DUBBING_INBOX_SETTLE_S")  # the defaults: 2 unchanged ticks, 10 s since the last write
    path = drop("Alpha Series", "Alpha Series - 01.mp4")
    full = path.read_bytes()
    path.write_bytes(full[: len(full) // 2])  # half-written, then the upload pauses
    assert not tick(instance).run_requests  # first sight
    assert not tick(instance).run_requests  # unchanged once, but written just now: still settling
    _age(path, 11)
    assert not tick(instance).run_requests  # (the mtime moved: seen as changed, counting again)
    assert not tick(instance).run_requests  # unchanged once: one tick is not enough any more
    with path.open("ab") as f:  # the upload resumes and completes
        f.write(full[len(full) // 2:])
    assert not tick(instance).run_requests
    _age(path, 11)
    for _ in range(2):
        assert not tick(instance).run_requests
    result = tick(instance)
    assert [r.partition_key for r in result.run_requests] == [episode_key("Alpha Series", path.name)]
    record = json.loads((_settings().episodes / f"{result.run_requests[0].partition_key}.json").read_text())
    assert record["size"] == len(full)  # the whole file, not the half


def test_a_young_empty_file_is_waited_for_not_quarantined(instance: dg.DagsterInstance) -> None:
    """Issue 14 item 6: an upload that had opened its file but not written yet was quarantined as empty,
    and then completed into the quarantine."""
    folder = _settings().inbox / "Alpha Series"
    folder.mkdir(parents=True)
    path = folder / "Alpha Series - 03.mp4"
    path.touch()
    for _ in range(3):
        result = tick(instance)
        assert not result.run_requests
    assert path.exists() and not any(_settings().quarantine.rglob("*.mp4"))
    path.write_bytes(CLIP.read_bytes())  # the upload writes
    tick(instance)
    assert [r.partition_key for r in tick(instance).run_requests] == [episode_key("Alpha Series", path.name)]

    stale = folder / "Alpha Series - 04.mp4"  # an empty file left for more than the grace: quarantined
    stale.touch()
    _age(stale, 601)
    tick(instance)
    tick(instance)
    assert not stale.exists() and any(_settings().quarantine.rglob("*04*"))


def test_a_large_file_is_hashed_off_the_tick(instance: dg.DagsterInstance) -> None:
    """Issue 14 item 1: files were hashed inside the tick at about 200 MiB/s, so one 13 GB episode took a
    tick past Dagster's 60 s budget. Here a 1 GiB file (sparse: no disk) must not slow any tick down."""
    import time

    folder = _settings().inbox / "Alpha Series"
    folder.mkdir(parents=True)
    path = folder / "Alpha Series - 05.mkv"
    with path.open("wb") as f:
        f.write(b"\x1a\x45\xdf\xa3")  # an MKV's magic, then 1 GiB of nothing
        f.truncate(2**30)
    tick(instance)  # first sight
    durations, requests, skip = [], [], ""
    deadline = time.monotonic() + 180
    while not requests and time.monotonic() < deadline:
        started = time.monotonic()
        context = dg.build_sensor_context(instance=instance, instance_ref=instance.get_ref(), definitions=defs,
                                          sensor_name="inbox_sensor")
        data = inbox_sensor.evaluate_tick(context)
        durations.append(time.monotonic() - started)
        requests, skip = data.run_requests, data.skip_message or skip
        if not requests:
            time.sleep(0.5)
    assert requests, f"never requested: {skip}"
    assert max(durations) < 1.0, f"a tick took {max(durations):.2f}s while a 1 GiB file was hashed"
    assert "1 being hashed" in skip, skip  # the ticks while hashing said so
    assert [r.partition_key for r in requests] == [episode_key("Alpha Series", path.name)]


def test_submit_reserves_the_key_the_sensor_gives_its_file(instance: dg.DagsterInstance, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """Issue 14 item 2: `dubbing submit` wrote its request under the base key even when another file of the
    series already held that key; the sensor gave the submitted file a suffixed key, found no request for
    it, and dubbed it with the defaults (another owner, private instead of public)."""
    from dubbing_assets.cli import main

    direct = drop("show", "Show S01E01.mp4")  # dropped straight in: takes show-s01e01
    tick(instance)
    (first,) = tick(instance).run_requests
    assert first.partition_key == "show-s01e01"

    src = tmp_path / "upload.mp4"
    shutil.copyfile(CLIP, src)
    with open(src, "ab") as fh:  # other content
        fh.write(b"\0" * 64)
    assert main(["submit", str(src), "--series", "show", "--episode", "S01E01", "--owner", "erin",
                 "--public"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed != "show-s01e01" and printed.startswith("show-s01e01-")  # the key the sensor will use

    (second,) = tick(instance).run_requests  # a submitted file needs no settling: taken on the next tick
    assert second.partition_key == printed
    assert second.tags[OWNER] == "erin"
    record = json.loads((_settings().episodes / f"{printed}.json").read_text())
    assert record["visibility"] == "public" and record["source"] == "show/s01e01.mp4"
    assert direct.exists() and not (_settings().requests / f"submit-{printed}.json").exists()  # consumed


def test_names_with_a_leading_dot_are_episodes_too(instance: dg.DagsterInstance) -> None:
    """Issue 14 item 8: `.hack Sign - 01.mkv` (and the `.hack` series folder) were ignored without a word."""
    drop("Show", ".hack Sign - 01.mp4")
    drop(".hack", "Sign - 02.mp4")
    drop("Show", "._.hack Sign - 01.mp4")  # macOS's metadata file: not an episode, not quarantined
    tick(instance)
    keys = sorted(r.partition_key for r in tick(instance).run_requests)
    assert keys == sorted([episode_key("Show", ".hack Sign - 01.mp4"), episode_key(".hack", "Sign - 02.mp4")])
    assert all(is_slug(k) for k in keys)
    assert not any(_settings().quarantine.rglob("*"))


def test_wait_finds_its_own_quarantine_reason_only(instance: dg.DagsterInstance) -> None:
    """Issue 14 item 8: `dubbing wait` matched quarantine reasons by a piece of the key ("e01"), so another
    series' bad first episode made this episode's wait report a quarantine."""
    import time

    from dubbing_assets.cli_runs import _quarantine_reason

    settings = _settings()
    started = time.time()
    bad = settings.inbox / "beta" / "e01.mp4"
    bad.parent.mkdir(parents=True)
    bad.write_text("not a video\n")
    tick(instance)
    tick(instance)
    assert any(settings.quarantine.rglob("*.reason.txt"))
    assert _quarantine_reason(settings, "alpha-e01", started) is None  # another series' e01
    reason = _quarantine_reason(settings, "beta-e01", started)
    assert reason and "not a video or audio container" in reason


def test_a_symlink_or_an_audio_only_file_is_quarantined_with_its_reason(instance: dg.DagsterInstance,
                                                                        tmp_path: Path) -> None:
    """Issue 14 items 4-5: a symlink and an .m4a dropped into the inbox were ignored without a word, so
    `dubbing wait` ran into its timeout; each is set aside with a reason, and a link's target is never read."""
    secret = tmp_path / "elsewhere" / "secret.mkv"
    secret.parent.mkdir()
    shutil.copyfile(MEDIA / "ja_two_speakers.mkv", secret)
    folder = _settings().inbox / "show"
    folder.mkdir(parents=True)
    (folder / "e01.mkv").symlink_to(secret)
    shutil.copyfile(CLIP, folder / "e02.m4a")
    tick(instance)
    result = tick(instance)
    assert not result.run_requests
    reasons = {p.read_text().splitlines()[0]: p.read_text() for p in _settings().quarantine.rglob("*.reason.txt")}
    assert "symbolic link" in reasons["file: show/e01.mkv"] and "key: show-e01" in reasons["file: show/e01.mkv"]
    assert "audio-only" in reasons["file: show/e02.m4a"]
    assert secret.exists() and secret.read_bytes() == (MEDIA / "ja_two_speakers.mkv").read_bytes()
    assert not any(folder.iterdir())
