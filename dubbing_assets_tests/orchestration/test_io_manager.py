"""The encrypted IO manager: round trips, temp cleanup, containment, atomic versions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import pytest

from dubbing_assets.core.contracts import Cast, MediaHandle, Stems, Voice
from dubbing_assets.core.crypto import inspect_file
from dubbing_assets.core.settings import load_settings
from dubbing_assets.orchestration.io_manager import EncryptedIOManager

parts = dg.DynamicPartitionsDefinition(name="episodes")
SEEN: dict[str, object] = {}


def _assets(payload: bytes, fail: bool = False):
    @dg.asset(partitions_def=parts)
    def producer() -> dict:
        path = load_settings().ensure().home / "work.bin"
        path.write_bytes(payload)
        if fail:
            path.unlink()  # the handle points nowhere: encryption must fail cleanly
        return {"n": 1, "file": MediaHandle(str(path), "file", {"why": "test"}), "list": [1, "a"]}

    @dg.asset(partitions_def=parts)
    def consumer(producer: dict) -> int:
        handle = producer["file"]
        assert isinstance(handle, MediaHandle)
        SEEN["path"] = Path(handle.path)
        SEEN["data"] = Path(handle.path).read_bytes()
        SEEN["meta"] = handle.meta
        return producer["n"] + 1

    return producer, consumer


def _instance(key: str) -> dg.DagsterInstance:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("episodes", [key])
    return instance


def test_round_trip_and_temp_cleanup(dubbing_env: Path) -> None:
    payload = bytes(range(256)) * 5000
    instance = _instance("show-e01")
    result = dg.materialize(list(_assets(payload)), partition_key="show-e01", instance=instance,
                            resources={"io_manager": EncryptedIOManager()})
    assert result.success
    assert SEEN["data"] == payload and SEEN["meta"] == {"why": "test"}
    assert not SEEN["path"].exists(), "plaintext temp copy must be removed when the step ends"
    meta = result.asset_materializations_for_node("producer")[0].metadata
    assert meta["sha256"].value == hashlib.sha256(payload).hexdigest()
    assert meta["plaintext_bytes"].value == len(payload)
    storage = load_settings().storage / "producer" / "show-e01"
    encs = list(storage.rglob("*.enc"))
    assert len(encs) == 2
    for enc in encs:
        assert payload[:64] not in enc.read_bytes()
        assert inspect_file(enc).format == "new"


def test_failed_write_keeps_previous_version(dubbing_env: Path) -> None:
    instance = _instance("show-e02")
    ok = dg.materialize([_assets(b"v1")[0]], partition_key="show-e02", instance=instance,
                        resources={"io_manager": EncryptedIOManager()})
    assert ok.success
    storage = load_settings().storage / "producer" / "show-e02"
    before = (storage / "CURRENT").read_text()
    bad = dg.materialize([_assets(b"v2", fail=True)[0]], partition_key="show-e02", instance=instance,
                         resources={"io_manager": EncryptedIOManager()}, raise_on_error=False)
    assert not bad.success
    assert (storage / "CURRENT").read_text() == before
    assert sorted(p.name for p in storage.iterdir() if p.name.startswith("v-")) == [before]


def test_the_version_current_named_before_stays_readable(dubbing_env: Path) -> None:
    """Issue 14 item 9: a write deleted every other version the moment CURRENT flipped, so a reader that
    had resolved the old one a moment before got FileNotFoundError."""
    from dubbing_assets.core.crypto import decrypt_bytes, open_keyring

    instance = _instance("show-e03")
    storage = load_settings().storage / "producer" / "show-e03"
    names = []
    for payload in (b"v1", b"v2", b"v3"):
        assert dg.materialize([_assets(payload)[0]], partition_key="show-e03", instance=instance,
                              resources={"io_manager": EncryptedIOManager()}).success
        names.append((storage / "CURRENT").read_text().strip())
        if len(names) == 2:  # what a reader holding the first version still finds
            ring = open_keyring(load_settings().keyring)
            old = storage / names[0]
            assert decrypt_bytes((old / "value.json.enc").read_bytes(), ring)
            assert any(old.glob("[0-9]*.enc"))
    kept = sorted(p.name for p in storage.iterdir() if p.name.startswith("v-"))
    assert kept == sorted(names[1:]), "the current and the previous version are kept, older ones removed"


@pytest.mark.parametrize("key", ["../escape", "a/b", "UPPER", "x" * 200])
def test_hostile_partition_keys_are_refused(dubbing_env: Path, key: str) -> None:
    instance = _instance(key)
    result = dg.materialize([_assets(b"x")[0]], partition_key=key, instance=instance,
                            resources={"io_manager": EncryptedIOManager()}, raise_on_error=False)
    assert not result.success
    root = load_settings().storage
    assert not any(p.is_file() for p in root.parent.rglob("*.enc") if root not in p.parents)
    errors = [ev.event_specific_data.error.to_string() for ev in result.all_events
              if ev.event_type_value == "STEP_FAILURE"]
    assert any("not a safe" in e or "not allowed" in e or "leave" in e for e in errors), errors


def test_media_is_decrypted_only_when_a_step_opens_it(dubbing_env: Path) -> None:
    producer, _ = _assets(b"lazy" * 1000)

    @dg.asset(partitions_def=parts)
    def reader(producer: dict) -> int:
        tmp = load_settings().home / "tmp"
        assert not [p for p in tmp.rglob("0.bin")], "decrypted before anyone asked for the file"
        path = Path(producer["file"].path)
        assert path.read_bytes() == b"lazy" * 1000
        return 1

    instance = _instance("show-e03")
    result = dg.materialize([producer, reader], partition_key="show-e03", instance=instance,
                            resources={"io_manager": EncryptedIOManager()})
    assert result.success


def test_a_run_without_its_keyring_fails_clearly_and_creates_none(dubbing_env: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14 item 10: every step called load_or_create, so a keyring that went missing (a volume not
    mounted, a wrong DUBBING_HOME) was silently replaced by a new one, and the episode's earlier
    artifacts were unreadable from then on."""
    import base64
    import os

    keyring = load_settings().keyring
    keyring.unlink()
    instance = _instance("show-e04")
    result = dg.materialize([_assets(b"v1")[0]], partition_key="show-e04", instance=instance,
                            resources={"io_manager": EncryptedIOManager()}, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.error)
    assert "no keyring here" in message and "dubbing keys init" in message and str(keyring) in message
    assert not keyring.exists(), "a run must never create the keyring"

    # a container's mounted secret alone is enough, and still writes no keyring file
    monkeypatch.setenv("DUBBING_KEY", base64.b64encode(os.urandom(32)).decode())
    assert dg.materialize([_assets(b"v1")[0]], partition_key="show-e04", instance=instance,
                          resources={"io_manager": EncryptedIOManager()}).success
    assert not keyring.exists()


