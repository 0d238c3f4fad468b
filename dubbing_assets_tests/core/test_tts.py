"""TTS engines: Piper synthesizes with the packaged voice; assigned voices sound like different people."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubbing_assets.core import tts
from dubbing_assets.core.contracts import Voice
from dubbing_assets.core.tts import (
    EspeakEngine,
    PiperEngine,
    SynthResult,
    TTSEngine,
    assign_voice,
    get_engine,
)
from dubbing_assets.errors import ConfigError, ToolNotFoundError


@pytest.fixture(scope="module")
def piper() -> PiperEngine:
    return PiperEngine()


def test_piper_engine_loads_lazily_and_lists_the_packaged_voice() -> None:
    engine = get_engine("piper")
    assert isinstance(engine, TTSEngine)
    assert engine.voices() == [tts.DEFAULT_PIPER_VOICE]
    assert engine._loaded == {}  # nothing loaded until the first line
    assert engine.version == PiperEngine().version and "piper-tts" in engine.version


def test_piper_synthesizes_and_rate_speeds_it_up(piper: PiperEngine, tmp_path: Path) -> None:
    voice = assign_voice(0, None, piper.voices())
    text = "Yeah, I stopped by the bakery in front of the station."
    normal = piper.synthesize(text, voice, tmp_path / "normal.wav")
    fast = piper.synthesize(text, voice, tmp_path / "fast.wav", rate=1.3)
    assert isinstance(normal, SynthResult) and normal.sample_rate == 22050
    audio, sr = sf.read(normal.path)
    assert sr == 22050 and audio.ndim == 1
    assert normal.duration_s == pytest.approx(len(audio) / sr)
    assert 2.0 < normal.duration_s < 6.0
    assert 0.02 < float(np.sqrt(np.mean(audio**2))) < 0.5  # real speech, peak-normalised
    # Piper's stochastic duration predictor gives 1.13-1.18x shorter at rate 1.3 on this line (total, with
    # its fixed edges): clearly faster, though not the full 1.3.
    assert fast.duration_s < normal.duration_s / 1.1
    # the voice is loaded once per engine instance
    piper.synthesize("Again.", voice, tmp_path / "again.wav")
    assert list(piper._loaded) == [tts.DEFAULT_PIPER_VOICE]


def test_pitch_shift_changes_the_voice_not_the_length(piper: PiperEngine, tmp_path: Path) -> None:
    text = "Two melon buns. You can have one."
    base = piper.synthesize(text, Voice("piper", tts.DEFAULT_PIPER_VOICE), tmp_path / "a.wav")
    low = piper.synthesize(
        text, Voice("piper", tts.DEFAULT_PIPER_VOICE, pitch_semitones=-4), tmp_path / "b.wav"
    )
    assert low.duration_s == pytest.approx(base.duration_s, rel=0.06)  # Piper varies a little per run

    def centroid(path: Path) -> float:
        x, sr = sf.read(path)
        spec = np.abs(np.fft.rfft(x))
        freqs = np.fft.rfftfreq(len(x), 1 / sr)
        return float((spec * freqs).sum() / spec.sum())

    assert centroid(low.path) < centroid(base.path) * 0.92


def test_assigned_voices_separate_in_speaker_embedding_space(piper: PiperEngine, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from resemblyzer import VoiceEncoder, preprocess_wav

        encoder = VoiceEncoder("cpu", verbose=False)
    lines = ["Morning. You're pretty early today.", "Lucky you. What did you get?"]
    emb: dict[tuple[int, int], np.ndarray] = {}
    for character in (0, 1):
        voice = assign_voice(character, None, piper.voices())
        for n, text in enumerate(lines):
            result = piper.synthesize(text, voice, tmp_path / f"c{character}-{n}.wav")
            emb[(character, n)] = encoder.embed_utterance(preprocess_wav(result.path))
    same = [float(emb[(c, 0)] @ emb[(c, 1)]) for c in (0, 1)]
    between = [float(emb[(0, a)] @ emb[(1, b)]) for a in (0, 1) for b in (0, 1)]
    print(f"resemblyzer cosine: same character {same}, between characters {between}")
    assert max(between) < min(same)
    assert np.mean(same) - np.mean(between) > 0.1


def test_assign_voice_is_deterministic_and_distinct() -> None:
    voices = ["en_US-joe-medium"]
    first = [assign_voice(i, None, voices) for i in range(8)]
    again = [assign_voice(i, None, voices) for i in range(8)]
    assert first == again
    assert first[0].pitch_semitones == 0 and first[0].length_scale == 1.0
    assert first[1].pitch_semitones == -4 and first[1].length_scale == pytest.approx(1.05)
    assert first[2].pitch_semitones > 0
    assert len({(v.pitch_semitones, v.length_scale) for v in first}) == 8
    female = [assign_voice(i, "female", voices) for i in range(4)]
    assert all(v.pitch_semitones > 0 for v in female)
    assert all(v.pitch_semitones <= 0 for v in (assign_voice(i, "male", voices) for i in range(4)))
    # several installed voices: characters go through the voices first
    two = [assign_voice(i, None, ["a", "b"]) for i in range(4)]
    assert [v.voice for v in two] == ["a", "b", "a", "b"]
    assert (two[0].pitch_semitones, two[1].pitch_semitones) == (0, 0) and two[2].pitch_semitones == -4
    # a multi-speaker voice: speaker ids first, then pitch/length variants
    multi = [assign_voice(i, None, ["libritts"], speaker_counts={"libritts": 3}) for i in range(4)]
    assert [(v.speaker_id, v.pitch_semitones) for v in multi] == [(0, 0), (1, 0), (2, 0), (0, -4)]
    assert PiperEngine().speaker_counts() == {"en_US-joe-medium": 1}
    with pytest.raises(ValueError):
        assign_voice(-1, None, voices)


def test_registry_and_unknown_engine(tmp_path: Path) -> None:
    """(A new engine as a module plus one entry point: core/test_plugins.py.)"""
    with pytest.raises(ConfigError, match="Unknown TTS engine"):
        get_engine("nope")
    assert isinstance(get_engine("piper"), PiperEngine) and isinstance(get_engine("espeak"), EspeakEngine)


def test_unknown_piper_voice_is_a_config_error(piper: PiperEngine, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not installed"):
        piper.synthesize("Hi.", Voice("piper", "en_GB-nobody-low"), tmp_path / "x.wav")


def test_espeak_missing_is_a_clear_tool_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolNotFoundError, match="espeak-ng"):
        get_engine("espeak")


@pytest.mark.skipif(
    not (shutil.which("espeak-ng") or shutil.which("espeak")), reason="espeak-ng not installed"
)
def test_espeak_synthesizes(tmp_path: Path) -> None:
    engine = EspeakEngine()
    result = engine.synthesize("Hello there.", Voice("espeak", "en-us"), tmp_path / "e.wav", rate=1.2)
    assert result.duration_s > 0.3


def _local_voice(models: Path, voice: str, source: Path, *, speakers: int | None = None) -> None:
    """A catalogue-named voice folder as a studio lays it out: DUBBING_MODELS_DIR/piper-<voice>/."""
    import json

    folder = models / f"piper-{voice}"
    folder.mkdir(parents=True)
    (folder / f"{voice}.onnx").symlink_to(source)
    config = json.loads(Path(f"{source}.json").read_text(encoding="utf-8"))
    if speakers is not None:
        config["num_speakers"] = speakers
    (folder / f"{voice}.onnx.json").write_text(json.dumps(config), encoding="utf-8")


def test_the_piper_catalogue_by_name_from_local_voice_folders(tmp_path: Path) -> None:
    """Issue 13: Piper voices by catalogue name, resolved by the registry (local folder, packages, then the
    download where allowed). Before, only the packaged voice was ever in the bank: a piper-<voice>/ folder
    in DUBBING_MODELS_DIR was never read, though the README said so."""
    from dubbing_assets.core.models import ModelRegistry

    joe = tts.resolve_piper_model()
    models = tmp_path / "models"
    _local_voice(models, "en_US-libritts_r-medium", joe, speakers=4)  # a multi-speaker catalogue model
    _local_voice(models, "en_GB-alba-medium", joe)
    (models / "piper-en_GB-broken-medium").mkdir()  # no voice files
    reg = ModelRegistry(cache_dir=tmp_path / "cache", models_dir=models)  # offline: no download
    engine = PiperEngine(registry=reg, catalogue=["en_GB-alba-medium", "de_DE-thorsten-medium"])
    assert engine.voices() == [tts.DEFAULT_PIPER_VOICE, "en_GB-alba-medium", "en_US-libritts_r-medium"]
    assert engine.speaker_counts()["en_US-libritts_r-medium"] == 4
    assert set(engine.unavailable) == {"de_DE-thorsten-medium", "en_GB-broken-medium"}
    assert "DUBBING_MODELS_DIR" in engine.unavailable["de_DE-thorsten-medium"]  # says where to put it
    out = engine.synthesize("Hello there.", Voice("piper", "en_GB-alba-medium"), tmp_path / "alba.wav")
    assert out.duration_s > 0.3
    with pytest.raises(ConfigError, match="de_DE-thorsten-medium.*not installed here.*DUBBING_PIPER_VOICES"):
        engine.synthesize("Hello.", Voice("piper", "de_DE-thorsten-medium"), tmp_path / "no.wav")


def test_adding_a_piper_voice_keeps_every_other_voices_cached_work(tmp_path: Path) -> None:
    """The engine's version digests all its voices, and it keyed every cached line, duration model and bank
    entry: one voice added to the bank re-synthesized every Piper line once. Each line now keys on its own
    voice's version (`identity_of`), also through a router that mixes engines."""
    from dubbing_assets.core.engines import VoiceRouter
    from dubbing_assets.core.models import ModelRegistry
    from dubbing_assets.core.timing import line_key

    joe = tts.resolve_piper_model()
    models = tmp_path / "models"
    _local_voice(models, "en_GB-alba-medium", joe)
    before = PiperEngine(registry=ModelRegistry(cache_dir=tmp_path / "cache", models_dir=models))
    _local_voice(models, "en_US-libritts_r-medium", joe, speakers=4)
    after = PiperEngine(registry=ModelRegistry(cache_dir=tmp_path / "cache", models_dir=models))
    alba = Voice("piper", "en_GB-alba-medium")
    assert before.version != after.version  # the engine as a whole did change
    assert tts.identity_of(before, alba) == tts.identity_of(after, alba)
    assert tts.identity_of(after, alba) != tts.identity_of(after, Voice("piper", "en_US-libritts_r-medium"))
    mixed = VoiceRouter({"piper": after, "espeak": object()})
    assert tts.identity_of(mixed, alba) == tts.identity_of(before, alba)  # as Piper alone keys it
    assert line_key("Hi.", alba, *tts.identity_of(mixed, alba), 1.0) == line_key(
        "Hi.", alba, *tts.identity_of(before, alba), 1.0)


