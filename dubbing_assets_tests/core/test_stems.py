"""VAD and the low-mode signal separator on stereo, mono and 5.1; Demucs loading errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubbing_assets.core import audio_io, media
from dubbing_assets.core.stems import (
    DemucsSeparator,
    Separator,
    SignalSeparator,
    get_separator,
    speech_gate,
    vad_segments,
)
from dubbing_assets.errors import ModelNotFoundError
from dubbing_assets_tests.core.understand_helpers import EN, ground_truth

RATE = 44100


def _speech(tmp_path: Path) -> np.ndarray:
    """The English narration as mono at 44.1 kHz (its own rate)."""
    wav = media.extract_audio(EN, tmp_path / "speech.wav")
    data, rate = sf.read(str(wav), dtype="float32")
    assert rate == RATE
    return data


def _truth_mask(n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    for line in ground_truth(EN)["lines"]:
        mask[int(line["start"] * RATE):int(line["end"] * RATE)] = True
    return mask


def _db(x: np.ndarray) -> float:
    return 10 * np.log10(float(np.mean(np.square(x, dtype=np.float64))) + 1e-20)


def test_vad_finds_the_three_lines() -> None:
    segments = vad_segments(EN, min_silence_s=0.3)
    truth = ground_truth(EN)["lines"]
    assert segments[0][0] == pytest.approx(truth[0]["start"], abs=0.1)
    assert segments[-1][1] == pytest.approx(truth[-1]["end"], abs=0.2)
    for line in truth:  # every line is covered by speech
        covered = sum(max(0.0, min(b, line["end"]) - max(a, line["start"])) for a, b in segments)
        assert covered > 0.8 * (line["end"] - line["start"])
    assert vad_segments(np.zeros(16000, dtype=np.float32)) == []


def test_speech_gate_ramps() -> None:
    gate = speech_gate([(1.0, 2.0)], 3 * 1000, 1000, pad_s=0.0, ramp_s=0.05)
    assert gate[:900].max() == 0.0 and gate[1100:1900].min() == pytest.approx(1.0)
    assert 0.0 < gate[1000] < 1.0  # smooth edge, no click


def test_stereo_mid_side(tmp_path: Path) -> None:
    speech = _speech(tmp_path)
    n = len(speech)
    t = np.arange(n) / RATE
    side_music = 0.05 * np.sin(2 * np.pi * 220 * t).astype(np.float32)  # wide stereo: L-R only
    stereo = np.stack([speech + side_music, speech - side_music], axis=1)
    src = tmp_path / "mix.wav"
    sf.write(src, stereo, RATE, subtype="PCM_24")
    sep = SignalSeparator()
    assert isinstance(sep, Separator)
    dialogue_wav, background_wav = sep.separate(src, tmp_path / "stems")
    dialogue, rate_d = sf.read(str(dialogue_wav), dtype="float32", always_2d=True)
    background, rate_b = sf.read(str(background_wav), dtype="float32", always_2d=True)
    assert (rate_d, rate_b) == (RATE, RATE) and dialogue.shape == background.shape == (n, 2)
    assert sep.last_info["mode"] == "mid-side"
    mask = _truth_mask(n)
    # Background: the side music survives (it is what is left once speech is removed).
    side_bg = 0.5 * (background[:, 0] - background[:, 1])
    assert np.corrcoef(side_bg, side_music)[0, 1] > 0.99
    mid_bg = 0.5 * (background[:, 0] + background[:, 1])
    assert _db(mid_bg[mask]) < _db(speech[mask]) - 25  # speech ducked out of the background
    # Dialogue: the speech, identical in L and R, silent away from speech.
    assert np.allclose(dialogue[:, 0], dialogue[:, 1], atol=1e-6)
    assert _db(dialogue[mask, 0]) == pytest.approx(_db(speech[mask]), abs=0.5)
    assert _db(dialogue[: int(0.3 * RATE), 0]) < -80


def test_mono_vad_gate(tmp_path: Path) -> None:
    speech = _speech(tmp_path)
    src = tmp_path / "mono.wav"
    sf.write(src, speech, RATE, subtype="PCM_24")
    sep = SignalSeparator(speech_duck_db=-30)
    dialogue_wav, background_wav = sep.separate(src, tmp_path / "stems")
    dialogue, _ = sf.read(str(dialogue_wav), dtype="float32", always_2d=True)
    background, _ = sf.read(str(background_wav), dtype="float32", always_2d=True)
    assert dialogue.shape == (len(speech), 1) and sep.last_info["mode"] == "vad-gate"
    mask = _truth_mask(len(speech))
    assert _db(background[mask, 0]) < _db(speech[mask]) - 25
    assert _db(dialogue[mask, 0]) == pytest.approx(_db(speech[mask]), abs=0.5)


def test_surround_uses_the_centre_channel(tmp_path: Path) -> None:
    speech = _speech(tmp_path)
    n = len(speech)
    rng = np.random.default_rng(0)
    data = (0.01 * rng.standard_normal((n, 6))).astype(np.float32)
    data[:, 2] += speech  # FC
    src = tmp_path / "surround.wav"
    sf.write(src, data, RATE, subtype="FLOAT")
    sep = SignalSeparator()
    dialogue_wav, background_wav = sep.separate(src, tmp_path / "stems")
    dialogue, rate = sf.read(str(dialogue_wav), dtype="float32", always_2d=True)
    background, _ = sf.read(str(background_wav), dtype="float32", always_2d=True)
    assert rate == RATE and dialogue.shape == background.shape == (n, 6)
    assert sep.last_info["mode"] == "centre"
    for stem in (dialogue_wav, background_wav):  # the 5.1 layout is written into the header
        assert media.probe(stem)["streams"][0]["channel_layout"] == "5.1"
    assert np.abs(np.delete(dialogue, 2, axis=1)).max() == 0.0  # dialogue only in FC
    assert np.allclose(np.delete(background, 2, axis=1), np.delete(data, 2, axis=1), atol=1e-5)
    mask = _truth_mask(n)
    assert _db(background[mask, 2]) < _db(speech[mask]) - 25


def test_a_five_channel_file_without_a_mask_is_read_as_five_point_zero(tmp_path: Path) -> None:
    """The stems took the layout of a mask-less WAV from their own table of 1/2/6/8 channels, so a
    5.0 source lost its layout here while the mixer (audio_io) knew it; one table now."""
    speech = _speech(tmp_path)
    data = (0.01 * np.random.default_rng(1).standard_normal((len(speech), 5))).astype(np.float32)
    data[:, 2] += speech  # FC
    src = tmp_path / "five.wav"
    sf.write(src, data, RATE, subtype="FLOAT")
    sep = SignalSeparator()
    dialogue_wav, _ = sep.separate(src, tmp_path / "stems")
    assert sep.last_info["layout"] == "5.0"
    assert media.probe(dialogue_wav)["streams"][0]["channel_layout"] == "5.0"


@pytest.mark.required  # the low environment (.venv) has no demucs: there it always runs
@pytest.mark.skipif(importlib.util.find_spec("demucs") is not None,
                    reason="demucs is installed here; the tiny-model test below covers it")
def test_demucs_without_the_package_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="pip install demucs"):
        DemucsSeparator().separate(tmp_path / "x.wav", tmp_path)


@pytest.mark.highmode  # demucs comes with the xtts extra: .venv-high
@pytest.mark.required
def test_demucs_offline_without_weights_is_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("demucs")
    with pytest.raises(ModelNotFoundError, match="DUBBING_MODELS_DIR"):
        DemucsSeparator("htdemucs", allow_download=False).separate(tmp_path / "x.wav", tmp_path)


@pytest.mark.highmode  # demucs comes with the xtts extra: .venv-high
@pytest.mark.required
def test_demucs_runs_a_tiny_random_model(tmp_path: Path) -> None:
    pytest.importorskip("demucs")
    import torch
    from demucs.demucs import Demucs

    torch.manual_seed(0)
    model = Demucs(sources=["drums", "bass", "other", "vocals"], audio_channels=2, channels=4, depth=2)
    src = tmp_path / "in.wav"
    sf.write(src, 0.1 * np.random.default_rng(0).standard_normal((RATE, 2)), RATE)
    dialogue_wav, background_wav = DemucsSeparator(model, device="cpu").separate(src, tmp_path / "out")
    assert sf.info(str(dialogue_wav)).frames == RATE and sf.info(str(background_wav)).channels == 2


def test_get_separator() -> None:
    assert isinstance(get_separator("signal"), SignalSeparator)
    with pytest.raises(ModelNotFoundError, match="Unknown separator"):
        get_separator("magic")


def test_both_silero_backends_agree() -> None:
    audio = audio_io.load_audio_mono16k(EN)
    onnx = vad_segments(audio, backend="onnx", min_silence_s=0.3)
    torch_ = vad_segments(audio, backend="torch", min_silence_s=0.3)
    assert len(onnx) == len(torch_)
    for (a0, b0), (a1, b1) in zip(onnx, torch_, strict=True):
        assert abs(a0 - a1) < 0.1 and abs(b0 - b1) < 0.1


@pytest.mark.parametrize("clip", ["en_monologue.mp4", "ja_two_speakers.mkv"])
def test_vad_starts_sharpened_to_the_audible_onset(clip: str) -> None:
    """With pad_s=0 (placing lines), starts sit on the ground truth's onsets, not Silero's late windows."""
    import json

    from dubbing_assets.core.audio_io import load_audio_mono16k
    from dubbing_assets_tests.conftest import MEDIA

    truth = json.loads((MEDIA / (clip.split(".")[0] + ".script.json")).read_text())["lines"]
    starts = [s for s, _ in vad_segments(load_audio_mono16k(MEDIA / clip), pad_s=0.0)]
    errors = [min(abs(s - ln["start"]) for s in starts) * 1000 for ln in truth]
    assert max(errors) <= 15.0, errors
