"""Language codes and names, in one table.

Containers tag streams with ISO 639-2 (Matroska and MP4 players expect the bibliographic
form: ``ger``, ``fre``, ``chi``), engines take ISO 639-1 (``de``), people write names
(``German``). Every conversion reads this table, so a language added here is known to
probing, subtitle roles and muxing alike.
"""

from __future__ import annotations

#: (ISO 639-1, ISO 639-2/B, ISO 639-2/T, English name).
LANGUAGES: tuple[tuple[str, str, str, str], ...] = (
    ("en", "eng", "eng", "English"), ("ja", "jpn", "jpn", "Japanese"), ("fr", "fre", "fra", "French"),
    ("de", "ger", "deu", "German"), ("es", "spa", "spa", "Spanish"), ("it", "ita", "ita", "Italian"),
    ("pt", "por", "por", "Portuguese"), ("ru", "rus", "rus", "Russian"), ("zh", "chi", "zho", "Chinese"),
    ("ko", "kor", "kor", "Korean"), ("ar", "ara", "ara", "Arabic"), ("hi", "hin", "hin", "Hindi"),
    ("nl", "dut", "nld", "Dutch"), ("pl", "pol", "pol", "Polish"), ("tr", "tur", "tur", "Turkish"),
    ("sv", "swe", "swe", "Swedish"), ("no", "nor", "nor", "Norwegian"), ("da", "dan", "dan", "Danish"),
    ("fi", "fin", "fin", "Finnish"), ("uk", "ukr", "ukr", "Ukrainian"), ("vi", "vie", "vie", "Vietnamese"),
    ("th", "tha", "tha", "Thai"), ("id", "ind", "ind", "Indonesian"), ("ms", "may", "msa", "Malay"),
    ("cs", "cze", "ces", "Czech"), ("el", "gre", "ell", "Greek"), ("he", "heb", "heb", "Hebrew"),
    ("hu", "hun", "hun", "Hungarian"), ("ro", "rum", "ron", "Romanian"), ("ca", "cat", "cat", "Catalan"),
    ("tl", "tgl", "tgl", "Tagalog"),
)
#: Tags that say the language is not known (or not a language).
UNDETERMINED = frozenset({"und", "unk", "mul", "zxx", "mis"})

#: Three-letter code (either form, and "fil" for Filipino) -> ISO 639-1.
TO_ISO639_1: dict[str, str] = {**{b: one for one, b, _t, _n in LANGUAGES},
                               **{t: one for one, _b, t, _n in LANGUAGES}, "fil": "tl"}
#: ISO 639-1 -> ISO 639-2/B (the container tag).
TO_ISO639_2: dict[str, str] = {one: b for one, b, _t, _n in LANGUAGES}
#: Lower-case English name -> ISO 639-1.
BY_NAME: dict[str, str] = {name.lower(): one for one, _b, _t, name in LANGUAGES}
#: ISO 639-2 (either form) -> English name, for track titles.
NAMES: dict[str, str] = {**{b: name for _o, b, _t, name in LANGUAGES}, **{t: name for _o, _b, t, name in LANGUAGES}}


def iso639_2(code: str | None) -> str:
    """The container tag for a language: 'en' -> 'eng', 'de' -> 'ger'; other three-letter codes pass
    through; empty -> 'und'."""
    code = (code or "").strip().lower()
    if not code:
        return "und"
    return TO_ISO639_2.get(code, code)


def language_name(code: str) -> str:
    """The English name for a three-letter tag ('ger' -> 'German'), or the tag itself."""
    return NAMES.get(code, code)
