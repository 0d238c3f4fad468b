"""Request files (core/requests.py): the only way a front end asks for work.

The CLI writes `submit-<key>.json` and `rerun-*.json` under DUBBING_HOME/requests and the inbox sensor reads
them, so their contract matters on both sides: options are validated before anything is written, a
malformed file gives one ValueError naming the file (the sensor sets it aside on that error), keys cannot
leave the folder, writes are atomic, and handled requests are archived so they are never read twice.
test_sensor.py and test_cli_runs.py drive these through the sensor and the CLI; here each function is
tested on its own, with the error cases and edges those end-to-end tests do not reach.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest

from dubbing_assets.core.requests import (
    NORMAL_PRIORITY,
    PRIORITY_LIMITS,
    STAGES,
    SubmitOptions,
    archive,
    pending_reruns,
    read_submit_request,
    stages_from,
    submit_request_path,
    write_rerun_request,
    write_submit_request,
)
from dubbing_assets.errors import DubbingError, RequestError, UnsafeNameError

BAD_KEYS = ["../escape", "Show-E01", "a/b", "", "-e01", "e01-", "e 01", ".", "..", "a\x00b"]


def _files(folder: Path) -> list[str]:
    """Every entry under `folder` (temporaries of a failed atomic write included)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# --- stages --------------------------------------------------------------------------------------------


def test_stages_are_the_pipeline_in_order_without_duplicates() -> None:
    assert len(set(STAGES)) == len(STAGES)
    assert STAGES[0] == "source_media" and STAGES[-1] == "library_entry"
    assert STAGES.index("translation") < STAGES.index("dub_speech") < STAGES.index("dub_mix")


def test_stages_from_is_the_stage_and_everything_after_it() -> None:
    assert stages_from("source_media") == list(STAGES)
    assert stages_from("library_entry") == ["library_entry"]
    tail = stages_from("translation")
    assert tail[0] == "translation" and "script" not in tail and "dub_speech" in tail
    assert tail == list(STAGES[STAGES.index("translation"):])


@pytest.mark.parametrize("stage", ["", "Translation", "translate", "qa", " translation"])
def test_stages_from_refuses_an_unknown_stage_and_lists_the_choices(stage: str) -> None:
    with pytest.raises(ValueError, match="unknown stage") as info:
        stages_from(stage)
    assert all(s in str(info.value) for s in STAGES)


# --- SubmitOptions -------------------------------------------------------------------------------------


def test_default_options_are_valid_and_private() -> None:
    options = SubmitOptions()
    assert options.validate() is options
    assert (options.mode, options.visibility, options.priority) == ("low", "private", 0)
    assert NORMAL_PRIORITY[0] <= options.priority <= NORMAL_PRIORITY[1]
    assert PRIORITY_LIMITS[0] <= NORMAL_PRIORITY[0] and NORMAL_PRIORITY[1] <= PRIORITY_LIMITS[1]


@pytest.mark.parametrize("changes", [
    {"priority": PRIORITY_LIMITS[0]}, {"priority": PRIORITY_LIMITS[1]}, {"mode": "high"},
    {"visibility": "public"}, {"target_lang": "de"}, {"target_lang": "deu"},
])
def test_validate_accepts_the_documented_values(changes: dict[str, object]) -> None:
    SubmitOptions(**changes).validate()  # type: ignore[arg-type]


