"""Rotation that can retire a key: `dubbing migrate --rekey` and `dubbing keys retire` (issue 14 item 11).

Before, a rotated-out key could never leave the keyring: nothing re-encrypted files under it, and
nothing told whether any file still needed it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dubbing_assets.cli import main
from dubbing_assets.core.crypto import Keyring, decrypt_bytes, encrypt_bytes, encrypt_file, inspect_file
from dubbing_assets_tests.core.conftest import LEGACY_DATA


@pytest.fixture
def store(tmp_path: Path, keyring_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An artifact tree like storage/: files under the first key, a plaintext file among them."""
    monkeypatch.setenv("DUBBING_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DUBBING_STORAGE", str(tmp_path / "storage"))
    monkeypatch.setenv("DUBBING_CACHE", str(tmp_path / "cache"))
    ring = Keyring.create(keyring_path)
    root = tmp_path / "storage"
    (root / "audio_stems" / "show-e01" / "v-1").mkdir(parents=True)
    (root / "characters").mkdir()
    (tmp_path / "cache").mkdir()
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 2**20 + 7))
    encrypt_file(big, root / "audio_stems" / "show-e01" / "v-1" / "0.enc", ring)
    (root / "audio_stems" / "show-e01" / "v-1" / "value.json.enc").write_bytes(encrypt_bytes(b'{"a": 1}', ring))
    (root / "characters" / "show.chars").write_bytes(encrypt_bytes(b'{"characters": []}', ring))
    (root / "audio_stems" / "show-e01" / "CURRENT").write_text("v-1")  # plaintext: passed over
    return root


def _key_ids(root: Path) -> set[str]:
    return {inspect_file(p).key_id for p in root.rglob("*") if p.is_file() and p.suffix in (".enc", ".chars")}


def test_rotate_rekey_retire(store: Path, keyring_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = Keyring.load(keyring_path).active_id
    assert main(["keys", "rotate"]) == 0
    new = Keyring.load(keyring_path).active_id
    capsys.readouterr()

    # the old key still encrypts files: retiring it is refused, and says what to run
    assert main(["keys", "retire", old]) == 1
    err = capsys.readouterr().err
    assert f"key {old} still encrypts 3 file(s)" in err and "dubbing migrate --rekey" in err
    assert old in [e["id"] for e in Keyring.load(keyring_path).list()]

    before = {p: p.read_bytes() for p in store.rglob("*.enc")} | {store / "characters" / "show.chars": None}
    ring = Keyring.load(keyring_path)
    plain = {p: decrypt_bytes(p.read_bytes(), ring) for p in before if p.suffix != ".enc" or p.stat().st_size < 4096}
    assert main(["migrate", "--rekey", str(store)]) == 0
    out = capsys.readouterr().out
    assert "3 encrypted files (1 other files passed over)" in out and out.count("re-keyed") == 3
    assert _key_ids(store) == {new}
    for path, data in plain.items():  # same plaintext under the new key
        assert decrypt_bytes(path.read_bytes(), Keyring.load(keyring_path)) == data

    # idempotent: nothing left to re-key, nothing rewritten
    stamps = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    assert main(["migrate", "--rekey", str(store)]) == 0
    assert "re-keyed" not in capsys.readouterr().out
    assert stamps == {p: p.stat().st_mtime_ns for p in store.rglob("*")}

    assert main(["keys", "retire", old]) == 0
    assert [e["id"] for e in Keyring.load(keyring_path).list()] == [new]
    assert main(["keys", "retire", new]) == 1  # never the active key
    assert "active key" in capsys.readouterr().err


def test_retire_refuses_a_legacy_file_that_needs_the_key(store: Path, keyring_path: Path, legacy_inputs: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A legacy file names no key; retire finds that it needs one by decrypting it."""
    assert main(["keys", "import", str(LEGACY_DATA / "key.b64"), "--id", "legacy"]) == 0
    capsys.readouterr()
    assert main(["keys", "retire", "legacy", "--scan", str(legacy_inputs)]) == 1
    assert "key legacy still encrypts" in capsys.readouterr().err
    assert main(["keys", "retire", "legacy"]) == 0  # storage/ and cache/ hold no file that needs it
