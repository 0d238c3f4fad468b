"""The per-line TTS cache, encrypted at rest.

Same keys and counters as `timing.LineCache` (text, voice, engine version,
rate), but each entry is stored as `<key>.wav.enc` in the project's chunked
AES-GCM format; plaintext copies live only in the step's scratch folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dubbing_assets.core.crypto import Keyring, decrypt_file, encrypt_file
from dubbing_assets.core.crypto.errors import CryptoError, KeyringError
from dubbing_assets.core.timing import LineCache
from dubbing_assets.core.tts import SynthResult


class EncryptedLineCache(LineCache):
    def __init__(self, folder: Path, keyring: Keyring, scratch: Path) -> None:
        super().__init__(Path(folder))
        self.keyring = keyring
        self.scratch = Path(scratch)
        self.scratch.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        return super().path_for(key).with_suffix(".wav.enc")

    def get(self, key: str) -> Path | None:
        path = self.path_for(key)
        if not path.is_file():
            return None
        plain = self.scratch / f"{key}.wav"
        if not plain.exists():
            try:
                decrypt_file(path, plain, self.keyring)
            except KeyringError:  # the ring itself is unusable: every entry would fail, say so
                raise
            except CryptoError as exc:  # this entry: torn, tampered, or under a key no longer held
                self._discard(key, f"{type(exc).__name__}: {exc}")
                return None
        return plain

    def _copies(self, key: str) -> tuple[Path, ...]:
        return (self.scratch / f"{key}.wav",)

    def _store(self, key: str, produce: Callable[[Path], SynthResult]) -> Path:
        plain = self.scratch / f"{key}.wav"
        produce(plain)
        enc = self.path_for(key)
        enc.parent.mkdir(parents=True, exist_ok=True)
        encrypt_file(plain, enc, self.keyring)
        return plain
