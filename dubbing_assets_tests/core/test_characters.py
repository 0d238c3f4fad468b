"""The character store: ids, round trips, and concurrent updates that lose nothing."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from dubbing_assets.core.characters import Character, CharacterStore, CharacterStoreError, transaction
from dubbing_assets.core.crypto import FORMAT_NEW, Keyring, decrypt_bytes, encrypt_bytes, inspect_file


def _embedding(seed: int) -> list[float]:
    return [((seed * 7919 + i * 104729) % 1000) / 1000.0 - 0.5 for i in range(256)]


def test_add_and_find(tmp_path: Path, ring: Keyring) -> None:
    store = CharacterStore(tmp_path / "s.chars", ring, "series-a")
    aiko = store.add_character("Aiko", _embedding(1), {"engine": "piper", "voice": "en_US-amy"})
    kenji = store.add_character("Kenji", _embedding(2), {"engine": "piper", "voice": "en_US-joe"})
    assert (aiko.id, kenji.id) == ("c0001", "c0002")
    assert store.find("c0002") is kenji and store.find("c0404") is None
    assert store.find_by_name("aiko") is aiko
    assert aiko.updated_at.endswith("Z") and aiko.embedding == _embedding(1)


def test_ids_stay_stable_after_gaps(tmp_path: Path, ring: Keyring) -> None:
    existing = [Character("c0001", "A", []), Character("c0007", "B", []), Character("x9", "C", [])]
    store = CharacterStore(tmp_path / "s.chars", ring, "s", existing)
    assert store.add_character("D", []).id == "c0008"


def test_round_trip_keeps_unknown_fields(tmp_path: Path, ring: Keyring) -> None:
    path = tmp_path / "series" / "s.chars"
    store = CharacterStore(path, ring, "series-a", extra={"notes": "top-level field from elsewhere"})
    char = store.add_character("Aiko", _embedding(3), {"engine": "xtts", "reference": "refs/c0001.wav"},
                               episodes=["series-a-e01"])
    char.extra["pitch_hint"] = 1.5
    store.save()
    assert inspect_file(path).format == FORMAT_NEW
    loaded = CharacterStore.load(path, ring, "series-a")
    assert loaded.to_payload() == store.to_payload()
    assert loaded.characters[0] == char
    assert loaded.extra == {"notes": "top-level field from elsewhere"}
    assert loaded.to_payload()["characters"][0]["pitch_hint"] == 1.5
    assert decrypt_bytes(path.read_bytes(), ring) == store.payload_bytes()


def test_wrong_series_and_bad_payload(tmp_path: Path, ring: Keyring) -> None:
    path = tmp_path / "s.chars"
    CharacterStore(path, ring, "series-a").save()
    with pytest.raises(CharacterStoreError, match="series-a"):
        CharacterStore.load(path, ring, "series-b")
    path.write_bytes(encrypt_bytes(b"[1, 2]", ring))
    with pytest.raises(CharacterStoreError):
        CharacterStore.load(path, ring)
    with pytest.raises(CharacterStoreError, match="no character store"):
        CharacterStore.load(tmp_path / "missing.chars", ring)


def test_transaction_saves_on_success_only(tmp_path: Path, ring: Keyring) -> None:
    path = tmp_path / "s.chars"
    with transaction(path, ring, "s") as store:
        store.add_character("A", _embedding(1))
    with pytest.raises(RuntimeError), transaction(path, ring, "s") as store:
        store.add_character("B", _embedding(2))
        raise RuntimeError("cast stage failed")
    assert [c.name for c in CharacterStore.load(path, ring).characters] == ["A"]
    assert (tmp_path / "s.chars.lock").exists()


def _worker(path: str, keyring_path: str, tag: str, count: int) -> None:
    ring = Keyring.load(Path(keyring_path))
    for i in range(count):
        with CharacterStore.transaction(Path(path), ring, "shared") as store:
            store.add_character(f"{tag}-{i}", _embedding(i), {"engine": "piper"})


def test_concurrent_updates_from_two_processes_lose_nothing(tmp_path: Path) -> None:
    keyring_path = tmp_path / "keyring.json"
    Keyring.create(keyring_path)
    path = tmp_path / "shared.chars"
    count = 12
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(str(path), str(keyring_path), tag, count)) for tag in "ab"]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    store = CharacterStore.load(path, Keyring.load(keyring_path), "shared")
    names = sorted(c.name for c in store.characters)
    assert names == sorted(f"{tag}-{i}" for tag in "ab" for i in range(count))
    assert sorted(c.id for c in store.characters) == [f"c{i:04d}" for i in range(1, 2 * count + 1)]
