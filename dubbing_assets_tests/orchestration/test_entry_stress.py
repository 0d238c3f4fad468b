"""The entry path under load (issue 14's stress test): three owners submit 30 files at once.

Real `dubbing submit` processes, three at a time, race each other and the real inbox sensor, whose
ticks run meanwhile with a third of their results dropped at random (as a gRPC timeout or a daemon
restart would lose them); the accepted results are applied the way the sensor daemon applies them
(partitions added, one run created per new run key, not launched). Among the files: names that slug
alike across owners, the same file submitted twice, an audio-only file, a symlink submitted and one
dropped straight in, a slow upload written in pieces.

Every file must end in exactly one of three ways: queued exactly once (one run key, one run) under
its own owner and visibility, with its own bytes in the inbox; refused by `submit` with a reason,
having changed nothing; or quarantined with a reason. Nothing is lost or overwritten. The runs are
not executed here: dubbing 30 episodes takes over 15 minutes on this machine, and what can go wrong
between a submit and a run is all in front of the queue (the daemon tests cover the rest).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from dubbing_assets.core.inbox import InboxScanner
from dubbing_assets.core.settings import load_settings
from dubbing_assets_tests.conftest import MEDIA
from dubbing_assets_tests.orchestration.test_sensor import tick

pytestmark = [pytest.mark.timeout(900)]

CLIP = MEDIA / "en_monologue.mp4"
DUBBING = Path(sys.executable).parent / "dubbing"


@dataclass
class Submission:
    owner: str
    path: Path
    args: list[str]
    public: bool = False
    rc: int | None = None
    out: str = ""
    err: str = ""
    key: str | None = None
    sha256: str = ""


@dataclass
class Ticker:
    instance: dg.DagsterInstance
    seed: int = 14
    stop: threading.Event = field(default_factory=threading.Event)
    ticks: int = 0
    dropped: int = 0
    requested: list[tuple[str, str]] = field(default_factory=list)  # (partition, run key) of every request
    errors: list[BaseException] = field(default_factory=list)

    def run(self) -> None:
        rng = random.Random(self.seed)
        try:
            while not self.stop.is_set():
                self.once(accept=rng.random() > 1 / 3)
                time.sleep(0.2)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    def once(self, *, accept: bool = True) -> int:
        result = tick(self.instance, accept=accept)
        self.ticks += 1
        self.dropped += not accept
        if accept:
            self.requested += [(r.partition_key, r.run_key) for r in result.run_requests]
        return len(result.run_requests)


@pytest.fixture
def instance(dubbing_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    monkeypatch.setenv("DUBBING_OWNER", "nobody")
    monkeypatch.delenv("DUBBING_SENSOR_MAX_REQUESTS", raising=False)
    monkeypatch.setenv("DUBBING_INBOX_STABLE_TICKS", "2")
    monkeypatch.setenv("DUBBING_INBOX_SETTLE_S", "1")  # the rule, with a shorter wait than the default 10 s
    with dg.instance_for_test(temp_dir=os.environ["DAGSTER_HOME"]) as inst:
        yield inst


def _clip(path: Path, marker: str) -> Path:
    """A valid episode file with its own bytes (the clip plus a trailing marker)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(CLIP.read_bytes() + marker.encode() * 8)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plan(tmp_path: Path) -> list[Submission]:
    subs: list[Submission] = []
    ana, bob, cy = (tmp_path / "uploads" / o for o in ("ana", "bob", "cy"))
    for n in range(1, 8):
        subs.append(Submission("ana", _clip(ana / f"Show - {n:02d}.mp4", f"ana{n}"), ["--series", "alpha"]))
    subs.append(Submission("ana", _clip(ana / "Ep 1.mp4", "ana-ep1"), ["--series", "alpha"]))
    subs.append(Submission("ana", ana / "Ep 1.mp4", ["--series", "alpha"]))  # the same file again
    subs.append(Submission("ana", _clip(ana / "Special.mp4", "ana-sp"), ["--series", "alpha", "--public"], True))
    # bob: two names that land where ana's do ("Show - 01", "ep_1"), the rest his own
    subs.append(Submission("bob", _clip(bob / "Show - 01.mp4", "bob1"), ["--series", "alpha"]))
    subs.append(Submission("bob", _clip(bob / "ep_1.mp4", "bob-ep1"), ["--series", "alpha"]))
    for n in range(3, 11):
        subs.append(Submission("bob", _clip(bob / f"Bob - {n:02d}.mp4", f"bob{n}"), ["--series", "bob-show"]))
    # cy: public, a symlink to an upload (submit copies the bytes it points at), an audio-only file
    for n in range(1, 9):
        subs.append(Submission("cy", _clip(cy / f"Beta {n}.mp4", f"cy{n}"), ["--series", "beta", "--public"], True))
    target = _clip(tmp_path / "uploads" / "cy-real" / "real.mp4", "cy-link")
    (cy / "Beta 9.mp4").symlink_to(target)
    subs.append(Submission("cy", cy / "Beta 9.mp4", ["--series", "beta", "--public"], True))
    shutil.copyfile(CLIP, cy / "Beta 10.m4a")
    subs.append(Submission("cy", cy / "Beta 10.m4a", ["--series", "beta"]))
    assert len(subs) == 30
    return subs


