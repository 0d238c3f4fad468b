"""The new encrypted format, the keyring and the file helpers.

Each kind of damage must give its own exception type (so users get the
right advice), never short or garbled output; writes must be atomic; keys
must never show up in anything printed.
"""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import struct
import time
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dubbing_assets.core.crypto import (
    FORMAT_NEW,
    TEMP_PREFIX,
    ChunkLimitError,
    ChunkOrderError,
    CorruptChunkError,
    CryptoError,
    EmptyFileError,
    HeaderTamperedError,
    Keyring,
    KeyringError,
    KeyringPermissionWarning,
    NotEncryptedError,
    TrailingDataError,
    TruncatedAtChunkBoundaryError,
    TruncatedError,
    TruncatedInChunkError,
    UnknownKeyIdError,
    UnsupportedVersionError,
    WrongKeyError,
    cleanup_stale_temporaries,
    decrypt_bytes,
    decrypt_file,
    encrypt_bytes,
    encrypt_file,
    inspect_file,
    open_keyring,
    plaintext_tempfile,
    secure_temp_copy,
)
from dubbing_assets.core.crypto import format as fmt
from dubbing_assets.core.crypto.legacy import LEGACY_TEMP_PREFIX
from dubbing_assets.errors import DubbingError
from dubbing_assets_tests.conftest import secret_forms

CHUNK = 1000
TAG = 16


def _encrypted(tmp_path: Path, ring: Keyring, size: int = 3 * CHUNK + 500,
               chunk: int = CHUNK) -> tuple[Path, bytes, int]:
    """An encrypted file of ``size`` random bytes; returns (path, plaintext, header size)."""
    plain = os.urandom(size)
    src = tmp_path / "plain.bin"
    src.write_bytes(plain)
    dst = tmp_path / "file.enc"
    encrypt_file(src, dst, ring, chunk_size=chunk)
    return dst, plain, inspect_file(dst).header_size


def _flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def _assert_fails(path: Path, ring: Keyring, exc_type: type[Exception]) -> Exception:
    """Decrypting ``path`` raises ``exc_type`` and leaves no output and no temp file."""
    out = path.parent / "out" / "plain.out"
    out.parent.mkdir(exist_ok=True)
    with pytest.raises(exc_type) as info:
        decrypt_file(path, out, ring)
    assert not out.exists()
    assert list(out.parent.iterdir()) == []
    assert isinstance(info.value, CryptoError) and isinstance(info.value, DubbingError)
    return info.value


