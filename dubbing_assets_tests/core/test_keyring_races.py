"""Keyring races (issue 14, item 10): processes creating or rotating one keyring at the same time.

Each worker is a real process; a barrier releases them together so the create/rotate windows overlap.
Before the fix, three processes creating at once each saved their own key (the last replace won, and
files written under the others were unreadable), and two concurrent rotations lost one of the new keys.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import pytest

from dubbing_assets.core.crypto import Keyring, decrypt_bytes, encrypt_bytes

ROUNDS = 4


def _create_and_encrypt(path: str, barrier, out: str) -> None:
    barrier.wait()
    ring = Keyring.load_or_create(Path(path))
    Path(out).write_bytes(encrypt_bytes(f"artifact of {os.getpid()}".encode(), ring))


def _rotate(path: str, barrier, out) -> None:
    from dubbing_assets.cli import main

    barrier.wait()
    out.put(main(["--keyring", path, "keys", "rotate"]))


def _run(target, args_for, n: int) -> None:
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=target, args=args_for(k, barrier)) for k in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0, f"worker exited {p.exitcode}"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_concurrent_creation_gives_everyone_the_same_keyring(tmp_path: Path, round_: int) -> None:
    path = tmp_path / "keys" / "keyring.json"
    outs = [tmp_path / f"artifact-{k}.bin" for k in range(3)]
    _run(_create_and_encrypt, lambda k, b: (str(path), b, str(outs[k])), 3)
    ring = Keyring.load(path)
    assert len(ring) == 1
    for out in outs:  # every artifact is readable with the one keyring that exists
        assert decrypt_bytes(out.read_bytes(), ring).startswith(b"artifact of ")
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".new")]


def test_concurrent_rotations_both_land(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DUBBING_KEY", raising=False)
    path = tmp_path / "keyring.json"
    first = Keyring.create(path).active_id
    results = mp.get_context("fork").Queue()
    for _ in range(ROUNDS):
        _run(_rotate, lambda k, b: (str(path), b, results), 2)
    assert [results.get(timeout=5) for _ in range(2 * ROUNDS)] == [0] * (2 * ROUNDS)
    ring = Keyring.load(path)
    assert len(ring) == 1 + 2 * ROUNDS and first in ring.keys()


def test_rotate_refuses_while_dubbing_key_pins_the_active_key(tmp_path: Path, monkeypatch, capsys) -> None:
    import base64

    from dubbing_assets.cli import main

    path = tmp_path / "keyring.json"
    Keyring.create(path)
    monkeypatch.setenv("DUBBING_KEY", base64.b64encode(os.urandom(32)).decode())
    assert main(["--keyring", str(path), "keys", "rotate"]) == 1
    assert "DUBBING_KEY is set and pins the active key" in capsys.readouterr().err
    assert len(Keyring.load(path)) == 1