@pytest.mark.parametrize("changes,word", [
    ({"priority": PRIORITY_LIMITS[0] - 1}, "priority"),
    ({"priority": PRIORITY_LIMITS[1] + 1}, "priority"),
    ({"priority": 10**9}, "priority"),
    ({"priority": "5"}, "priority"),
    ({"priority": 1.0}, "priority"),
    ({"mode": "medium"}, "mode"),
    ({"mode": "HIGH"}, "mode"),
    ({"visibility": "shared"}, "visibility"),
    ({"target_lang": "e"}, "target language"),
    ({"target_lang": "engl"}, "target language"),
    ({"target_lang": "e1"}, "target language"),
    ({"target_lang": ""}, "target language"),
])
def test_validate_refuses_bad_values_naming_the_field(changes: dict[str, object], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        SubmitOptions(**changes).validate()  # type: ignore[arg-type]


@pytest.mark.parametrize("lang", ["日本", "ñé", "ελλ"])
def test_validate_refuses_non_ascii_language_codes(lang: str) -> None:
    with pytest.raises(ValueError, match="target language"):
        SubmitOptions(target_lang=lang).validate()


def test_is_for_ties_options_to_their_file() -> None:
    tied = SubmitOptions(relpath="show/e01.mp4", fingerprint="ab" * 32)
    assert tied.is_for("show/e01.mp4", "ab" * 32)
    assert not tied.is_for("show/e01.mp4", "cd" * 32)  # same path, other bytes
    assert not tied.is_for("other/e01.mp4", "ab" * 32)
    path_only = SubmitOptions(relpath="show/e01.mp4")
    assert path_only.is_for("show/e01.mp4", "anything") and not path_only.is_for("show/e02.mp4", "anything")
    assert SubmitOptions().is_for("any/file.mkv", "ef" * 32)  # a request from before the tie: any file


# --- submit requests -----------------------------------------------------------------------------------


def test_submit_request_path_is_inside_the_requests_folder(tmp_path: Path) -> None:
    path = submit_request_path(tmp_path / "requests", "alpha-series-e01")
    assert path == (tmp_path / "requests").resolve() / "submit-alpha-series-e01.json"


@pytest.mark.parametrize("key", BAD_KEYS)
def test_submit_request_path_refuses_unsafe_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(UnsafeNameError, match="episode key"):
        submit_request_path(tmp_path, key)


def test_write_then_read_round_trips_every_field(tmp_path: Path) -> None:
    requests_dir = tmp_path / "requests"  # not there yet: the writer creates it
    options = SubmitOptions(owner="alice", mode="high", target_lang="de", priority=-7, visibility="public",
                            series="alpha-series", episode="e01", submitted_at=1234.5,
                            relpath="alpha-series/e01.mp4", fingerprint="ab" * 32)
    path = write_submit_request(requests_dir, "alpha-series-e01", options)
    assert path == submit_request_path(requests_dir, "alpha-series-e01") and path.is_file()
    assert json.loads(path.read_text(encoding="utf-8")) == asdict(options)  # plain JSON the sensor can read
    assert read_submit_request(requests_dir, "alpha-series-e01") == options
    assert _files(requests_dir) == ["submit-alpha-series-e01.json"]  # no temporary left beside it


def test_read_is_none_when_no_request_was_written(tmp_path: Path) -> None:
    assert read_submit_request(tmp_path, "show-e01") is None
    assert read_submit_request(tmp_path / "missing-folder", "show-e01") is None
    write_submit_request(tmp_path, "show-e02", SubmitOptions())
    assert read_submit_request(tmp_path, "show-e01") is None  # another key's file is not this one's


def test_a_second_write_replaces_the_first(tmp_path: Path) -> None:
    write_submit_request(tmp_path, "show-e01", SubmitOptions(owner="alice", priority=1, relpath="show/a.mp4"))
    write_submit_request(tmp_path, "show-e01", SubmitOptions(owner="bob", priority=2))
    options = read_submit_request(tmp_path, "show-e01")
    assert options is not None and (options.owner, options.priority, options.relpath) == ("bob", 2, None)
    assert _files(tmp_path) == ["submit-show-e01.json"]


def test_invalid_options_write_nothing_and_keep_the_previous_request(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="priority"):
        write_submit_request(tmp_path, "show-e01", SubmitOptions(priority=1000))
    assert _files(tmp_path) == []
    write_submit_request(tmp_path, "show-e01", SubmitOptions(owner="alice"))
    with pytest.raises(ValueError, match="mode"):
        write_submit_request(tmp_path, "show-e01", SubmitOptions(owner="mallory", mode="turbo"))
    options = read_submit_request(tmp_path, "show-e01")
    assert options is not None and options.owner == "alice"


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_refused_before_anything_is_written(tmp_path: Path, key: str) -> None:
    requests_dir = tmp_path / "requests"
    with pytest.raises(UnsafeNameError):
        write_submit_request(requests_dir, key, SubmitOptions())
    with pytest.raises(UnsafeNameError):
        read_submit_request(requests_dir, key)
    assert _files(tmp_path) == []


def test_read_ignores_unknown_fields_and_fills_in_defaults(tmp_path: Path) -> None:
    """A request from a newer (or older) CLI still reads: extra fields are dropped, missing ones defaulted."""
    (tmp_path / "submit-show-e01.json").write_text(json.dumps({"owner": "carol", "future_option": [1, 2]}))
    options = read_submit_request(tmp_path, "show-e01")
    assert options is not None
    assert (options.owner, options.mode, options.priority, options.relpath) == ("carol", "low", 0, None)
    assert not hasattr(options, "future_option")


def test_read_coerces_hand_written_numbers_and_names(tmp_path: Path) -> None:
    (tmp_path / "submit-show-e01.json").write_text(json.dumps({"owner": 42, "priority": "7"}))
    options = read_submit_request(tmp_path, "show-e01")
    assert options is not None and options.owner == "42" and options.priority == 7


@pytest.mark.parametrize("owner", [None, "", "   "])
def test_a_null_or_blank_owner_is_nobody_named_not_the_word_none(tmp_path: Path, owner: object) -> None:
    (tmp_path / "submit-show-e01.json").write_text(json.dumps({"owner": owner}))
    options = read_submit_request(tmp_path, "show-e01")
    assert options is not None and options.owner == "unknown"


@pytest.mark.parametrize("content", [
    "{not json",
    "",
    "[1, 2, 3]",
    '"a string"',
    "null",
    json.dumps({"priority": "high"}),
    json.dumps({"priority": None}),
    json.dumps({"priority": 500}),
    json.dumps({"mode": "medium"}),
    json.dumps({"visibility": "everyone"}),
    json.dumps({"target_lang": 5}),
])
def test_a_malformed_request_is_one_value_error_naming_the_file(tmp_path: Path, content: str) -> None:
    (tmp_path / "submit-show-e01.json").write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=r"submit-show-e01\.json is not a valid submit request") as info:
        read_submit_request(tmp_path, "show-e01")
    assert "submit the file again" in str(info.value)
    assert isinstance(info.value, RequestError) and isinstance(info.value, DubbingError)  # shown as the user's


