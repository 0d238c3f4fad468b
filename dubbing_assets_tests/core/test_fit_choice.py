"""Issue 17: a duration model per voice, whisper's other readings, and the choice of the one that fits.

The duration model is fitted on the packaged Piper voice and checked on sentences it never saw, against
what the voice then really takes; the choice is checked on scored readings, and whisper's readings on
the Japanese fixture (the first must be exactly what the single-best path says).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dubbing_assets.core import duration
from dubbing_assets.core.contracts import TranslatedLine, Voice
from dubbing_assets.core.fit_choice import MAX_LOGPROB_DROP, choose_line, misfit, score_candidates
from dubbing_assets.core.tts import PiperEngine

HELD_OUT = ["Good morning. Today is a very fast day.", "I'm looking forward to seeing you in front of the station.",
            "Eina, what did you buy?", "I'm going to raise it one by one.", "Okay.",
            "Hey, listen. We need to talk about tomorrow, and about the money."]


class _Counting:
    """The real Piper engine, counting its syntheses (to see the cache spare them)."""

    def __init__(self, engine: PiperEngine) -> None:
        self.engine, self.name, self.calls = engine, engine.name, 0

    @property
    def version(self) -> str:
        return self.engine.version

    def phonemes(self, text: str, voice: Voice) -> list[str]:
        return self.engine.phonemes(text, voice)

    def synthesize(self, text, voice, out_wav, *, rate: float = 1.0):  # noqa: ANN001
        self.calls += 1
        return self.engine.synthesize(text, voice, out_wav, rate=rate)


def test_a_voice_duration_model_predicts_unseen_lines_and_is_fitted_once(tmp_path: Path) -> None:
    piper = PiperEngine()
    voice = Voice("piper", piper.voices()[0])
    counting = _Counting(piper)
    caches = [tmp_path / "a", tmp_path / "b"]
    model = duration.duration_model(counting, voice, caches)
    assert counting.calls == len(duration.CALIBRATION)
    assert all((c / "duration" / f"{model.key}.json").is_file() for c in caches)
    errors = []
    for i, text in enumerate(HELD_OUT):
        started = time.perf_counter()
        predicted = model.predict(text)
        took = time.perf_counter() - started
        real = piper.synthesize(text, voice, tmp_path / f"{i}.wav").duration_s
        errors.append(abs(predicted - real) / real)
        assert took < 0.05  # dozens of candidates per line stay cheap
    print(f"\nheld-out error {sum(errors) / len(errors):.1%}, leave-one-out {model.loo_error_rel:.1%}")
    assert sum(errors) / len(errors) <= 0.10 and model.loo_error_rel <= 0.15
    assert model.predict("Yes.") < model.predict(HELD_OUT[-1])

    (caches[0] / "duration" / f"{model.key}.json").write_text("{broken", encoding="utf-8")
    again = duration.duration_model(counting, voice, caches)  # the second cache still holds it
    assert counting.calls == len(duration.CALIBRATION) and again.coefficients == model.coefficients
    slower = duration.duration_model(counting, Voice("piper", voice.voice, length_scale=1.3), caches)
    assert slower.key != model.key and slower.predict(HELD_OUT[0]) > model.predict(HELD_OUT[0])


def test_misfit_is_free_up_to_what_the_timing_fit_hides_and_dearer_over_than_under() -> None:
    assert misfit(2.0, 2.0) == 0 and misfit(2.15, 2.0) == 0
    assert misfit(2.0 * 1.3, 2.0) > misfit(2.0 / 1.3, 2.0) > 0  # the same ratio costs more over than under
    assert misfit(3.0, 2.0) > misfit(2.6, 2.0)


def _line(*readings: tuple[str, float]) -> TranslatedLine:
    return TranslatedLine(index=0, start=0.0, end=2.0, speaker="spk0", source_text="x", text=readings[0][0],
                          alternatives=[{"text": t, "logprob": lp} for t, lp in readings])


def test_the_reading_that_fits_wins_unless_it_is_much_less_likely() -> None:
    seconds = {"a long reading that runs far over its slot": 3.2, "a short one": 1.9, "short but unlikely": 1.9}

    chosen = choose_line(_line(("a long reading that runs far over its slot", -0.6), ("a short one", -0.7)),
                         2.0, seconds.__getitem__)
    assert chosen.text == "a short one" and chosen.chosen_by == "fit to slot" and chosen.slot_s == 2.0
    assert [a["text"] for a in chosen.alternatives][0] == "a short one"
    assert all({"seconds", "fit", "score"} <= set(a) for a in chosen.alternatives)

    kept = choose_line(_line(("a long reading that runs far over its slot", -0.6),
                             ("short but unlikely", -0.6 - MAX_LOGPROB_DROP - 0.01)), 2.0, seconds.__getitem__)
    assert kept.text == "a long reading that runs far over its slot" and kept.chosen_by == "best likelihood"
    assert score_candidates([], 2.0) == []


@pytest.mark.slow
def test_whisper_readings_start_with_the_single_best() -> None:
    from dubbing_assets.core.audio_io import load_audio_mono16k
    from dubbing_assets_tests.core.understand_helpers import JA, ground_truth, shared_transcriber

    transcriber = shared_transcriber()
    audio = load_audio_mono16k(JA)
    line = ground_truth(JA)["lines"][0]
    clip = audio[int((line["start"] - 0.15) * 16000):int((line["end"] + 0.15) * 16000)]
    readings = transcriber.hypotheses(clip, language="ja", beams=5)
    assert readings[0][0] == transcriber.text(clip, language="ja", task="translate")
    assert len(readings) >= 3 and len({t.lower() for t, _ in readings}) == len(readings)
    assert readings == transcriber.hypotheses(clip, language="ja", beams=5)  # a rerun says the same
    assert all(lp < 0 for _, lp in readings)
