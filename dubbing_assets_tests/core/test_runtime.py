"""The stages' runtime: one scratch folder, models loaded once, the keyring never created."""

from __future__ import annotations

from pathlib import Path

import pytest

from dubbing_assets.core.crypto.files import STALE_PREFIXES
from dubbing_assets.core.runtime import Runtime
from dubbing_assets.core.settings import load_settings
from dubbing_assets.errors import DubbingError


def test_scratch_is_private_swept_and_removed_on_close(dubbing_env: Path) -> None:
    rt = Runtime(load_settings())
    work = rt.workdir("dub_speech")
    assert work.is_dir() and work.parent == rt.scratch
    assert rt.scratch.parent == rt.settings.tmp and rt.scratch.name.startswith(STALE_PREFIXES)
    assert oct(rt.settings.tmp.stat().st_mode & 0o777) == "0o700"
    assert rt.workdir("dub_speech") == work  # a stage asking twice gets its own folder back
    (work / "line.wav").write_bytes(b"plaintext")
    scratch = rt.scratch
    rt.close()
    assert not scratch.exists()


def test_a_model_is_loaded_once_per_runtime(dubbing_env: Path) -> None:
    rt = Runtime(load_settings())
    loads: list[int] = []
    first = rt.model(("toy", "a"), lambda: loads.append(1) or object())
    again = rt.model(("toy", "a"), lambda: loads.append(1) or object())
    other = rt.model(("toy", "b"), lambda: loads.append(1) or object())
    assert first is again and first is not other and len(loads) == 2
    assert rt.tts("piper") is rt.tts("piper")  # the engine cast, translation and dub_speech share


def test_a_runtime_never_creates_a_keyring(dubbing_env: Path) -> None:
    settings = load_settings()
    settings.keyring.unlink()
    rt = Runtime(settings)
    with pytest.raises(DubbingError, match="no keyring here; run `dubbing keys init`"):
        _ = rt.keyring
    assert not settings.keyring.exists()


def test_settings_load_when_first_asked(dubbing_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = Runtime()  # nothing read yet: one code location serves every deployment
    monkeypatch.setenv("DUBBING_TARGET_LANG", "fr")
    assert rt.settings.target_lang == "fr" and rt.device == "auto"
