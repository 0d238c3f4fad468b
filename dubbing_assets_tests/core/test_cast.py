"""Casting: speakers matched to known characters by embedding or by name, one to one."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dubbing_assets.core.cast import choose_voice, cosine, match_speakers, next_character_ids
from dubbing_assets.core.model import Voice
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
