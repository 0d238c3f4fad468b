"""Mixing: layout and rate kept, dub placement, ducking, -23 LUFS, true peak <= -1 dBTP (ffmpeg checks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubbing_assets.core.loudness import ebur128, integrated_lufs, measure_loudness, true_peak_dbtp
from dubbing_assets.core.mix import duck_envelope, mix
from dubbing_assets.errors import MediaError
from dubbing_assets_tests.conftest import MEDIA

RNG = np.random.default_rng(7)


def speechlike(seconds: float, sr: int = 22050, spikes: bool = False) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    syllables = (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2
    x = 0.2 * RNG.standard_normal(t.size) * syllables + 0.3 * np.sin(2 * np.pi * 140 * t) * syllables
    if spikes:
        x[:: sr // 10] = 1.0  # transients far above the speech: the limiter must catch them
    return x.astype(np.float32)


def background(path: Path, channels: int, sr: int, seconds: float = 10.0) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    bg = np.stack([0.05 * np.sin(2 * np.pi * (220 + 37 * c) * t) for c in range(channels)], axis=1)
    if channels == 6:
        bg[:, 3] = 0.1 * np.sin(2 * np.pi * 45 * t)  # LFE
    sf.write(path, bg.astype(np.float32), sr)
    return path


@pytest.fixture
def clips(tmp_path: Path) -> list[tuple[float, Path]]:
    out = []
    for n, (start, seconds) in enumerate([(1.0, 2.0), (4.0, 1.5), (6.5, 2.5)]):
        path = tmp_path / f"clip{n}.wav"
        sf.write(path, speechlike(seconds), 22050)
        out.append((start, path))
    return out


@pytest.mark.parametrize(
    ("channels", "sr", "layout"), [(2, 48000, "stereo"), (6, 48000, "5.1"), (1, 44100, "mono")]
)
def test_mix_keeps_layout_rate_and_meets_loudness(
    tmp_path: Path, clips: list[tuple[float, Path]], channels: int, sr: int, layout: str
) -> None:
    bg = background(tmp_path / "bg.wav", channels, sr)
    result = mix(bg, clips, tmp_path / "mix.wav", speech_wav=tmp_path / "speech.wav")
    assert (result.sample_rate, result.channels, result.layout) == (sr, channels, layout)
    audio, out_sr = sf.read(tmp_path / "mix.wav", always_2d=True)
    assert out_sr == sr and audio.shape == (10 * sr, channels)
    assert result.integrated_lufs == pytest.approx(-23.0, abs=0.2)
    assert result.true_peak_db <= -1.0 and result.clipped_samples == 0
    # independent measurement: ffmpeg's ebur128 filter
    ref = ebur128(tmp_path / "mix.wav")
    print(
        f"{layout}: ours {result.integrated_lufs} LUFS / {result.true_peak_db} dBTP; "
        f"ffmpeg ebur128 {ref['integrated_lufs']} LUFS / {ref['true_peak_db']} dBTP"
    )
    assert ref["integrated_lufs"] == pytest.approx(-23.0, abs=1.0)
    assert ref["integrated_lufs"] == pytest.approx(result.integrated_lufs, abs=0.3)
    assert ref["true_peak_db"] <= -1.0
    # where the dub went
    speech, _ = sf.read(tmp_path / "speech.wav", always_2d=True)
    energy = (speech**2).sum(axis=0)
    if layout == "5.1":
        assert energy[2] > 0 and np.count_nonzero(energy) == 1  # FC only
    elif layout == "stereo":
        assert np.allclose(speech[:, 0], speech[:, 1])  # both channels, centre-panned
    assert measure_loudness(tmp_path / "mix.wav")["integrated_lufs"] == pytest.approx(
        result.integrated_lufs, abs=0.05
    )


def test_limiter_keeps_true_peak_under_the_ceiling(tmp_path: Path) -> None:
    sf.write(tmp_path / "spiky.wav", speechlike(3.0, spikes=True), 22050)
    bg = background(tmp_path / "bg.wav", 2, 48000, 6.0)
    result = mix(bg, [(1.0, tmp_path / "spiky.wav")], tmp_path / "mix.wav", target_lufs=-14.0)
    assert result.limiter_gain_reduction_db < -1.0  # the limiter had work to do
    assert result.integrated_lufs == pytest.approx(-14.0, abs=0.5)
    assert result.true_peak_db <= -1.0
    ref = ebur128(tmp_path / "mix.wav")
    assert ref["true_peak_db"] <= -1.0 and ref["integrated_lufs"] == pytest.approx(-14.0, abs=1.0)


def test_ducking_envelope_is_smooth_and_deep_enough() -> None:
    sr = 1000 * 8
    env = duck_envelope(5 * sr, sr, [(2.0, 3.0)], duck_db=-10.0, ramp_s=0.1)
    db = 20 * np.log10(env)
    assert db[int(1.0 * sr)] == pytest.approx(0.0, abs=0.01)
    assert db[int(2.0 * sr)] == pytest.approx(-10.0, abs=0.3)  # fully ducked when speech starts
    assert db[int(2.5 * sr)] == pytest.approx(-10.0, abs=0.01)
    assert db[int(3.15 * sr)] == pytest.approx(0.0, abs=0.01)
    ramp = db[int(1.88 * sr) : int(2.0 * sr)]
    assert np.all(np.diff(ramp) <= 1e-6)  # monotonic
    assert np.max(np.abs(np.diff(db))) < 10.0 / (0.1 * sr) * 1.5  # no jumps


def test_background_is_ducked_under_speech(tmp_path: Path, clips: list[tuple[float, Path]]) -> None:
    bg = background(tmp_path / "bg.wav", 2, 48000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(22050, dtype=np.float32), 22050)
    result = mix(bg, [(2.0, silent)], tmp_path / "mix.wav", duck_db=-10.0)
    audio, sr = sf.read(result.path, always_2d=True)

    def rms_db(a: float, b: float) -> float:
        part = audio[int(a * sr) : int(b * sr)]
        return 10 * np.log10(np.mean(part**2))

    assert rms_db(2.2, 2.8) - rms_db(5.0, 6.0) == pytest.approx(-10.0, abs=0.3)


def test_lines_past_the_end_are_not_cut(tmp_path: Path) -> None:
    bg = background(tmp_path / "bg.wav", 2, 48000, 3.0)
    sf.write(tmp_path / "late.wav", speechlike(2.0), 22050)
    result = mix(bg, [(2.0, tmp_path / "late.wav")], tmp_path / "mix.wav")
    assert result.duration_s == pytest.approx(4.0, abs=0.01)


def test_real_fixture_audio_as_background(tmp_path: Path, clips: list[tuple[float, Path]]) -> None:
    from dubbing_assets.core.media import extract_audio

    wav = extract_audio(MEDIA / "ja_two_speakers.mkv", tmp_path / "orig.wav")
    result = mix(wav, clips, tmp_path / "mix.wav")
    assert (result.sample_rate, result.channels) == (48000, 2)
    ref = ebur128(tmp_path / "mix.wav")
    assert ref["integrated_lufs"] == pytest.approx(-23.0, abs=1.0) and ref["true_peak_db"] <= -1.0


def test_loudness_helpers_and_errors(tmp_path: Path) -> None:
    sr = 48000
    tone = 0.1 * np.sin(2 * np.pi * 1000 * np.arange(3 * sr) / sr)
    # BS.1770: a 0 dBFS-peak 1 kHz sine in one channel reads -3.01 LUFS; -20 dB peak in two channels: -20
    lufs = integrated_lufs(np.stack([tone, tone], axis=1), sr)
    assert lufs == pytest.approx(-20.0, abs=0.1)
    assert integrated_lufs(tone, sr) == pytest.approx(-23.01, abs=0.1)
    assert true_peak_dbtp(tone) == pytest.approx(-20.0, abs=0.05)
    sf.write(tmp_path / "silent.wav", np.zeros((sr, 2), dtype=np.float32), sr)
    with pytest.raises(MediaError, match="silent"):
        mix(tmp_path / "silent.wav", [], tmp_path / "out.wav")
    with pytest.raises(MediaError):
        mix(background(tmp_path / "bg3.wav", 3, sr, 1.0), [], tmp_path / "o.wav", channels=2)


@pytest.mark.parametrize(
    ("layout", "sr"), [("stereo", 48000), ("5.1", 48000), ("mono", 44100), ("stereo", 22050)]
)
def test_streaming_meter_matches_pyloudnorm(layout: str, sr: int) -> None:
    from dubbing_assets.core.audio_io import LAYOUTS
    from dubbing_assets.core.loudness import LoudnessMeter

    names = LAYOUTS[layout]
    t = np.arange(int(7.3 * sr)) / sr
    swell = [(0.5 + 0.5 * np.sin(2 * np.pi * 0.3 * (c + 1) * t)) ** 4 for c in range(len(names))]
    audio = np.stack([0.1 * (c + 1) * RNG.standard_normal(t.size) * s for c, s in enumerate(swell)], axis=1)
    audio = audio.astype(np.float32)
    meter = LoudnessMeter(sr, names)
    pos = 0
    for size in [1, 999, 4410, 12345, 100000] * 100:
        if pos >= t.size:
            break
        meter.add(audio[pos : pos + size])
        pos += size
    assert meter.integrated() == pytest.approx(integrated_lufs(audio, sr, layout), abs=0.01)


def test_block_processing_equals_whole_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dubbing_assets.core import mix as mix_module

    sf.write(tmp_path / "spiky.wav", speechlike(3.0, spikes=True), 22050)
    sf.write(tmp_path / "calm.wav", speechlike(2.0), 22050)
    bg = background(tmp_path / "bg.wav", 6, 48000, 6.0)
    clips = [(0.5, tmp_path / "spiky.wav"), (3.9, tmp_path / "calm.wav")]
    whole = mix(bg, clips, tmp_path / "whole.wav", target_lufs=-14.0)
    monkeypatch.setattr(mix_module, "BLOCK_S", 0.37)
    blocks = mix(bg, clips, tmp_path / "blocks.wav", target_lufs=-14.0)
    assert whole.limiter_gain_reduction_db < -1.0
    a, _ = sf.read(tmp_path / "whole.wav")
    b, _ = sf.read(tmp_path / "blocks.wav")
    assert a.shape == b.shape and np.max(np.abs(a - b)) < 1e-6
    assert (blocks.integrated_lufs, blocks.true_peak_db) == (whole.integrated_lufs, whole.true_peak_db)
    assert measure_loudness(tmp_path / "blocks.wav")["true_peak_db"] <= -1.0
