"""The per-line TTS cache, encrypted at rest.

Same keys and counters as `timing.LineCache` (text, voice, engine version,
rate), but each entry is stored as `<key>.wav.enc` in the project's chunked
AES-GCM format; plaintext copies live only in the step's scratch folder.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from dubbing_assets.core.crypto import Keyring, decrypt_file, encrypt_file
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
            decrypt_file(path, plain, self.keyring)
        return plain

    def fetch(self, key: str, produce: Callable[[Path], SynthResult], out_wav: Path | None = None) -> SynthResult:
        self.keys_used.append(key)
        plain = self.get(key)
        if plain is not None:
            self.hits += 1
        else:
            self.misses += 1
            plain = self.scratch / f"{key}.wav"
            produce(plain)
            enc = self.path_for(key)
            enc.parent.mkdir(parents=True, exist_ok=True)
            encrypt_file(plain, enc, self.keyring)
        import soundfile as sf

        info = sf.info(str(plain))
        target = plain
        if out_wav is not None and Path(out_wav) != plain:
            Path(out_wav).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plain, out_wav)
            target = Path(out_wav)
        return SynthResult(target, info.frames / info.samplerate, int(info.samplerate))