def test_the_runtime_gives_piper_the_catalogue_of_the_settings(dubbing_env: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from dubbing_assets.core.runtime import Runtime

    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("DUBBING_MODELS_DIR", str(models))
    monkeypatch.setenv("DUBBING_PIPER_VOICES", "en_GB-alba-medium, en_US-ryan-high")
    _local_voice(models, "en_GB-alba-medium", tts.resolve_piper_model())
    engine = Runtime().tts("piper")
    assert "en_GB-alba-medium" in engine.voices() and set(engine.unavailable) == {"en_US-ryan-high"}


def test_cloned_lines_key_on_their_own_fallback_voice(tmp_path: Path) -> None:
    """High mode's verified clone engine keyed every line on its fallback's engine-wide version, so a Piper
    voice added to the bank re-synthesized (re-cloned) every cached line too."""
    from dubbing_assets.core.cloning import VerifiedCloneEngine, clone_voice
    from dubbing_assets.core.models import ModelRegistry

    class Primary:  # the cloning engine's name and version are all the key reads of it
        name, version = "xtts", "xtts-test 1"

    joe = tts.resolve_piper_model()
    models = tmp_path / "models"
    _local_voice(models, "en_GB-alba-medium", joe)
    before = VerifiedCloneEngine(Primary(), PiperEngine(registry=ModelRegistry(cache_dir=tmp_path, models_dir=models)))
    _local_voice(models, "en_US-libritts_r-medium", joe)
    after = VerifiedCloneEngine(Primary(), PiperEngine(registry=ModelRegistry(cache_dir=tmp_path, models_dir=models)))
    cloned = clone_voice({"latents": None, "reference_embedding": [0.0] * 256}, Voice("piper", "en_GB-alba-medium"))
    pinned = Voice("piper", "en_GB-alba-medium")  # a low-mode voice pinned in a high-mode cast
    assert before.version != after.version
    assert tts.identity_of(before, cloned) == tts.identity_of(after, cloned)
    assert tts.identity_of(before, pinned) == tts.identity_of(after, pinned)
