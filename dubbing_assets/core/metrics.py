"""Text metrics for QA and tests: WER, CER, chrF. Pure Python, no dependencies.

WER/CER are edit distances over normalised text (lower case, no
punctuation; numbers spelled the same way on both sides) so the score counts
recognition errors, not formatting. CER drops spaces too, which makes it the
right measure for Japanese and Chinese where words are not space separated.
chrF follows sacreBLEU's definition (character 6-grams, beta 2, whitespace
ignored), reported on the 0-100 scale used in MT papers.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_to_words(n: int) -> str:
    """English words for 0..999_999 ('21' -> 'twenty one'); larger numbers stay digits."""
    if n < 0 or n >= 1_000_000:
        return str(n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_to_words(rest))
    rest = n % 1000
    return number_to_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_to_words(rest))


def _strip_punct(text: str) -> str:
    # Apostrophes inside words vanish ("you're" -> "youre"); other punctuation becomes a space.
    text = re.sub(r"(?<=\w)['’](?=\w)", "", text)
    return "".join(" " if unicodedata.category(ch).startswith(("P", "S")) else ch for ch in text)


def normalize_words(text: str) -> list[str]:
    """Lower case, NFKC, punctuation removed, digits spelled out: the tokens WER compares."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,000 -> 1000
    text = _strip_punct(text)
    words: list[str] = []
    for token in text.split():
        if token.isdigit():
            words.extend(number_to_words(int(token)).split())
        else:
            words.extend(token.split("-"))
    return [w for w in words if w]


def _edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(word edits, reference words) after normalisation: sum these over lines for a corpus WER."""
    r, h = normalize_words(ref), normalize_words(hyp)
    return _edit_distance(r, h), len(r)


def wer(ref: str, hyp: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words."""
    edits, n = word_errors(ref, hyp)
    if not n:
        return 0.0 if not normalize_words(hyp) else 1.0
    return edits / n


def normalize_chars(text: str) -> str:
    """NFKC, lower case, punctuation, symbols and all whitespace dropped."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith(("P", "S", "Z"))
                   and not ch.isspace())


def cer(ref: str, hyp: str) -> float:
    """Character error rate on `normalize_chars` text (for Japanese: the written surface form)."""
    r, h = normalize_chars(ref), normalize_chars(hyp)
    if not r:
        return 0.0 if not h else 1.0
    return _edit_distance(list(r), list(h)) / len(r)


def _ngrams(text: str, n: int) -> Counter[str]:
    return Counter(text[i:i + n] for i in range(len(text) - n + 1))


def chrf(ref: str, hyp: str, *, order: int = 6, beta: float = 2.0) -> float:
    """chrF (0-100): character n-gram F-score, n = 1..order, recall weighted by beta.

    Whitespace is removed before counting (as sacreBLEU does); the per-order
    F-scores are averaged over the orders both sides are long enough for.
    """
    r = "".join(ref.split())
    h = "".join(hyp.split())
    if not r and not h:
        return 100.0
    if not r or not h:
        return 0.0
    factor = beta * beta
    total, orders = 0.0, 0
    for n in range(1, order + 1):
        rn, hn = _ngrams(r, n), _ngrams(h, n)
        if not rn or not hn:
            continue
        match = sum((rn & hn).values())
        prec = match / sum(hn.values())
        rec = match / sum(rn.values())
        orders += 1
        if prec + rec > 0:
            total += (1 + factor) * prec * rec / (factor * prec + rec)
    return 100.0 * total / orders if orders else 0.0