# ---- round trips ----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, database=None)
@given(data=st.binary(max_size=5 * CHUNK + 7), chunk=st.sampled_from([16, 64, CHUNK]))
def test_bytes_round_trip(data: bytes, chunk: int) -> None:
    ring = Keyring.generate()
    blob = encrypt_bytes(data, ring, chunk_size=chunk)
    assert decrypt_bytes(blob, ring) == data
    chunks = max(1, -(-len(data) // chunk))
    assert len(blob) == fmt.header_size(len(ring.active_id)) + len(data) + TAG * chunks


@settings(max_examples=15, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.sampled_from([0, 1, 15, 16, 17, 63, 64, 65, 128, 999, 1000, 1001, 4321]),
       chunk=st.sampled_from([16, 64, CHUNK]))
def test_file_round_trip(tmp_path: Path, size: int, chunk: int) -> None:
    import hashlib

    ring = Keyring.generate()
    plain = os.urandom(size)
    src, enc, out = (tmp_path / f"{kind}{size}-{chunk}" for kind in "peo")
    src.write_bytes(plain)
    written = encrypt_file(src, enc, ring, chunk_size=chunk)
    read = decrypt_file(enc, out, ring)
    assert out.read_bytes() == plain
    assert written == read
    assert (read.format, read.version, read.key_id) == (FORMAT_NEW, 1, ring.active_id)
    assert read.plaintext_size == size and read.sha256 == hashlib.sha256(plain).hexdigest()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    head = inspect_file(enc)
    assert (head.format, head.key_id, head.chunk_size, head.plaintext_size) == (FORMAT_NEW, ring.active_id,
                                                                                chunk, size)


def test_large_file_streams_with_threaded_hash(tmp_path: Path, ring: Keyring) -> None:
    """Above the threading threshold the digest runs beside AES; the result must not change."""
    import hashlib

    plain = os.urandom(fmt._THREADED_HASH_MIN + 12345)
    src = tmp_path / "big.bin"
    src.write_bytes(plain)
    info = encrypt_file(src, tmp_path / "big.enc", ring, chunk_size=64 * 1024)
    again = decrypt_file(tmp_path / "big.enc", tmp_path / "big.out", ring)
    assert info.sha256 == again.sha256 == hashlib.sha256(plain).hexdigest()
    assert (tmp_path / "big.out").read_bytes() == plain


def test_in_place_encryption(tmp_path: Path, ring: Keyring) -> None:
    path = tmp_path / "same.bin"
    path.write_bytes(b"x" * 5000)
    encrypt_file(path, path, ring, chunk_size=CHUNK)
    assert inspect_file(path).format == FORMAT_NEW
    assert decrypt_bytes(path.read_bytes(), ring) == b"x" * 5000


def test_header_is_neutral() -> None:
    assert fmt.MAGIC == b"CHNKAEAD"
    for token in (fmt.MAGIC.decode(), TEMP_PREFIX, fmt.COMMIT_LABEL.decode(), fmt.MAC_LABEL.decode(),
                  fmt.CHUNK_LABEL.decode()):
        assert not any(ch.isdigit() for ch in token), token


# ---- damage, each with its own exception -----------------------------------------------------------


def test_truncated_at_chunk_boundary(tmp_path: Path, ring: Keyring) -> None:
    path, _, header = _encrypted(tmp_path, ring)
    path.write_bytes(path.read_bytes()[: header + 2 * (CHUNK + TAG)])
    err = _assert_fails(path, ring, TruncatedAtChunkBoundaryError)
    assert isinstance(err, TruncatedError) and err.at_chunk_boundary is True


def test_cut_after_any_whole_chunk_is_detected(tmp_path: Path, ring: Keyring) -> None:
    """The legacy weakness: a cut exactly between chunks must never decrypt silently short."""
    path, _, header = _encrypted(tmp_path, ring, size=3 * CHUNK)
    original = path.read_bytes()
    for whole_chunks in (0, 1, 2):
        path.write_bytes(original[: header + whole_chunks * (CHUNK + TAG)])
        err = _assert_fails(path, ring, TruncatedAtChunkBoundaryError)
        assert f"after {whole_chunks} of 3 chunks" in str(err)


def test_truncated_inside_a_chunk(tmp_path: Path, ring: Keyring) -> None:
    path, _, _ = _encrypted(tmp_path, ring)
    path.write_bytes(path.read_bytes()[:-5])
    err = _assert_fails(path, ring, TruncatedInChunkError)
    assert isinstance(err, TruncatedError) and err.at_chunk_boundary is False


def test_truncated_inside_the_header(tmp_path: Path, ring: Keyring) -> None:
    path, _, header = _encrypted(tmp_path, ring)
    path.write_bytes(path.read_bytes()[: header - 3])
    err = _assert_fails(path, ring, TruncatedError)
    assert err.at_chunk_boundary is False


def test_two_chunks_swapped(tmp_path: Path, ring: Keyring) -> None:
    path, _, header = _encrypted(tmp_path, ring)
    data = path.read_bytes()
    size = CHUNK + TAG
    c0, c1 = data[header: header + size], data[header + size: header + 2 * size]
    path.write_bytes(data[:header] + c1 + c0 + data[header + 2 * size:])
    err = _assert_fails(path, ring, ChunkOrderError)
    assert (err.position, err.belongs_at) == (0, 1)


def _field_offsets(key_id_len: int) -> dict[str, int]:
    base = 10 + key_id_len
    return {"key id length": 9, "key id": 12, "chunk size": base + 2, "nonce prefix": base + 4 + 3,
            "plaintext length": base + 12 + 7, "mac": base + 20 + 5, "commitment": base + 52 + 9}


@pytest.mark.parametrize("field", ["key id length", "key id", "chunk size", "nonce prefix",
                                   "plaintext length", "mac", "commitment"])
def test_one_bit_flipped_in_header(tmp_path: Path, ring: Keyring, field: str) -> None:
    path, _, _ = _encrypted(tmp_path, ring)
    _flip(path, _field_offsets(len(ring.active_id))[field])
    _assert_fails(path, ring, HeaderTamperedError)


def test_bit_flipped_in_magic_is_not_our_format(tmp_path: Path, ring: Keyring) -> None:
    path, _, _ = _encrypted(tmp_path, ring)
    _flip(path, 2)
    _assert_fails(path, ring, NotEncryptedError)


def test_unknown_format_version(tmp_path: Path, ring: Keyring) -> None:
    path, _, _ = _encrypted(tmp_path, ring)
    data = bytearray(path.read_bytes())
    data[8] = 2
    path.write_bytes(bytes(data))
    err = _assert_fails(path, ring, UnsupportedVersionError)
    assert "upgrade" in str(err)
    with pytest.raises(UnsupportedVersionError):
        inspect_file(path)


def test_bit_flipped_in_body(tmp_path: Path, ring: Keyring) -> None:
    path, _, header = _encrypted(tmp_path, ring)
    _flip(path, header + (CHUNK + TAG) + 100, bit=3)
    err = _assert_fails(path, ring, CorruptChunkError)
    assert err.index == 1


def test_bit_flipped_in_tag(tmp_path: Path, ring: Keyring) -> None:
    path, _, header = _encrypted(tmp_path, ring)
    _flip(path, header + 2 * (CHUNK + TAG) - 1, bit=7)  # last byte of chunk 1's tag
    err = _assert_fails(path, ring, CorruptChunkError)
    assert err.index == 1
    assert not isinstance(err, ChunkOrderError)


def test_bit_flipped_in_final_tag(tmp_path: Path, ring: Keyring) -> None:
    path, _, _ = _encrypted(tmp_path, ring)
    _flip(path, path.stat().st_size - 1)
    _assert_fails(path, ring, CorruptChunkError)


def test_appended_bytes(tmp_path: Path, ring: Keyring) -> None:
    path, _, _ = _encrypted(tmp_path, ring)
    path.write_bytes(path.read_bytes() + b"\0")
    _assert_fails(path, ring, TrailingDataError)


def test_wrong_key(tmp_path: Path, ring: Keyring) -> None:
    path, _, _ = _encrypted(tmp_path, ring)
    other = Keyring.generate()
    other.import_key(os.urandom(32), key_id=ring.active_id, activate=True)  # same id, different key
    err = _assert_fails(path, other, WrongKeyError)
    assert ring.active_id in str(err)


def test_unknown_key_id(tmp_path: Path, ring: Keyring) -> None:
    path, _, _ = _encrypted(tmp_path, ring)
    err = _assert_fails(path, Keyring.generate(), UnknownKeyIdError)
    assert err.key_id == ring.active_id
    assert "dubbing keys import" in str(err)


def test_key_found_under_another_id_still_decrypts(tmp_path: Path, ring: Keyring) -> None:
    path, plain, _ = _encrypted(tmp_path, ring)
    other = Keyring.generate()
    other.import_key(ring.get(ring.active_id), key_id="renamed")
    assert decrypt_bytes(path.read_bytes(), other) == plain


def test_empty_file(tmp_path: Path, ring: Keyring) -> None:
    path = tmp_path / "empty.enc"
    path.write_bytes(b"")
    _assert_fails(path, ring, EmptyFileError)
    with pytest.raises(EmptyFileError):
        inspect_file(path)
    with pytest.raises(EmptyFileError):
        decrypt_bytes(b"", ring)


def test_plain_text_file(tmp_path: Path, ring: Keyring) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("just some notes, not encrypted\n")
    err = _assert_fails(path, ring, NotEncryptedError)
    assert "not encrypted" in str(err)
    with pytest.raises(NotEncryptedError):
        inspect_file(path)


def test_chunk_counter_overflow_is_refused() -> None:
    prefix = b"\0" * fmt.NONCE_PREFIX_SIZE
    assert fmt.chunk_count(16 * 2**32, 16) == 2**32
    with pytest.raises(ChunkLimitError):
        fmt.chunk_count(16 * 2**32 + 1, 16)
    assert fmt.chunk_nonce(prefix, 2**32 - 1)[-4:] == b"\xff\xff\xff\xff"
    with pytest.raises(ChunkLimitError):
        fmt.chunk_nonce(prefix, 2**32)
    out = io.BytesIO()
    with pytest.raises(ChunkLimitError):
        fmt.encrypt_stream(io.BytesIO(b""), out, key=b"k" * 32, key_id="k", plaintext_length=2**32 + 1,
                           chunk_size=1)
    assert out.getvalue() == b""


def test_header_claiming_too_many_chunks_is_refused(ring: Keyring) -> None:
    header = fmt.build_header(ring.get(ring.active_id), ring.active_id, 1, 10)
    raw = bytearray(header.raw)
    length_at = 10 + len(ring.active_id) + 12
    raw[length_at: length_at + 8] = struct.pack(">Q", 2**32 + 1)
    with pytest.raises(ChunkLimitError):
        fmt.parse_header(io.BytesIO(bytes(raw)))


# ---- atomic writes ----------------------------------------------------------------------------------


class _FailingAESGCM:
    """Wraps AESGCM; the third chunk fails as a disk or bug would, mid-file."""

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aes = AESGCM(key)
        self.calls = 0

    def encrypt_into(self, *args: object) -> int:
        self.calls += 1
        if self.calls == 3:
            raise OSError("simulated failure")
        return self._aes.encrypt_into(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize("dst_exists", [False, True])
def test_failure_mid_encrypt_leaves_dst_untouched(tmp_path: Path, ring: Keyring,
                                                  monkeypatch: pytest.MonkeyPatch, dst_exists: bool) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(10 * CHUNK))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "dst.enc"
    if dst_exists:
        dst.write_bytes(b"previous version")
    monkeypatch.setattr(fmt, "AESGCM", _FailingAESGCM)
    with pytest.raises(OSError, match="simulated"):
        encrypt_file(src, dst, ring, chunk_size=CHUNK)
    assert sorted(p.name for p in out_dir.iterdir()) == (["dst.enc"] if dst_exists else [])
    if dst_exists:
        assert dst.read_bytes() == b"previous version"


def test_failure_mid_decrypt_leaves_dst_untouched(tmp_path: Path, ring: Keyring) -> None:
    path, _, header = _encrypted(tmp_path, ring)
    _flip(path, header + 2 * (CHUNK + TAG) + 5)  # chunk 2: chunks 0 and 1 were already written out
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "plain").write_bytes(b"old")
    with pytest.raises(CorruptChunkError):
        decrypt_file(path, out_dir / "plain", ring)
    assert [p.name for p in out_dir.iterdir()] == ["plain"]
    assert (out_dir / "plain").read_bytes() == b"old"


# ---- keyring ----------------------------------------------------------------------------------------


def test_keyring_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "keyring.json"
    Keyring.create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    ring = Keyring.load(path)
    ring.rotate()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["active"] == ring.active_id and len(data["keys"]) == 2


def test_keyring_with_open_permissions_warns(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    Keyring.create(path)
    os.chmod(path, 0o644)
    with pytest.warns(KeyringPermissionWarning, match="chmod 600"):
        Keyring.load(path)
    os.chmod(path, 0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Keyring.load(path)


def test_missing_and_corrupt_keyring(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="dubbing keys init"):
        Keyring.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    os.chmod(bad, 0o600)
    with pytest.raises(KeyringError, match="corrupt"):
        Keyring.load(bad)
    short_key = {"id": "a", "created": "", "key": "AAAA"}
    bad.write_text(json.dumps({"version": 1, "active": "a", "keys": [short_key]}))
    with pytest.raises(KeyringError, match="corrupt"):
        Keyring.load(bad)
    Keyring.create(tmp_path / "ok.json")
    with pytest.raises(KeyringError, match="already exists"):
        Keyring.create(tmp_path / "ok.json")


def test_key_rotation(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    ring = Keyring.create(path)
    first = ring.active_id
    old_file, old_plain, _ = _encrypted(tmp_path, ring)
    old_file = old_file.rename(tmp_path / "old.enc")
    second = ring.rotate()
    assert second != first and ring.active_id == second
    new_file, new_plain, _ = _encrypted(tmp_path, ring)
    assert inspect_file(old_file).key_id == first
    assert inspect_file(new_file).key_id == second
    reloaded = Keyring.load(path)
    assert reloaded.active_id == second and set(reloaded.keys()) == {first, second}
    assert decrypt_bytes(old_file.read_bytes(), reloaded) == old_plain
    assert decrypt_bytes(new_file.read_bytes(), reloaded) == new_plain


def test_import_key_formats_and_ids(ring: Keyring) -> None:
    raw = os.urandom(32)
    b64 = base64.b64encode(raw).decode()
    kid = ring.import_key(b64 + "\n")
    assert kid.startswith("k-") and ring.get(kid) == raw
    assert ring.import_key(raw) == kid  # same key again: nothing changes
    assert ring.import_key(os.urandom(32), "legacy-1") == "legacy-1"
    with pytest.raises(KeyringError):
        ring.import_key("not base64!")
    with pytest.raises(KeyringError):
        ring.import_key(base64.b64encode(b"short").decode())
    with pytest.raises(KeyringError):
        ring.import_key(os.urandom(32), "legacy-1")  # id taken by another key
    with pytest.raises(KeyringError):
        ring.import_key(os.urandom(32), "bad id/")


def test_env_key_overrides_active_without_touching_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    Keyring.create(path)
    before = path.read_bytes()
    env_raw = os.urandom(32)
    env = {"DUBBING_KEY": base64.b64encode(env_raw).decode()}
    ring = open_keyring(path, env)
    assert ring.get(ring.active_id) == env_raw and len(ring) == 2
    assert encrypt_bytes(b"x", ring)  # writes with the env key
    with pytest.raises(KeyringError):
        ring.save()
    assert path.read_bytes() == before
    alone = open_keyring(tmp_path / "missing.json", env)
    assert alone.get(alone.active_id) == env_raw
    with pytest.raises(KeyringError, match="DUBBING_KEY"):
        open_keyring(path, {"DUBBING_KEY": "???"})


def test_keys_never_in_repr_or_list(tmp_path: Path) -> None:
    ring = Keyring.create(tmp_path / "keyring.json")
    ring.rotate()
    ring.import_key(os.urandom(32))
    shown = repr(ring) + str(ring) + json.dumps(ring.list()) + repr(ring.list()) + repr(ring.__dict__)
    shown += str(ring._entries)  # the dataclass entries hide their key too
    for secret in secret_forms(ring):
        assert secret not in shown
    assert {"id", "created", "active", "fingerprint"} <= set(ring.list()[0])
    assert all("key" not in entry for entry in ring.list())


# ---- temporary plaintext ------------------------------------------------------------------------------


def test_plaintext_tempfile_is_private(tmp_path: Path) -> None:
    path = plaintext_tempfile(tmp_path, suffix=".wav")
    assert path.name.startswith(TEMP_PREFIX) and path.suffix == ".wav"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_secure_temp_copy(tmp_path: Path, ring: Keyring) -> None:
    path, plain, _ = _encrypted(tmp_path, ring)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    copy = secure_temp_copy(path, ring, scratch, suffix=".bin")
    assert copy.read_bytes() == plain and copy.name.startswith(TEMP_PREFIX)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    copy.unlink()
    _flip(path, path.stat().st_size - 1)
    with pytest.raises(CorruptChunkError):
        secure_temp_copy(path, ring, scratch)
    assert list(scratch.iterdir()) == []


def test_cleanup_removes_stale_temporaries_of_both_prefixes(tmp_path: Path) -> None:
    old = time.time() - 7 * 3600
    names = {"ours_old": TEMP_PREFIX + "a.wav", "legacy_old": LEGACY_TEMP_PREFIX + "b.mkv",
             "ours_fresh": TEMP_PREFIX + "c.wav", "legacy_fresh": LEGACY_TEMP_PREFIX + "d",
             "unrelated_old": "keep-me.txt"}
    for label, name in names.items():
        (tmp_path / name).write_bytes(b"plaintext")
        if label.endswith("old"):
            os.utime(tmp_path / name, (old, old))
    stale_dir = tmp_path / (TEMP_PREFIX + "dir")
    stale_dir.mkdir()
    (stale_dir / "inner.wav").write_bytes(b"x")
    os.utime(stale_dir / "inner.wav", (old, old))
    os.utime(stale_dir, (old, old))
    busy_dir = tmp_path / (TEMP_PREFIX + "busy")
    busy_dir.mkdir()
    (busy_dir / "inner.wav").write_bytes(b"x")  # fresh content: the folder is in use
    os.utime(busy_dir, (old, old))
    removed = cleanup_stale_temporaries(tmp_path)
    assert {p.name for p in removed} == {names["ours_old"], names["legacy_old"], stale_dir.name}
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {names["ours_fresh"], names["legacy_fresh"], names["unrelated_old"], busy_dir.name}
    assert cleanup_stale_temporaries(tmp_path / "missing") == []
