"""Casting: speakers matched to known characters by embedding or by name, one to one."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dubbing_assets.core.cast import choose_voice, cosine, match_speakers, next_character_ids
from dubbing_assets.core.contracts import Voice
from dubbing_assets.core.tts import assign_voice


def unit(seed: int, dim: int = 256) -> np.ndarray:
    r = random.Random(seed)
    v = np.array([r.gauss(0, 1) for _ in range(dim)])
    return v / np.linalg.norm(v)


def near(v: np.ndarray, seed: int, noise: float = 0.3) -> list[float]:
    w = v + noise * unit(seed) / np.sqrt(1)
    return list(w / np.linalg.norm(w))


AIKO, KENJI = unit(101), unit(102)  # like the fixture character store
CHARACTERS = [("c0001", "Aiko", list(AIKO)), ("c0002", "Kenji", list(KENJI))]


def test_match_by_embedding() -> None:
    speakers = [("spk0", near(KENJI, 1), None), ("spk1", near(AIKO, 2), None)]
    matches = match_speakers(speakers, CHARACTERS)
    assert [(m.label, m.character_id, m.is_new, m.by) for m in matches] == [
        ("spk0", "c0002", False, "embedding"),
        ("spk1", "c0001", False, "embedding"),
    ]
    assert all(m.similarity > 0.9 for m in matches)


def test_new_speaker_below_threshold() -> None:
    matches = match_speakers([("spk0", list(unit(999)), None)], CHARACTERS, threshold=0.75)
    assert matches[0].character_id is None and matches[0].is_new and matches[0].similarity < 0.3


def test_name_hint_wins_even_without_a_good_embedding() -> None:
    matches = match_speakers([("Aiko", list(unit(5)), " aiko "), ("Kenji", None, "KENJI")], CHARACTERS)
    assert [(m.character_id, m.by, m.is_new) for m in matches] == [
        ("c0001", "name", False),
        ("c0002", "name", False),
    ]


def test_one_to_one_assignment() -> None:
    # both speakers resemble Aiko; the closer one gets her, the other is not forced onto Kenji
    speakers = [("spk0", near(AIKO, 3, 0.5), None), ("spk1", near(AIKO, 4, 0.1), None)]
    matches = match_speakers(speakers, CHARACTERS)
    assert matches[1].character_id == "c0001"
    assert matches[0].character_id is None and matches[0].is_new
    # Hungarian beats greedy: greedy would give spk0 -> A (0.9) and leave spk1 with B (0.1)
    a, b = np.eye(3)[0], np.eye(3)[1]
    chars = [("A", None, list(a)), ("B", None, list(b))]
    s0 = list(0.9 * a + 0.436 * b)
    s1 = list(0.85 * a + 0.0 * b + 0.527 * np.eye(3)[2])
    s0 = list(np.array(s0) / np.linalg.norm(s0))
    got = match_speakers([("s0", s0, None), ("s1", s1, None)], chars, threshold=0.3)
    assert [m.character_id for m in got] == ["B", "A"]


def test_name_hint_taken_character_is_not_reused() -> None:
    speakers = [("Aiko", None, "Aiko"), ("spk1", near(AIKO, 8, 0.05), None)]
    matches = match_speakers(speakers, CHARACTERS)
    assert matches[0].character_id == "c0001" and matches[1].character_id is None


def test_empty_inputs_and_cosine_edges() -> None:
    assert match_speakers([], CHARACTERS) == []
    assert [m.is_new for m in match_speakers([("spk0", [1.0, 0.0], None)], [])] == [True]
    assert (
        cosine(None, [1.0]) == 0.0
        and cosine([0.0, 0.0], [1.0, 0.0]) == 0.0
        and cosine([1.0], [1.0, 2.0]) == 0.0
    )
    assert cosine([1.0, 0.0], [2.0, 0.0]) == pytest.approx(1.0)


def test_ids_and_voice_choice() -> None:
    assert next_character_ids(["c0001", "c0007", "x"], 2) == ["c0008", "c0009"]
    assert next_character_ids([], 1) == ["c0001"]
    pinned = {"c0001": Voice("piper", "other", pitch_semitones=3.0)}
    assert choose_voice("c0001", 0, pinned, ["en_US-joe-medium"]) == pinned["c0001"]
    assert choose_voice("c0002", 1, pinned, ["en_US-joe-medium"]) == assign_voice(
        1, None, ["en_US-joe-medium"]
    )


# --------------------------------------------------------------------------------------------
# casting by voice (the voice bank)


def _bank():
    from dubbing_assets.core.voicebank import BankVoice

    return [BankVoice("kokoro", f"jf_{i}", None, "female", 250.0, tuple(unit(100 + i))) for i in range(3)] + [
        BankVoice("kokoro", "jm_kumo", None, "male", 110.0, tuple(unit(200))),
        BankVoice("piper", "en_US-joe-medium", None, "male", 120.0, tuple(unit(201)))]


def test_bank_voice_is_the_nearest_unused_of_the_gender() -> None:
    from dubbing_assets.core.cast import pick_bank_voice

    bank = _bank()
    voice, note = pick_bank_voice(near(unit(101), 1), "female", bank, {})
    assert (voice.engine, voice.voice, voice.pitch_semitones) == ("kokoro", "jf_1", 0.0) and not note["shifted"]
    # jf_1 is held by another character of the episode: the next nearest unused female voice
    voice, note = pick_bank_voice(near(unit(101), 1), "female", bank, {"kokoro/jf_1": 1})
    assert voice.voice in ("jf_0", "jf_2") and voice.pitch_semitones == 0.0
    voice, _ = pick_bank_voice(near(unit(201), 2), "male", bank, {})
    assert voice.voice == "en_US-joe-medium"


def test_a_second_woman_gets_the_voice_farthest_from_the_first_womans() -> None:
    """Two characters of one episode must sound apart: among unused voices of her gender, a new character
    gets the one nearest to her but least like the voices already cast (the offline bank's second woman went
    to jf_nezumi, 0.716 from the first woman's jf_alpha, where jf_gongitsune is 0.678)."""
    from dubbing_assets.core.cast import pick_bank_voice
    from dubbing_assets.core.voicebank import BankVoice

    first = unit(300)
    twin = np.asarray(near(first, 301, noise=0.4))  # very like the first woman's voice
    apart = unit(302)
    speaker = list((0.55 * twin + 0.45 * apart) / np.linalg.norm(0.55 * twin + 0.45 * apart))
    bank = [BankVoice("kokoro", "jf_first", None, "female", 250.0, tuple(first)),
            BankVoice("kokoro", "jf_twin", None, "female", 250.0, tuple(twin)),
            BankVoice("kokoro", "jf_apart", None, "female", 250.0, tuple(apart)),
            BankVoice("kokoro", "jm_kumo", None, "male", 110.0, tuple(unit(303)))]
    assert pick_bank_voice(speaker, "female", bank, {})[0].voice == "jf_twin"  # alone: simply the nearest
    voice, note = pick_bank_voice(speaker, "female", bank, {"kokoro/jf_first": 1})
    assert voice.voice == "jf_apart" and "apart from this episode's other voices" in note["why"]


def test_pitch_shift_only_when_the_bank_runs_out() -> None:
    from dubbing_assets.core.cast import pick_bank_voice

    bank = _bank()
    held = {"kokoro/jm_kumo": 1, "piper/en_US-joe-medium": 1}
    voice, note = pick_bank_voice(near(unit(200), 3), "male", bank, held)
    assert voice.pitch_semitones != 0 and note["shifted"] and "exhausted" in note["why"]


def test_cast_episode_gives_distinct_real_voices_and_keeps_them(tmp_path, ring) -> None:
    """Three new speakers (two women, one man): three different bank voices, none shifted; kept next episode."""
    from dubbing_assets.core.cast import cast_episode
    from dubbing_assets.core.characters import transaction
    from dubbing_assets.core.contracts import Speaker

    bank = _bank()
    speakers = [Speaker(label="spk0", embedding=near(unit(100), 4), seconds=5.0, lines=[0], f0_hz=260.0),
                Speaker(label="spk1", embedding=near(unit(200), 5), seconds=5.0, lines=[1], f0_hz=100.0),
                Speaker(label="spk2", embedding=near(unit(100), 6), seconds=5.0, lines=[2], f0_hz=240.0)]
    with transaction(tmp_path / "s.chars", ring, "s") as store:
        voices, assigned = cast_episode(store, speakers, "s-e01", {}, ["en_US-joe-medium"], bank=bank)
    keys = {(v["engine"], v["voice"]) for v in voices.values()}
    assert len(keys) == 3 and all(v["pitch_semitones"] == 0 for v in voices.values())
    assert voices["spk0"]["voice"].startswith("jf_") and voices["spk2"]["voice"].startswith("jf_")
    assert voices["spk1"]["engine"] in ("kokoro", "piper") and assigned["spk1"]["casting"]["gender"] == "male"
    with transaction(tmp_path / "s.chars", ring, "s") as store:
        again, _ = cast_episode(store, speakers, "s-e02", {}, ["en_US-joe-medium"], bank=bank)
    assert again == voices


def test_the_store_learns_each_characters_dvector_across_episodes() -> None:
    """What guides later episodes' diarization: a seconds-weighted, normalised mean of the character's
    d-vectors, kept in the store (extra), listed by known_voices."""
    from dubbing_assets.core.cast import known_voices, remember_dvector
    from dubbing_assets.core.characters import Character

    ch = Character(id="c1", name="Yui", embedding=[1.0, 0.0])
    remember_dvector(ch, None, 3.0)
    assert "dvector" not in ch.extra and known_voices(type("S", (), {"characters": [ch]})()) == []
    remember_dvector(ch, [1.0, 0.0], 3.0)
    remember_dvector(ch, [0.0, 1.0], 1.0)
    x, y = ch.extra["dvector"]
    assert x > y > 0 and abs(x * x + y * y - 1.0) < 1e-4 and ch.extra["dvector_s"] == 4.0
    assert known_voices(type("S", (), {"characters": [ch]})()) == [("c1", ch.extra["dvector"])]
