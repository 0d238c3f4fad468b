"""XTTS v2 engine with a tiny random-weight checkpoint: the real loading, conditioning and inference and retries.

Runs in the high-mode environment (`.venv-high`, `scripts/dev.py setup --high`), where `scripts/dev.py test`
selects it with `-m highmode`; it is `required`, so under CI it is never skipped. Without the extra the
fixtures fail with the install hint instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubbing_assets.core import cloning, plugins
from dubbing_assets.core.characters import CharacterStore
from dubbing_assets.core.contracts import TranslatedLine, Voice
from dubbing_assets.core.crypto import Keyring
from dubbing_assets.core.engines.xtts import XTTS_MODEL, XTTSEngine, split_for_retry
from dubbing_assets.core.models import ModelRegistry
from dubbing_assets.core.random_models import build_random_xtts
from dubbing_assets.core.timing import fit_lines
from dubbing_assets.core.tts import TTSEngine, get_engine
from dubbing_assets.errors import EngineError, ModelNotFoundError

pytestmark = [pytest.mark.highmode, pytest.mark.required]

MEDIA = Path(__file__).resolve().parents[1] / "data" / "media"
TEXT = "Two melon buns. You can have one."


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_random_xtts(root / XTTS_MODEL)
    return root


@pytest.fixture(scope="module")
def engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> XTTSEngine:
    registry = ModelRegistry(cache_dir=tmp_path_factory.mktemp("cache"), models_dir=models_dir)
    return XTTSEngine(registry=registry, device="cpu")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Aiko's first line of the fixture, cut at 24 kHz as pass 1 does."""
    out = tmp_path_factory.mktemp("refs")
    return cloning.cut_references(MEDIA / "ja_two_speakers.mkv", [(1.021, 3.587)], out)[0]


@pytest.fixture(scope="module")
def latents(engine: XTTSEngine, reference: Path) -> dict:
    return engine.conditioning([reference])


def _voice(latents: dict, **settings) -> Voice:
    return Voice("xtts", XTTS_MODEL, settings={"xtts_latents": latents, "language": "en", **settings})


def test_registered_on_demand_and_loaded_once(engine: XTTSEngine, models_dir: Path) -> None:
    assert plugins.load(plugins.TTS, "xtts", kind="TTS engine") is XTTSEngine
    built = get_engine("xtts", model_path=models_dir / XTTS_MODEL, device="cpu")
    assert isinstance(built, TTSEngine) and built.name == "xtts" and built.voices() == [XTTS_MODEL]
    assert engine.folder == models_dir / XTTS_MODEL
    model = engine.model()
    assert engine.model() is model and engine.device == "cpu"
    assert model.gpt.gpt.config.n_layer == 2  # the tiny config from the checkpoint folder, not defaults
    assert engine.version.startswith("coqui-tts 0.2")


def test_missing_checkpoint_says_where_to_put_it(tmp_path: Path) -> None:
    engine = XTTSEngine(registry=ModelRegistry(cache_dir=tmp_path), device="cpu")
    with pytest.raises(ModelNotFoundError, match="DUBBING_MODELS_DIR/xtts-v2/"):
        engine.model()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="lacks model.pth, vocab.json"):
        XTTSEngine(tmp_path / "half").model()


def test_conditioning_is_json_and_survives_the_encrypted_store(
    engine: XTTSEngine, latents: dict, tmp_path: Path
) -> None:
    assert latents["gpt_cond_latent"]["shape"] == [1, 32, 64]
    assert latents["speaker_embedding"]["shape"] == [1, 512, 1]
    assert latents["reference_s"] == pytest.approx(2.566, abs=0.01)
    ring = Keyring.generate()
    store = CharacterStore(tmp_path / "s.chars", ring, "alpha-series")
    store.add_character("Aiko", [0.0] * 256).extra["xtts"] = {"latents": latents}
    store.save()
    stored = CharacterStore.load(tmp_path / "s.chars", ring, "alpha-series").characters[0].extra["xtts"]["latents"]
    assert json.loads(json.dumps(stored)) == stored
    a = engine.synthesize(TEXT, _voice(latents, seed=3), tmp_path / "a.wav")
    b = engine.synthesize(TEXT, _voice(stored, seed=3), tmp_path / "b.wav")
    np.testing.assert_allclose(sf.read(a.path)[0], sf.read(b.path)[0], atol=1e-4)