def test_a_request_that_is_not_utf8_is_a_value_error_too(tmp_path: Path) -> None:
    (tmp_path / "submit-show-e01.json").write_bytes(b'{"owner": "\xff\xfe"}')
    with pytest.raises(ValueError, match="not a valid submit request"):
        read_submit_request(tmp_path, "show-e01")


def test_a_fractional_priority_is_refused_not_truncated(tmp_path: Path) -> None:
    (tmp_path / "submit-show-e01.json").write_text(json.dumps({"priority": 7.5}))
    with pytest.raises(ValueError, match="priority"):
        read_submit_request(tmp_path, "show-e01")


# --- rerun requests ------------------------------------------------------------------------------------


def test_write_rerun_request_records_episode_stage_and_reason(tmp_path: Path) -> None:
    path = write_rerun_request(tmp_path / "requests", "show-e01", "dub_speech", reason="review")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == {"id": data["id"], "episode": "show-e01", "from": "dub_speech", "reason": "review"}
    assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{8}", data["id"])
    assert path.name == f"rerun-{data['id']}.json" and path.parent == (tmp_path / "requests").resolve()
    assert json.loads(write_rerun_request(tmp_path, "show-e01", "script").read_text())["reason"] == "cli"


def test_every_rerun_request_is_its_own_file(tmp_path: Path) -> None:
    paths = {write_rerun_request(tmp_path, "show-e01", "translation") for _ in range(20)}
    assert len(paths) == 20 and all(p.exists() for p in paths)  # none overwrote another
    assert set(pending_reruns(tmp_path)) == paths


def test_a_bad_stage_or_key_writes_no_rerun_request(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        write_rerun_request(tmp_path, "show-e01", "mixing")
    for key in ("../etc", "Show", ""):
        with pytest.raises(UnsafeNameError, match="episode key"):
            write_rerun_request(tmp_path, key, "dub_mix")
    assert _files(tmp_path) == []


def test_pending_reruns_lists_only_rerun_files_in_name_order(tmp_path: Path) -> None:
    assert pending_reruns(tmp_path / "nowhere") == []
    for name in ("rerun-20240102T000000-bbbbbbbb.json", "rerun-20240101T000000-aaaaaaaa.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "submit-show-e01.json").write_text("{}")
    (tmp_path / "rerun-notes.txt").write_text("")
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "rerun-20230101T000000-cccccccc.json").write_text("{}")
    assert [p.name for p in pending_reruns(tmp_path)] == ["rerun-20240101T000000-aaaaaaaa.json",
                                                          "rerun-20240102T000000-bbbbbbbb.json"]


# --- archive -------------------------------------------------------------------------------------------


def test_archive_moves_a_handled_request_out_of_the_way(tmp_path: Path) -> None:
    done = write_rerun_request(tmp_path, "show-e01", "dub_mix")
    failed = write_rerun_request(tmp_path, "show-e02", "dub_mix")
    archive(done, outcome="done")
    archive(failed, outcome="failed")
    assert pending_reruns(tmp_path) == []  # never read twice
    assert (tmp_path / "done" / done.name).is_file() and (tmp_path / "failed" / failed.name).is_file()
    assert json.loads((tmp_path / "done" / done.name).read_text())["episode"] == "show-e01"


def test_archiving_a_submit_request_again_keeps_the_latest(tmp_path: Path) -> None:
    for owner in ("alice", "bob"):
        archive(write_submit_request(tmp_path, "show-e01", SubmitOptions(owner=owner)), outcome="done")
    assert read_submit_request(tmp_path, "show-e01") is None
    assert json.loads((tmp_path / "done" / "submit-show-e01.json").read_text())["owner"] == "bob"
