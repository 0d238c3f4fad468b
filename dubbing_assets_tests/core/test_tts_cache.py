"""The encrypted per-line TTS cache (core/tts_cache.py).

What the render step relies on: a miss synthesizes once and keeps only ciphertext in the shared cache folder
(plaintext lives only in the step's scratch folder), a later run hits without synthesizing and gets the same
audio back, entries are keyed like `timing.LineCache` (text, voice, engine version, rate), a failed synthesis
caches nothing, and an entry that cannot be read (damaged, or under a key the ring no longer holds) is made
again instead of failing the episode, while an unusable keyring still raises. The keying itself (`line_key`)
and the plaintext `LineCache` are tested in test_timing.py.
"""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubbing_assets.core.contracts import Voice
from dubbing_assets.core.crypto import FORMAT_NEW, CryptoError, Keyring, decrypt_file, inspect_file
from dubbing_assets.core.timing import cached_synthesizer, line_key
from dubbing_assets.core.tts import SynthResult
from dubbing_assets.core.tts_cache import EncryptedLineCache
from dubbing_assets.errors import DubbingError, EngineError

SR = 22050
VOICE = Voice("fake", "fake")


def _key(text: str = "Good morning.", rate: float = 1.0) -> str:
    return line_key(text, VOICE, "fake", "1", rate)


class Producer:
    """Writes a `seconds`-long tone WAV where it is told to; counts its calls (a stand-in TTS engine)."""

    def __init__(self, seconds: float = 0.5, hz: float = 220.0) -> None:
        self.seconds, self.hz = seconds, hz
        self.paths: list[Path] = []

    def __call__(self, out_wav: Path) -> SynthResult:
        self.paths.append(Path(out_wav))
        t = np.arange(int(self.seconds * SR)) / SR
        sf.write(out_wav, (0.4 * np.sin(2 * np.pi * self.hz * t)).astype(np.float32), SR, subtype="PCM_16")
        return SynthResult(Path(out_wav), self.seconds, SR)


def _cache(tmp_path: Path, ring: Keyring, run: str = "run1") -> EncryptedLineCache:
    return EncryptedLineCache(tmp_path / "cache", ring, tmp_path / run / "plain")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_a_miss_synthesizes_once_and_stores_only_ciphertext(tmp_path: Path, ring: Keyring) -> None:
    cache, produce, key = _cache(tmp_path, ring), Producer(), _key()
    result = cache.fetch(key, produce)
    assert (cache.hits, cache.misses, len(produce.paths)) == (0, 1, 1)
    assert produce.paths[0].parent == tmp_path / "run1" / "plain"  # synthesized into the scratch folder
    assert result.path == produce.paths[0]
    assert result.duration_s == pytest.approx(0.5, abs=1 / SR) and result.sample_rate == SR

    entries = _files(tmp_path / "cache")
    assert entries == [tmp_path / "cache" / key[:2] / f"{key}.wav.enc"] == [cache.path_for(key)]
    blob, plain = entries[0].read_bytes(), result.path.read_bytes()
    assert inspect_file(entries[0]).format == FORMAT_NEW
    assert not blob.startswith(b"RIFF") and plain[-4096:] not in blob  # no plaintext audio at rest
    assert stat.S_IMODE(entries[0].stat().st_mode) & 0o077 == 0
    decrypt_file(entries[0], tmp_path / "check.wav", ring)
    assert (tmp_path / "check.wav").read_bytes() == plain


def test_a_later_run_hits_without_synthesizing(tmp_path: Path, ring: Keyring) -> None:
    key = _key()
    first = _cache(tmp_path, ring, "run1").fetch(key, Producer())
    original = first.path.read_bytes()

    second_run, produce = _cache(tmp_path, ring, "run2"), Producer()
    result = second_run.fetch(key, produce)
    assert produce.paths == [] and (second_run.hits, second_run.misses) == (1, 0)
    assert result.path.parent == tmp_path / "run2" / "plain"  # decrypted into this run's scratch
    assert result.path.read_bytes() == original
    assert result.duration_s == pytest.approx(0.5, abs=1 / SR) and result.sample_rate == SR
    assert second_run.keys_used == [key]


def test_get_is_none_for_an_absent_line_and_the_audio_once_stored(tmp_path: Path, ring: Keyring) -> None:
    key = _key()
    assert _cache(tmp_path, ring).get(key) is None
    _cache(tmp_path, ring, "run1").fetch(key, Producer())
    fresh = _cache(tmp_path, ring, "run2")
    got = fresh.get(key)
    assert got is not None and got.parent == tmp_path / "run2" / "plain"
    audio, sr = sf.read(got)
    assert sr == SR and len(audio) == int(0.5 * SR)


def test_entries_are_keyed_by_text_voice_engine_and_rate(tmp_path: Path, ring: Keyring) -> None:
    """Through `cached_synthesizer`, as the timing fit uses it: each distinct line is synthesized once."""

    class Engine:
        name, version = "fake", "1"

        def __init__(self) -> None:
            self.calls: list[tuple[str, str, float]] = []

        def synthesize(self, text: str, voice: Voice, out_wav: Path, *, rate: float = 1.0) -> SynthResult:
            self.calls.append((text, voice.voice, rate))
            return Producer(seconds=0.2 + 0.01 * len(text) / rate)(out_wav)

    engine, cache = Engine(), _cache(tmp_path, ring)
    other_voice = Voice("fake", "other")
    asks = [("Hello.", VOICE, 1.0), ("Hello.", VOICE, 1.0), ("Hello.", VOICE, 1.1), ("Hello!", VOICE, 1.0),
            ("Hello.", other_voice, 1.0), ("Hello.", VOICE, 1.0004), ("Hello.", VOICE, 1.1)]
    results = [cached_synthesizer(engine, text, voice, cache)(rate, tmp_path / f"out{i}.wav")
               for i, (text, voice, rate) in enumerate(asks)]
    assert engine.calls == [("Hello.", "fake", 1.0), ("Hello.", "fake", 1.1), ("Hello!", "fake", 1.0),
                            ("Hello.", "other", 1.0)]
    assert (cache.hits, cache.misses) == (3, 4)
    assert len(list((tmp_path / "cache").rglob("*.wav.enc"))) == 4
    assert results[1].duration_s == results[0].duration_s != results[2].duration_s


