"""One plugin mechanism: every engine kind is an entry-point group (core/plugins.py).

The claim to hold: a new engine is one module plus one registration line. The
test writes a second TTS engine as a module of its own and registers it with a
single entry-point line in package metadata on sys.path, exactly as another
installed package would, then speaks a line with it through the same calls
the stages make (`get_engine`, `route_voices`) next to a Piper voice.
"""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest
import soundfile as sf

from dubbing_assets.core import plugins
from dubbing_assets.core.contracts import Voice
from dubbing_assets.core.engines import route_voices
from dubbing_assets.core.lipsync import get_plugin
from dubbing_assets.core.stems import get_separator
from dubbing_assets.core.translate import get_translator
from dubbing_assets.core.tts import TTSEngine, get_engine
from dubbing_assets.errors import ConfigError, ModelNotFoundError

REPO = Path(__file__).resolve().parents[2]

TOY_ENGINE = '''
"""A toy second TTS engine: a tone per word, for the plugin test."""
from pathlib import Path

import numpy as np

from dubbing_assets.core.audio_io import write_wav_atomic
from dubbing_assets.core.tts import SynthResult


class ToneEngine:
    name = "tone"
    version = "tone-1"

    def __init__(self, **kw):
        self.kw = kw

    def voices(self):
        return ["low", "high"]

    def synthesize(self, text, voice, out_wav, *, rate=1.0):
        rate_hz, freq = 16000, 220.0 if voice.voice == "low" else 440.0
        n = int(0.25 * len(text.split()) / rate * rate_hz)
        audio = 0.3 * np.sin(2 * np.pi * freq * np.arange(n) / rate_hz)
        write_wav_atomic(Path(out_wav), audio, rate_hz)
        return SynthResult(Path(out_wav), n / rate_hz, rate_hz)
'''


@pytest.fixture
def toy_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The module, and its one registration line in an installed distribution's metadata."""
    (tmp_path / "toy_tone_tts.py").write_text(textwrap.dedent(TOY_ENGINE), encoding="utf-8")
    info = tmp_path / "toy_tone_tts-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-tone-tts\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(
        "[dubbing_assets.tts]\n"
        "tone = toy_tone_tts:ToneEngine\n",  # the registration line
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_second_tts_engine_is_one_module_plus_one_line(toy_package: Path, tmp_path: Path) -> None:
    assert plugins.declared(plugins.TTS)["tone"].dist.name == "toy-tone-tts"  # found in its own metadata
    engine = get_engine("tone", registry=None)
    assert isinstance(engine, TTSEngine) and engine.voices() == ["low", "high"]
    # the cast mixes it with the built-in Piper voice, as dub_speech builds its engine
    router = route_voices([Voice("tone", "high"), Voice("piper", "en_US-joe-medium")], get_engine)
    assert sorted(router.engines) == ["piper", "tone"]
    result = router.synthesize("one two three four", Voice("tone", "high"), tmp_path / "line.wav")
    audio, rate = sf.read(result.path)
    assert rate == 16000 and len(audio) == 16000 and result.duration_s == pytest.approx(1.0)


def test_the_project_declares_every_engine_it_ships() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["entry-points"]
    assert set(declared) == {plugins.TTS, plugins.TRANSLATOR, plugins.SEPARATOR, plugins.LIPSYNC}
    assert set(declared[plugins.TTS]) == {"piper", "espeak", "kokoro", "xtts"}
    for group, engines in declared.items():
        found = plugins.declared(group)
        for name, value in engines.items():
            assert found[name].value == value
            obj = found[name].load()  # every declared object imports in the base install (no extra needed)
            assert callable(obj), (group, name)


def test_unknown_and_broken_engines_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"Unknown translation engine 'babelfish'; .*choose one of: ctranslate2"):
        get_translator("babelfish")
    with pytest.raises(ModelNotFoundError, match=r"Unknown separator 'x'; choose one of: demucs, signal"):
        get_separator("x")
    with pytest.raises(ConfigError, match="Unknown lip-sync plugin 'nope'"):
        get_plugin("nope")
    info = tmp_path / "broken_tts-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-tts\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[dubbing_assets.tts]\nbroken = no_such_module_here:Engine\n",
                                           encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"TTS engine 'broken' \(no_such_module_here:Engine\) failed to import"):
        get_engine("broken")


def test_a_stale_editable_install_still_finds_the_checkouts_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metadata from an older `pip install -e .` lacks new entry points; the checkout's pyproject has them."""
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])  # metadata with no entry points at all
    assert set(plugins.declared(plugins.TTS)) == {"piper", "espeak", "kokoro", "xtts"}
    assert get_engine("espeak").name == "espeak"