def test_records_are_stored_by_type_and_come_back_as_records(dubbing_env: Path) -> None:
    """Issue 11: an asset receives the record its upstream returned, not a dict to rebuild."""
    got: dict[str, object] = {}

    @dg.asset(partitions_def=parts, name="audio_stems")
    def stems_asset() -> Stems:
        home = load_settings().ensure().home
        files = {}
        for name in ("original", "dialogue", "background"):
            (home / f"{name}.wav").write_bytes(name.encode() * 100)
            files[name] = MediaHandle(str(home / f"{name}.wav"), "audio")
        return Stems(**files, info={"layout": "5.1(side)"}, separator="signal", note="")

    @dg.asset(partitions_def=parts)
    def mixer(audio_stems: Stems) -> int:
        got["value"] = audio_stems
        got["dialogue"] = Path(audio_stems.dialogue.path).read_bytes()
        return 1

    result = dg.materialize([stems_asset, mixer], partition_key="show-e09", instance=_instance("show-e09"),
                            resources={"io_manager": EncryptedIOManager()})
    assert result.success
    value = got["value"]
    assert isinstance(value, Stems) and value.layout == "5.1(side)"
    assert got["dialogue"] == b"dialogue" * 100


def test_an_untyped_value_of_an_earlier_release_reads_as_its_stage_record(dubbing_env: Path) -> None:
    """Artifacts stored before the contracts (plain dicts) still load, as the stage's record."""
    got: dict[str, object] = {}

    @dg.asset(partitions_def=parts, name="cast")
    def old_cast() -> dict:
        return {"voices": {"Aiko": {"engine": "piper", "voice": "en_US-joe-medium", "pitch_semitones": 3.0}},
                "characters": {"Aiko": {"character_id": "c1", "new": True}}}

    @dg.asset(partitions_def=parts)
    def speech(cast: Cast) -> int:
        got["value"] = cast
        return 1

    instance = _instance("show-e10")
    assert dg.materialize([old_cast], partition_key="show-e10", instance=instance,
                          resources={"io_manager": EncryptedIOManager()}).success
    assert dg.materialize([old_cast.to_source_asset(), speech], partition_key="show-e10", instance=instance,
                          resources={"io_manager": EncryptedIOManager()}, selection=[speech]).success
    value = got["value"]
    assert isinstance(value, Cast) and value.voices["Aiko"] == Voice("piper", "en_US-joe-medium",
                                                                    pitch_semitones=3.0)
