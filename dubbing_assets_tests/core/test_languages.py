"""One language table for probing, subtitle roles and muxing."""

from __future__ import annotations

import pytest

from dubbing_assets.core.languages import LANGUAGES, NAMES, iso639_2, language_name
from dubbing_assets.core.media import normalize_language


@pytest.mark.parametrize(("tag", "code"), [("deu", "de"), ("ger", "de"), ("German", "de"), ("ja-JP", "ja"),
                                           ("fil", "tl"), ("dan", "da"), ("und", None), ("", None)])
def test_every_form_of_a_language_reads_as_iso639_1(tag: str, code: str | None) -> None:
    assert normalize_language(tag) == code


def test_container_tags_are_the_bibliographic_form() -> None:
    """Matroska and MP4 players expect 639-2/B; a Danish dub used to be tagged 'da' (mux had its own,
    shorter table)."""
    assert [iso639_2(c) for c in ("de", "fr", "zh", "da", "nl")] == ["ger", "fre", "chi", "dan", "dut"]
    assert iso639_2("jpn") == "jpn" and iso639_2(None) == "und"
    assert language_name("ger") == language_name("deu") == "German" and language_name("xyz") == "xyz"


def test_the_table_round_trips() -> None:
    for one, b, t, name in LANGUAGES:
        assert normalize_language(b) == normalize_language(t) == normalize_language(name) == one
        assert iso639_2(one) == b and NAMES[b] == name
