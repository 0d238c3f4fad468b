"""WER/CER/chrF: normalisation rules and known values."""

from __future__ import annotations

import pytest

from dubbing_assets.core.metrics import cer, chrf, number_to_words, wer


def test_wer_ignores_case_and_punctuation() -> None:
    assert wer("The train was late, again!", "the train was late again") == 0.0


def test_wer_counts_substitutions_insertions_deletions() -> None:
    ref = "The morning train was late again, so I walked to the office."
    assert wer(ref, "The morning train was laid again, so I walked to the office.") == pytest.approx(1 / 12)
    assert wer("a b c", "a b c d") == pytest.approx(1 / 3)
    assert wer("a b c", "a c") == pytest.approx(1 / 3)
    assert wer("", "") == 0.0 and wer("", "x") == 1.0


def test_wer_normalises_numbers_both_ways() -> None:
    assert wer("I bought two melon buns", "I bought 2 melon buns") == 0.0
    assert wer("twenty-one pilots", "21 pilots") == 0.0
    assert number_to_words(105) == "one hundred five"
    assert number_to_words(2000) == "two thousand"


def test_cer_for_japanese_drops_punctuation_and_spaces() -> None:
    assert cer("おはよう。今日はずいぶん早いね。", "おはよう、今日は ずいぶん早いね") == 0.0
    assert cer("メロンパンを二つ。", "メロンパンを2つ") == pytest.approx(1 / 8)
    assert cer("何を買ったの？", "何を買ったの?") == 0.0


def test_chrf_matches_the_sacrebleu_reference_value() -> None:
    ref = "The ties between Obama and Netanyahu are not particularly friendly."
    hyp = "The relationship between Obama and Netanyahu is not exactly friendly."
    assert chrf(ref, hyp) == pytest.approx(61.576, abs=0.01)  # sacreBLEU chrF2 for this pair
    assert chrf("same text", "same text") == 100.0
    assert chrf("abc", "xyz") == 0.0
    assert chrf("", "") == 100.0 and chrf("abc", "") == 0.0
