"""The run-facing CLI: it validates, writes requests and reads state; it never starts runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dubbing_assets.cli import main
from dubbing_assets.core.settings import load_settings
from dubbing_assets_tests.conftest import MEDIA


def test_submit_places_file_and_options_and_prints_the_key(dubbing_env: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "Show - 03.mp4"
    shutil.copyfile(MEDIA / "en_monologue.mp4", src)
    (tmp_path / "Show - 03.en.srt").write_text("1\n00:00:00,500 --> 00:00:02,000\nHello\n")
    rc = main(["submit", str(src), "--series", "My Show!", "--owner", "ana", "--mode", "high",
               "--priority", "5", "--to", "EN"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and out[-1] == "my-show-show-03"
    settings = load_settings()
    assert (settings.inbox / "my-show" / "show-03.mp4").read_bytes() == src.read_bytes()
    assert (settings.inbox / "my-show" / "show-03.en.srt").exists()
    request = json.loads((settings.requests / "submit-my-show-show-03.json").read_text())
    assert request["owner"] == "ana" and request["mode"] == "high" and request["priority"] == 5
    assert request["visibility"] == "private" and request["target_lang"] == "en"
    assert not list(settings.inbox.rglob("*.part"))


@pytest.mark.parametrize("content", [b"", b"not a video\n" * 50])
def test_submit_refuses_what_can_never_be_dubbed(dubbing_env: Path, tmp_path: Path, capsys, content: bytes) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(content)
    rc = main(["submit", str(bad), "--series", "show"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and "broken.mp4" in err
    settings = load_settings()
    assert not list(settings.inbox.rglob("*.mp4")) and not list(settings.requests.glob("submit-*"))


def test_rerun_needs_a_known_episode_and_a_known_stage(dubbing_env: Path, capsys) -> None:
    assert main(["rerun", "show-e01", "--from", "translation"]) == 1
    assert "Unknown episode" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["rerun", "show-e01", "--from", "nonsense"])


def test_status_lists_episodes_as_json(dubbing_env: Path, capsys) -> None:
    assert main(["instance", "init"]) == 0
    capsys.readouterr()
    settings = load_settings().ensure()
    (settings.episodes / "show-e01.json").write_text(json.dumps({"series": "show", "source": "show/e01.mkv",
                                                                        "fingerprint": "ab"}))
    assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["episode"] == "show-e01" and data[0]["runs"] == []


def test_wait_times_out_with_exit_2_when_nothing_runs(dubbing_env: Path, capsys) -> None:
    assert main(["instance", "init"]) == 0
    settings = load_settings().ensure()
    (settings.requests / "submit-show-e01.json").write_text(json.dumps({"owner": "x"}))
    assert main(["wait", "show-e01", "--timeout", "1", "--poll", "0.2"]) == 2
    assert "timed out" in capsys.readouterr().err


def test_hostile_episode_names_are_refused(dubbing_env: Path, capsys) -> None:
    assert main(["wait", "../etc", "--timeout", "1"]) == 1
    assert "not allowed" in capsys.readouterr().err


def test_submit_never_replaces_a_different_file_still_waiting(dubbing_env: Path, tmp_path: Path, capsys) -> None:
    """`Ep 1.mp4` then `ep_1.mp4` slug alike: the second must not overwrite the first before the sensor
    queued it (issue 14, item 3). The same bytes again are fine."""
    first, second = tmp_path / "Ep 1.mp4", tmp_path / "ep_1.mp4"
    shutil.copyfile(MEDIA / "en_monologue.mp4", first)
    shutil.copyfile(MEDIA / "en_monologue.mp4", second)
    with open(second, "ab") as fh:
        fh.write(b"\0" * 64)  # other bytes, still a valid file
    assert main(["submit", str(first), "--series", "show"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    settings = load_settings()
    target = settings.inbox / "show" / "ep-1.mp4"
    assert target.read_bytes() == first.read_bytes()
    assert main(["submit", str(second), "--series", "show"]) == 1
    err = capsys.readouterr().err
    assert "already holds a different file" in err and key in err
    assert target.read_bytes() == first.read_bytes()  # nothing lost
    assert main(["submit", str(first), "--series", "show"]) == 0  # identical content: harmless


def test_submit_copies_sidecars_with_glob_characters_but_no_links(dubbing_env: Path, tmp_path: Path) -> None:
    """`[SubsPlease] Show - 01 (1080p).en.srt` is copied (issue 14, item 8); a symlinked sidecar is not
    (item 4); and the request is written only once the file is in the inbox."""
    src = tmp_path / "[SubsPlease] Show - 01 (1080p).mp4"
    shutil.copyfile(MEDIA / "en_monologue.mp4", src)
    (tmp_path / "[SubsPlease] Show - 01 (1080p).en.srt").write_text("1\n00:00:00,500 --> 00:00:02,000\nHi\n")
    secret = tmp_path / "secret.srt"
    secret.write_text("1\n00:00:00,500 --> 00:00:02,000\nsecret\n")
    (tmp_path / "[SubsPlease] Show - 01 (1080p).ja.srt").symlink_to(secret)
    assert main(["submit", str(src), "--series", "show", "--episode", "e01"]) == 0
    names = sorted(p.name for p in (load_settings().inbox / "show").iterdir())
    assert names == ["e01.en.srt", "e01.mp4"], names
    assert (load_settings().requests / "submit-show-e01.json").exists()


def test_scratch_left_by_a_killed_step_is_swept_at_start_up(dubbing_env: Path, capsys) -> None:
    """Step scratch folders hold plaintext; a killed step leaves its folder behind. They are named with the
    sweep's prefix, and `dubbing instance init` removes stale ones (issue 14, item 12)."""
    import os
    import time

    from dubbing_assets.core.crypto.files import STALE_PREFIXES
    from dubbing_assets.orchestration.resources import DubbingResource

    step = DubbingResource()
    work = step.runtime.workdir("dub_speech")
    (work / "line-0001.wav").write_bytes(b"RIFF plaintext speech")
    scratch = work.parent
    assert scratch.parent == load_settings().tmp and scratch.name.startswith(STALE_PREFIXES)
    old = time.time() - 7 * 24 * 3600
    for path in (work / "line-0001.wav", work, scratch):
        os.utime(path, (old, old))
    assert main(["instance", "init"]) == 0
    assert "stale plaintext temporaries" in capsys.readouterr().out
    assert not scratch.exists()
    assert oct(load_settings().tmp.stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("name", ["episode.bin", "episode.m4a", "episode"])
def test_submit_accepts_only_what_the_inbox_lists(dubbing_env: Path, tmp_path: Path, capsys, name: str) -> None:
    """One list of accepted media (issue 14, item 5): what submit takes, the sensor picks up; an MKV renamed
    `.bin` used to be accepted and then waited forever for a run."""
    from dubbing_assets.core.inbox import MEDIA_EXTENSIONS

    src = tmp_path / name
    shutil.copyfile(MEDIA / "ja_two_speakers.mkv", src)
    assert main(["submit", str(src), "--series", "show"]) == 1
    err = capsys.readouterr().err
    assert "is not an episode type the inbox accepts" in err and ".mkv" in err
    settings = load_settings()
    assert not list(settings.inbox.rglob("*")) or not [p for p in settings.inbox.rglob("*") if p.is_file()]
    assert not list(settings.requests.glob("submit-*"))
    assert Path(name).suffix.lower() not in MEDIA_EXTENSIONS


def test_only_instance_init_creates_the_instance_storage(dubbing_env: Path, capsys) -> None:
    """On a fresh DAGSTER_HOME, `dubbing wait`/`status` racing the daemon's first seconds could create the
    SQLite storage twice and leave two alembic heads (issue 14, item 15): they refuse and say what to run."""
    import os

    home = Path(os.environ["DAGSTER_HOME"])
    for argv in (["status"], ["wait", "show-e01", "--timeout", "1"]):
        assert main(argv) == 1
        assert "run `dubbing instance init` once, before starting dagster-daemon" in capsys.readouterr().err
    assert not list(home.rglob("*.db")), list(home.rglob("*"))
    assert main(["instance", "init"]) == 0
    assert (home / "history" / "runs.db").exists() and (home / "schedules" / "schedules.db").exists()
    assert main(["status"]) == 0


def test_submit_owner_is_the_os_user_unless_an_operator_names_one(dubbing_env: Path, tmp_path: Path, capsys,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14 item 8: owner and priority were self-declared (`--owner anyone --priority 10**9`)."""
    import getpass

    from dubbing_assets.core.requests import read_submit_request

    me = getpass.getuser()
    src = tmp_path / "Show - 04.mp4"
    shutil.copyfile(MEDIA / "en_monologue.mp4", src)
    monkeypatch.setenv("DUBBING_OPERATORS", "someone-else")  # this user is not an operator
    monkeypatch.setenv("DUBBING_OWNER", "studio")
    assert main(["submit", str(src), "--series", "show", "--owner", "mallory"]) != 0
    assert "only an operator" in capsys.readouterr().err
    assert main(["submit", str(src), "--series", "show", "--priority", "1000000"]) != 0
    assert "only an operator" in capsys.readouterr().err
    assert not list(load_settings().requests.glob("submit-*.json"))  # nothing queued by a refusal

    assert main(["submit", str(src), "--series", "show", "--priority", "3"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    options = read_submit_request(load_settings().requests, key)
    assert options.owner == me and options.priority == 3  # the OS user, not DUBBING_OWNER

    monkeypatch.setenv("DUBBING_OPERATORS", f"ops,{me}")  # an operator may name the owner
    assert main(["submit", str(src), "--series", "show", "--owner", "mallory", "--priority", "50"]) == 0
    options = read_submit_request(load_settings().requests, key)
    assert options.owner == "mallory" and options.priority == 50
    assert main(["submit", str(src), "--series", "show", "--priority", "1000000"]) != 0  # bounded for all
    assert "priority" in capsys.readouterr().err


def test_submit_replaces_only_its_owners_queued_episode(dubbing_env: Path, tmp_path: Path, capsys) -> None:
    """Issue 14 items 2-3: another owner's file that slugs alike was replaced once the first was queued, so
    the first owner's episode was dubbed from the second owner's bytes (or not at all)."""
    from dubbing_assets.core.fsutil import file_sha256
    from dubbing_assets.core.requests import archive, submit_request_path

    first, second = tmp_path / "a" / "Ep 1.mp4", tmp_path / "b" / "ep_1.mp4"
    for path, tail in ((first, b""), (second, b"\0" * 64)):
        path.parent.mkdir()
        path.write_bytes((MEDIA / "en_monologue.mp4").read_bytes() + tail)
    settings = load_settings()
    assert main(["submit", str(first), "--series", "show", "--owner", "ana"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    target = settings.inbox / "show" / "ep-1.mp4"
    # what the sensor does when it queues it: the record, and the request archived
    (settings.episodes / f"{key}.json").write_text(json.dumps(
        {"key": key, "series": "show", "source": "show/ep-1.mp4", "fingerprint": file_sha256(target), "owner": "ana"}))
    archive(submit_request_path(settings.requests, key), outcome="done")

    assert main(["submit", str(second), "--series", "show", "--owner", "bob"]) == 1
    assert "'ana''s episode" in capsys.readouterr().err
    assert target.read_bytes() == first.read_bytes()  # nothing lost
    assert main(["submit", str(second), "--series", "show", "--owner", "ana"]) == 0  # her new version: fine
    assert target.read_bytes() == second.read_bytes()