def test_fetch_copies_the_line_to_out_wav(tmp_path: Path, ring: Keyring) -> None:
    cache, key = _cache(tmp_path, ring), _key()
    out = tmp_path / "clips" / "line-0.wav"
    result = cache.fetch(key, Producer(), out)
    assert result.path == out and out.read_bytes() == (tmp_path / "run1" / "plain" / f"{key}.wav").read_bytes()
    again = _cache(tmp_path, ring, "run2").fetch(key, Producer(), tmp_path / "clips" / "line-0b.wav")
    assert again.path.read_bytes() == out.read_bytes()


def test_a_failed_synthesis_caches_nothing(tmp_path: Path, ring: Keyring) -> None:
    cache, key = _cache(tmp_path, ring), _key()

    def broken(out_wav: Path) -> SynthResult:
        out_wav.write_bytes(b"RIFF half a wav")
        raise EngineError("the TTS engine crashed")

    with pytest.raises(EngineError):
        cache.fetch(key, broken)
    assert list((tmp_path / "cache").rglob("*.enc")) == [] and cache.get(key) is None
    produce = Producer()
    result = cache.fetch(key, produce)
    assert len(produce.paths) == 1 and cache.misses == 2
    assert sf.info(str(result.path)).frames == int(0.5 * SR)  # the real audio, not the broken attempt's


def test_an_entry_under_a_key_the_ring_does_not_hold_is_made_again(tmp_path: Path, ring: Keyring,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    key = _key()
    _cache(tmp_path, ring).fetch(key, Producer())
    stranger, produce = Keyring.generate(), Producer()
    cache = _cache(tmp_path, stranger, "run2")
    with caplog.at_level("WARNING"):
        result = cache.fetch(key, produce)
    assert len(produce.paths) == 1 and cache.stats == {"hits": 0, "misses": 1, "repaired": 1}
    assert "damaged" in caplog.text and key[:12] in caplog.text
    decrypt_file(cache.path_for(key), tmp_path / "check.wav", stranger)  # now under the ring in use
    assert (tmp_path / "check.wav").read_bytes() == result.path.read_bytes()


def test_a_damaged_entry_is_made_again_not_a_failed_episode(tmp_path: Path, ring: Keyring) -> None:
    """A bit flipped in an entry (a disk error, a torn copy): the entry is discarded and the line synthesized
    again, into a sound entry; no plaintext of the damaged one is left."""
    key = _key()
    _cache(tmp_path, ring).fetch(key, Producer())
    entry = _cache(tmp_path, ring).path_for(key)
    blob = bytearray(entry.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    entry.write_bytes(bytes(blob))
    cache, produce = _cache(tmp_path, ring, "run2"), Producer()
    result = cache.fetch(key, produce)
    assert len(produce.paths) == 1 and (cache.misses, cache.repaired) == (1, 1)
    assert _files(tmp_path / "run2" / "plain") == [result.path]
    assert sf.info(str(result.path)).frames == int(0.5 * SR)
    again = _cache(tmp_path, ring, "run3")
    again.fetch(key, Producer())
    assert (again.hits, again.repaired) == (1, 0)  # the entry written in its place is sound


def test_a_keyring_that_cannot_be_used_still_fails_loudly(tmp_path: Path, ring: Keyring) -> None:
    """Not every crypto error is one bad entry: an unusable keyring would fail every line, so it is raised."""
    from dubbing_assets.core.crypto.errors import KeyringError

    key = _key()
    cache = _cache(tmp_path, ring)
    cache.fetch(key, Producer())

    class Broken(Keyring):
        def get(self, key_id):  # type: ignore[override]
            raise KeyringError("keyring file unreadable")

    broken = Broken.__new__(Broken)
    broken.__dict__.update(ring.__dict__)
    with pytest.raises(CryptoError) as err:
        _cache(tmp_path, broken, "run2").fetch(key, Producer())
    assert isinstance(err.value, DubbingError) and isinstance(err.value, KeyringError)
    assert cache.path_for(key).is_file()  # the entry is kept


def test_entries_stay_readable_after_the_key_is_rotated(tmp_path: Path, ring: Keyring) -> None:
    key = _key()
    original = _cache(tmp_path, ring).fetch(key, Producer()).path.read_bytes()
    ring.rotate()
    produce = Producer()
    assert _cache(tmp_path, ring, "run2").fetch(key, produce).path.read_bytes() == original
    assert produce.paths == []


@pytest.mark.parametrize("bad", ["", "../../etc/passwd", "A" * 64, "g" * 64, "a" * 63, "a" * 65,
                                 "../" + "a" * 61])
def test_a_malformed_key_is_refused(tmp_path: Path, ring: Keyring, bad: str) -> None:
    cache = _cache(tmp_path, ring)
    with pytest.raises(ValueError, match="not a line key"):
        cache.path_for(bad)
    with pytest.raises(ValueError):
        cache.fetch(bad, Producer())
    assert _files(tmp_path / "cache") == []
