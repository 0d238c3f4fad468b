"""Reading and migrating the previous system's files (ANV2ENC chunked files, ANV2CHAR stores).

Uses the repo's copies of the legacy fixtures (data/legacy, described by
MANIFEST.json) with their key imported into a temporary keyring through the
CLI, exactly as an operator would.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from dubbing_assets import cli
from dubbing_assets.cli import main
from dubbing_assets.core.characters import CharacterStore
from dubbing_assets.core.crypto import (
    FORMAT_LEGACY_CHUNKED,
    FORMAT_LEGACY_STORE,
    FORMAT_NEW,
    ChunkOrderError,
    Keyring,
    TruncatedError,
    UnsupportedVersionError,
    WrongKeyError,
    decrypt_bytes,
    decrypt_file,
    inspect_file,
    legacy,
)
from dubbing_assets_tests.core.conftest import LEGACY_DATA

MANIFEST = json.loads((LEGACY_DATA / "MANIFEST.json").read_text(encoding="utf-8"))
ENTRIES = {e["file"]: e for e in MANIFEST["files"]}


def sha256_counter(label: str, length: int) -> bytes:
    """The manifest's deterministic plaintext: concat(SHA-256(label || b':' || u32be(i)))[:length]."""
    out = bytearray()
    i = 0
    while len(out) < length:
        out += hashlib.sha256(label.encode("utf-8") + b":" + struct.pack(">I", i)).digest()
        i += 1
    return bytes(out[:length])


def expected_plaintext(entry: dict[str, Any]) -> bytes | None:
    if "plaintext_generator" in entry:
        gen = entry["plaintext_generator"]
        return sha256_counter(gen["label"], gen["length"])
    for key in ("plaintext_file", "expected_json_file"):
        if key in entry:
            return (LEGACY_DATA / entry[key]).read_bytes()
    if entry["plaintext_length"] == 0:
        return b""
    return None


@pytest.fixture
def legacy_ring(keyring_path: Path) -> Keyring:
    """A temporary keyring (DUBBING_KEYRING) with the legacy key imported through the CLI."""
    assert main(["keys", "import", str(LEGACY_DATA / "key.b64")]) == 0
    return Keyring.load(keyring_path)