def _submit_all(subs: list[Submission], owner: str, env: dict[str, str]) -> None:
    for sub in (s for s in subs if s.owner == owner):
        sub.sha256 = _sha(sub.path) if sub.path.exists() else ""
        proc = subprocess.run([str(DUBBING), "submit", str(sub.path), "--owner", owner, *sub.args],
                              env=env, capture_output=True, text=True, timeout=300)
        sub.rc, sub.out, sub.err = proc.returncode, proc.stdout, proc.stderr
        if proc.returncode == 0:
            sub.key = proc.stdout.strip().splitlines()[-1]


def _slow_upload(path: Path, pieces: int = 5, pause: float = 0.5) -> bytes:
    data = CLIP.read_bytes() + b"slow" * 32
    path.parent.mkdir(parents=True, exist_ok=True)
    step = len(data) // pieces + 1
    with path.open("wb") as fh:
        for i in range(0, len(data), step):
            fh.write(data[i:i + step])
            fh.flush()
            time.sleep(pause)
    return data


def test_thirty_files_three_owners_lost_ticks(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    settings = load_settings().ensure()
    subs = _plan(tmp_path)
    env = dict(os.environ)
    ticker = Ticker(instance)
    ticking = threading.Thread(target=ticker.run, daemon=True)
    ticking.start()
    started = time.monotonic()
    # straight into the inbox meanwhile: a symlink, an audio-only file, a slow upload
    secret = _clip(tmp_path / "elsewhere" / "secret.mp4", "secret")
    (settings.inbox / "direct").mkdir(parents=True)
    (settings.inbox / "direct" / "Linked 01.mp4").symlink_to(secret)
    shutil.copyfile(CLIP, settings.inbox / "direct" / "Audio 02.m4a")
    submitters = [threading.Thread(target=_submit_all, args=(subs, o, env)) for o in ("ana", "bob", "cy")]
    for t in submitters:
        t.start()
    slow = _slow_upload(settings.inbox / "direct" / "Slow 03.mp4")
    for t in submitters:
        t.join(600)
    ticker.stop.set()
    ticking.join(60)
    assert not ticker.errors, ticker.errors
    quiet = 0  # then every result accepted, until nothing more comes
    while quiet < 6:
        quiet = quiet + 1 if ticker.once() == 0 else 0
        time.sleep(0.25)
    took = time.monotonic() - started
    print(f"\n{ticker.ticks} ticks, {ticker.dropped} results dropped, {took:.0f}s")
    assert ticker.dropped >= 3, "the test must have lost some tick results"

    runs = instance.get_runs()
    runs_by_key: dict[str, list] = {}
    for run in runs:
        runs_by_key.setdefault(run.tags["dubbing/episode"], []).append(run)
    run_keys_by_episode: dict[str, set[str]] = {}
    for partition, run_key in ticker.requested:
        run_keys_by_episode.setdefault(partition, set()).add(run_key)

    accepted = [s for s in subs if s.rc == 0]
    refused = [s for s in subs if s.rc != 0]
    for sub in refused:  # refused with a reason, one line, no traceback
        assert sub.rc == 1 and "error: " in sub.err and "Traceback" not in sub.err, (sub.path.name, sub.err)
    def named(owner: str, name: str) -> Submission:
        return next(s for s in subs if s.owner == owner and s.path.name == name)

    # ana's and bob's files that land on the same inbox name: exactly one of each pair was taken
    assert (named("ana", "Show - 01.mp4").rc == 0) != (named("bob", "Show - 01.mp4").rc == 0)
    assert (named("ana", "Ep 1.mp4").rc == 0) != (named("bob", "ep_1.mp4").rc == 0)
    for sub in refused:
        if sub.path.suffix == ".m4a":
            assert "not an episode type" in sub.err, sub.err
        else:
            assert "'s episode" in sub.err or "not queued yet" in sub.err, (sub.owner, sub.path.name, sub.err)

    by_key: dict[str, list[Submission]] = {}
    for sub in accepted:
        by_key.setdefault(sub.key, []).append(sub)
    for key, group in by_key.items():
        assert len({(s.owner, s.sha256) for s in group}) == 1, f"{key} was taken by two files: {group}"
        sub = group[0]
        assert len(runs_by_key.get(key, [])) == 1, f"{key}: {len(runs_by_key.get(key, []))} runs"
        assert len(run_keys_by_episode[key]) == 1, f"{key}: run keys {run_keys_by_episode[key]}"
        (run,) = runs_by_key[key]
        assert run.tags["dubbing/owner"] == sub.owner
        record = json.loads((settings.episodes / f"{key}.json").read_text())
        assert record["owner"] == sub.owner and record["visibility"] == ("public" if sub.public else "private")
        assert record["fingerprint"] == sub.sha256, f"{key}: the inbox holds other bytes than {sub.path.name}"
        assert _sha(settings.inbox / record["source"]) == sub.sha256

    # straight drops: the symlink and the .m4a quarantined with reasons, the slow upload queued whole
    quarantined = {p.read_text().splitlines()[0]: p.read_text() for p in settings.quarantine.rglob("*.reason.txt")}
    assert "symbolic link" in quarantined.pop("file: direct/Linked 01.mp4")
    assert "audio-only" in quarantined.pop("file: direct/Audio 02.m4a")
    assert not quarantined, quarantined
    assert secret.read_bytes().endswith(b"secret" * 8)  # the link's target never read or moved
    slow_runs = [k for k in runs_by_key if k.startswith("direct-slow")]
    assert len(slow_runs) == 1 and len(runs_by_key[slow_runs[0]]) == 1, slow_runs
    record = json.loads((settings.episodes / f"{slow_runs[0]}.json").read_text())
    assert record["size"] == len(slow) and record["owner"] == "nobody"

    # every run belongs to an accepted file or the slow upload; nothing is left pending
    assert set(runs_by_key) == set(by_key) | set(slow_runs)
    assert not list(settings.requests.glob("submit-*.json")), "submit requests left pending"
    scanner = InboxScanner(settings.inbox, settings.state / "inbox.sqlite", settings.quarantine)
    try:
        assert scanner.unconfirmed() == []
    finally:
        scanner.close()
    print(f"{len(accepted)} submissions accepted ({len(by_key)} episodes), {len(refused)} refused, "
          f"{len(runs)} runs, 2 quarantined")