def test_seed_and_rate(engine: XTTSEngine, latents: dict, reference: Path, tmp_path: Path) -> None:
    one = engine.synthesize(TEXT, _voice(latents, seed=1), tmp_path / "1.wav")
    again = engine.synthesize(TEXT, _voice(latents, seed=1), tmp_path / "1b.wav")
    other = engine.synthesize(TEXT, _voice(latents, seed=2), tmp_path / "2.wav")
    assert one.sample_rate == 24000 and one.duration_s > 0.3
    np.testing.assert_array_equal(sf.read(one.path)[0], sf.read(again.path)[0])
    x, y = sf.read(one.path)[0], sf.read(other.path)[0]
    assert x.shape != y.shape or not np.allclose(x, y)
    fast = engine.synthesize(TEXT, _voice(latents, seed=1), tmp_path / "fast.wav", rate=1.25)
    assert fast.duration_s == pytest.approx(one.duration_s / 1.25, rel=0.05)
    by_wav = engine.synthesize(TEXT, Voice("xtts", XTTS_MODEL, settings={"reference_wav": str(reference),
                                                                         "seed": 1}), tmp_path / "ref.wav")
    np.testing.assert_allclose(sf.read(by_wav.path)[0], x, atol=1e-4)  # same clip, same conditioning


def test_out_of_memory_line_is_retried_then_split(
    engine: XTTSEngine, latents: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    model = engine.model()
    real = model.inference
    seen: list[str] = []

    def tight_memory(text, *args, **kwargs):
        seen.append(text)
        if len(text) > 20:  # the whole line never fits; its sentences do
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(text, *args, **kwargs)

    monkeypatch.setattr(model, "inference", tight_memory)
    engine.oom_events.clear()
    result = engine.synthesize(TEXT, _voice(latents), tmp_path / "split.wav")
    assert result.duration_s > 0.3
    assert seen == [TEXT, TEXT, "Two melon buns.", "You can have one."]
    assert [e[1] for e in engine.oom_events] == ["retry after empty_cache", "split into 2 pieces"]
    assert split_for_retry("one two three") == ["one", "two three"]

    def never(text, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(model, "inference", never)
    with pytest.raises(EngineError, match="out of memory"):
        engine.synthesize(TEXT, _voice(latents), tmp_path / "never.wav")


def test_two_pass_episode_with_fallback(engine: XTTSEngine, tmp_path: Path) -> None:
    """Pass 1 on the fixture, pass 2 through the timing fit; the random model can't sound like Aiko."""
    from dubbing_assets.core.tts import PiperEngine

    truth = json.loads((MEDIA / "ja_two_speakers.script.json").read_text(encoding="utf-8"))
    piper = PiperEngine()
    voices = {}
    for k, speaker in enumerate(("Aiko", "Kenji")):
        prepared = cloning.prepare_character(engine, MEDIA / "ja_two_speakers.mkv", truth["lines"], speaker,
                                             tmp_path / "refs", min_total_s=4.0)
        assert prepared.references.enough and prepared.latents is not None
        assert len(prepared.reference_embedding) == 256
        stored = json.loads(json.dumps(prepared.to_store()))
        voices[speaker] = cloning.clone_voice(stored, Voice("piper", piper.default_voice, pitch_semitones=4.0 * k))
    lines = [TranslatedLine(ln["index"], ln["start"], ln["end"], ln["speaker"], ln["text_ja"], ln["text_en"])
             for ln in truth["lines"]]
    verified = cloning.VerifiedCloneEngine(engine, piper, threshold=0.95, seeds=(0, 1))
    fits = fit_lines(lines, voices, verified, tmp_path / "clips", media_end=truth["duration_s"])
    assert [f.index for f in fits] == [0, 1, 2, 3] and all(Path(f.path).is_file() for f in fits)
    report = verified.report()
    assert report["lines"] == 4 and report["fallback"] == 4
    for detail in report["details"]:
        assert detail["engine"] == "piper" and "voice similarity" in detail["fallback_reason"]
        assert [a["seed"] for a in detail["attempts"]] == [0, 1]
    lenient = cloning.VerifiedCloneEngine(engine, piper, threshold=-1.0)
    lenient.synthesize(lines[0].text, voices["Aiko"], tmp_path / "kept.wav")
    kept = lenient.outcome(lines[0].text, voices["Aiko"])
    assert kept.engine == "xtts" and kept.seed == 0 and kept.fallback_reason is None


def test_tiny_models_command_writes_the_registry_layout(tmp_path: Path) -> None:
    """`scripts/dev.py tiny-models DIR` runs this module; what it writes loads through the registry."""
    import subprocess
    import sys

    from dubbing_assets.core.lipsync import load_wav2lip, resolve_wav2lip_checkpoint

    proc = subprocess.run([sys.executable, "-m", "dubbing_assets.core.random_models", str(tmp_path / "tiny")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "DUBBING_MODELS_DIR=" in proc.stdout
    registry = ModelRegistry(cache_dir=tmp_path / "cache", models_dir=tmp_path / "tiny")
    engine = XTTSEngine(registry=registry, device="cpu")
    assert engine.folder == tmp_path / "tiny" / XTTS_MODEL and engine.model().gpt.gpt.config.n_layer == 2
    checkpoint = resolve_wav2lip_checkpoint(registry=registry)
    assert checkpoint == tmp_path / "tiny" / "wav2lip" / "wav2lip_gan.pth"
    assert load_wav2lip(checkpoint) is not None