def test_constants_and_detection() -> None:
    assert legacy.LEGACY_FILE_MAGIC == b"ANV2ENC" and legacy.LEGACY_STORE_MAGIC == b"ANV2CHAR"
    assert legacy.LEGACY_TEMP_PREFIX == "animev2_dec_"
    assert legacy.LEGACY_STORE_AAD == b"character_store:v1"
    for name, entry in ENTRIES.items():
        head = (LEGACY_DATA / name).read_bytes()[:32]
        assert legacy.is_legacy(head)
        assert legacy.legacy_format(head) == (FORMAT_LEGACY_STORE if entry["kind"] == "ANV2CHAR"
                                              else FORMAT_LEGACY_CHUNKED)
    assert not legacy.is_legacy(b"CHNKAEAD\x01") and not legacy.is_legacy(b"")


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_fixture_decrypts_through_the_cli(name: str, legacy_ring: Keyring, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    entry = ENTRIES[name]
    out = tmp_path / "out" / (name + ".plain")
    out.parent.mkdir()
    capsys.readouterr()
    assert main(["decrypt", str(LEGACY_DATA / name), str(out)]) == 0
    data = out.read_bytes()
    assert len(data) == entry["plaintext_length"]
    assert hashlib.sha256(data).hexdigest() == entry["plaintext_sha256"]
    expected = expected_plaintext(entry)
    if expected is not None:
        assert data == expected
    printed = capsys.readouterr().out
    assert entry["plaintext_sha256"] in printed and str(entry["plaintext_length"]) in printed


def test_inspect_legacy_headers() -> None:
    for name, entry in ENTRIES.items():
        info = inspect_file(LEGACY_DATA / name)
        assert info.key_id is None and info.version == 1
        assert info.chunk_size == entry["chunk_size"]
        assert info.plaintext_size == entry["plaintext_length"]


def test_multichunk_plaintext_rebuilt_from_its_generator(legacy_ring: Keyring) -> None:
    entry = ENTRIES["multichunk_c4096.enc"]
    gen = entry["plaintext_generator"]
    plain = decrypt_bytes((LEGACY_DATA / entry["file"]).read_bytes(), legacy_ring)
    assert plain == sha256_counter(gen["label"], gen["length"])
    assert hashlib.sha256(plain).hexdigest() == entry["plaintext_sha256"]
    assert entry["chunks"] == 3 and entry["chunk_size"] == 4096


def test_migrate_turns_each_file_into_the_new_format(legacy_ring: Keyring, legacy_inputs: Path,
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    paths = [legacy_inputs / name for name in sorted(ENTRIES)]
    capsys.readouterr()
    assert main(["migrate", *map(str, paths)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(paths)
    for path, line in zip(paths, lines, strict=True):
        entry = ENTRIES[path.name]
        assert line.startswith(f"{path}: migrated")
        assert f"{entry['plaintext_length']} bytes" in line and entry["plaintext_sha256"] in line
        head = inspect_file(path)
        assert head.format == FORMAT_NEW and head.key_id == legacy_ring.active_id
        assert not legacy.is_legacy(path.read_bytes()[:16])
        info = decrypt_file(path, tmp_path / "check.plain", legacy_ring)
        assert info.sha256 == entry["plaintext_sha256"] and info.plaintext_size == entry["plaintext_length"]
        expected = expected_plaintext(entry)
        if expected is not None:
            assert (tmp_path / "check.plain").read_bytes() == expected
    leftovers = [p.name for p in legacy_inputs.iterdir() if p.name.startswith("dubtmp_")]
    assert leftovers == []


def test_migrate_is_idempotent(legacy_ring: Keyring, legacy_inputs: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    paths = [str(legacy_inputs / name) for name in sorted(ENTRIES)]
    assert main(["migrate", *paths]) == 0
    after_first = {p: Path(p).read_bytes() for p in paths}
    capsys.readouterr()
    assert main(["migrate", *paths]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(paths) and all("already current" in line for line in lines)
    assert {p: Path(p).read_bytes() for p in paths} == after_first


def test_migrate_reports_failures_and_keeps_going(legacy_ring: Keyring, legacy_inputs: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    plain = legacy_inputs / "notes.txt"
    plain.write_text("not encrypted")
    good = legacy_inputs / "small_json.enc"
    assert main(["migrate", str(plain), str(good)]) == 1
    captured = capsys.readouterr()
    assert plain.read_text() == "not encrypted"
    assert inspect_file(good).format == FORMAT_NEW
    assert f"error: {plain}" in captured.err and f"{good}: migrated" in captured.out


def test_migrate_never_replaces_an_original_it_could_not_verify(legacy_ring: Keyring, legacy_inputs: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = legacy_inputs / "multichunk_c4096.enc"
    original = path.read_bytes()

    def broken_encrypt(src: Path, dst: Path, keyring: Keyring, **kw: Any) -> Any:
        dst.write_bytes(b"garbage")
        raise OSError("disk full")

    monkeypatch.setattr(cli, "encrypt_file", broken_encrypt)
    assert main(["migrate", str(path)]) == 1
    assert path.read_bytes() == original
    assert sorted(p.name for p in legacy_inputs.iterdir()) == sorted(p.name for p in LEGACY_DATA.iterdir())


def test_migrate_with_a_keyring_lacking_the_legacy_key(keyring_path: Path, legacy_inputs: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "init"]) == 0
    path = legacy_inputs / "small_json.enc"
    original = path.read_bytes()
    assert main(["migrate", str(path)]) == 1
    assert "dubbing keys import" in capsys.readouterr().err
    assert path.read_bytes() == original


def test_store_migrates_on_save(legacy_ring: Keyring, legacy_inputs: Path) -> None:
    path = legacy_inputs / "alpha-series.chars"
    expected = json.loads((LEGACY_DATA / "alpha-series.chars.expected.json").read_text(encoding="utf-8"))
    store = CharacterStore.load(path, legacy_ring, "alpha-series")
    assert store.source_format == FORMAT_LEGACY_STORE
    assert [(c.id, c.name) for c in store.characters] == [("c0001", "Aiko"), ("c0002", "Kenji")]
    store.save()
    assert inspect_file(path).format == FORMAT_NEW
    again = CharacterStore.load(path, legacy_ring, "alpha-series")
    assert again.source_format == FORMAT_NEW and again.series == "alpha-series"
    assert [(c.id, c.name) for c in again.characters] == [("c0001", "Aiko"), ("c0002", "Kenji")]
    for char, want in zip(again.characters, expected["characters"], strict=True):
        assert char.embedding == want["embedding"] and len(char.embedding) == 256
        assert char.voice == want["voice"] and char.episodes == want["episodes"]
        assert char.updated_at == want["updated_at"]
    assert again.to_payload() == expected
    assert again.add_character("Mika", [0.0] * 256).id == "c0003"


def test_trailing_partial_chunk_is_rejected(legacy_ring: Keyring, legacy_inputs: Path) -> None:
    path = legacy_inputs / "multichunk_c4096.enc"
    data = path.read_bytes()
    full = 4096 + 16
    for cut in (20 + full + 10, 20 + 2 * full + 5, len(data) - 1):  # partial chunk after whole ones
        path.write_bytes(data[:cut])
        out = legacy_inputs / "out.plain"
        with pytest.raises(TruncatedError):
            decrypt_file(path, out, legacy_ring)
        assert not out.exists()
    path.write_bytes(data[:20])
    with pytest.raises(TruncatedError):
        decrypt_bytes(path.read_bytes(), legacy_ring)


def test_legacy_swapped_chunks_and_wrong_key(legacy_ring: Keyring) -> None:
    data = (LEGACY_DATA / "multichunk_c4096.enc").read_bytes()
    full = 4096 + 16
    swapped = data[:20] + data[20 + full: 20 + 2 * full] + data[20: 20 + full] + data[20 + 2 * full:]
    with pytest.raises(ChunkOrderError):
        decrypt_bytes(swapped, legacy_ring)
    stranger = Keyring.generate()
    for name in ENTRIES:
        with pytest.raises(WrongKeyError, match="dubbing keys import"):
            decrypt_bytes((LEGACY_DATA / name).read_bytes(), stranger)


def test_unknown_legacy_version(legacy_ring: Keyring) -> None:
    for name, at in (("small_json.enc", 7), ("alpha-series.chars", 8)):
        data = bytearray((LEGACY_DATA / name).read_bytes())
        data[at] = 9
        with pytest.raises(UnsupportedVersionError):
            decrypt_bytes(bytes(data), legacy_ring)


def test_legacy_key_file_import_is_idempotent(legacy_ring: Keyring, keyring_path: Path) -> None:
    before = keyring_path.read_bytes()
    assert main(["keys", "import", str(LEGACY_DATA / "key.b64")]) == 0
    assert keyring_path.read_bytes() == before
    assert len(Keyring.load(keyring_path)) == 2
    assert os.stat(keyring_path).st_mode & 0o777 == 0o600


def test_a_legacy_file_cut_at_a_chunk_boundary_is_logged_with_what_migrate_produced(
        legacy_ring: Keyring, legacy_inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 14 item 13: the legacy layout marks no final chunk, so a file cut exactly after a whole chunk
    decrypts, silently short; the migration must record the length and digest it produced."""
    entry = ENTRIES["multichunk_c4096.enc"]
    cut = legacy_inputs / "cut.enc"
    whole = (legacy_inputs / "multichunk_c4096.enc").read_bytes()
    cut.write_bytes(whole[: 20 + 2 * (entry["chunk_size"] + 16)])  # the header and two of three chunks
    capsys.readouterr()
    assert main(["migrate", str(cut), str(legacy_inputs / "multichunk_c4096.enc")]) == 0
    out = capsys.readouterr().out
    assert "ends on a chunk boundary" in out.splitlines()[0] and "ends on" not in out.splitlines()[1]
    log = tmp_path / "home" / "logs" / "migrations.jsonl"
    assert (log.stat().st_mode & 0o777) == 0o600
    short, full = [json.loads(line) for line in log.read_text().splitlines()]
    expected = expected_plaintext(entry)
    assert short["path"] == str(cut.resolve()) and short["plaintext_bytes"] == 2 * entry["chunk_size"]
    assert short["sha256"] == hashlib.sha256(expected[: 2 * entry["chunk_size"]]).hexdigest()
    assert short["may_be_cut"] is True and short["chunks"] == 2 and short["from"] == FORMAT_LEGACY_CHUNKED
    assert full["plaintext_bytes"] == entry["plaintext_length"] and full["sha256"] == entry["plaintext_sha256"]
    assert full["may_be_cut"] is False
