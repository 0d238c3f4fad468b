"""Safe names: `slugify`, `is_slug`/`check_slug` and `safe_join` (core/safepath.py).

Every episode key, series name and asset file name that reaches the filesystem goes through these, so they
are the project's one line of defence against path traversal and odd file names. test_inbox.py covers
`safe_join` refusing '..', 'a/b', '' and NUL, and keys built from hostile inbox names; this file covers
the rest of the contract: the exact slug grammar, the error type and message, symlink escapes, and the
shape of what `slugify` returns.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dubbing_assets.core.safepath import check_slug, is_slug, safe_join, slug_before_digest, slugify
from dubbing_assets.errors import DubbingError, UnsafeNameError

# --- slugify -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("Alpha Series", "alpha-series"),
    ("Café Noir!", "cafe-noir"),  # accents folded, punctuation dropped
    ("  --Show  [BD] (2024)--  ", "show-bd-2024"),  # runs collapse to one '-', none at either end
    ("a_b.c/d\\e", "a-b-c-d-e"),  # separators never survive
    ("../../etc/passwd", "etc-passwd"),
    ("S01E02", "s01e02"),
])
def test_slugify_gives_lowercase_dash_separated_slugs(text: str, expected: str) -> None:
    assert slugify(text) == expected
    assert is_slug(slugify(text))


def test_slugify_truncates_to_max_len_without_a_trailing_dash() -> None:
    assert len(slugify("x" * 200)) == 60  # the default
    assert slugify("ab cd", max_len=3) == "ab"  # cut at "ab-", then the dash is stripped
    assert slugify("abcdef", max_len=4) == "abcd"
    long = slugify("word " * 40, max_len=119)
    assert len(long) <= 119 and is_slug(long)


def test_slugify_of_nothing_left_is_empty_and_empty_is_not_a_slug() -> None:
    """Callers must handle "" (a name of only punctuation); check_slug refuses it."""
    assert slugify("!!!") == "" and slugify("") == ""
    with pytest.raises(UnsafeNameError):
        check_slug(slugify("!!!"))


def test_names_in_scripts_without_ascii_keep_apart() -> None:
    """Two series named only in Japanese were one slug ("", so "series" for the inbox): one library folder,
    one character store. Letters that do not fold to ASCII leave a digest of the name in the slug."""
    import unicodedata

    names = ["進撃の巨人", "鬼滅の刃", "ショー", "Шоу", "第1話", "第2話", "第一話"]
    slugs = [slugify(n) for n in names]
    assert all(is_slug(s) for s in slugs) and len(set(slugs)) == len(names), slugs
    assert slugify("第1話").startswith("1-") and len(slugify("ショー")) == 8
    assert slugify(unicodedata.normalize("NFD", "ショー")) == slugify("ショー")  # a Mac share's file names
    assert slugify("ショー") == slugify("ショー")  # stable: the same name, the same key on every tick
    assert slugify("Café Noir") == "cafe-noir"  # accents fold: no digest
    assert len(slugify("進撃の巨人 " * 30, max_len=20)) <= 20 and is_slug(slugify("進撃 " * 30, max_len=5))


# --- is_slug / check_slug ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "0", "e01", "alpha-series-e01", "a--b", "a" * 120, "9-9"])
def test_is_slug_accepts_lowercase_digits_and_inner_dashes(name: str) -> None:
    assert is_slug(name)
    assert check_slug(name) == name


@pytest.mark.parametrize("name", [
    "", "-a", "a-", "-", "A", "Show", "a_b", "a.b", "a b", "a/b", "..", ".", "é", "a" * 121,
    "a\x00", " a", "a\t",
])
def test_is_slug_refuses_everything_else(name: str) -> None:
    assert not is_slug(name)
    with pytest.raises(UnsafeNameError):
        check_slug(name)


@pytest.mark.parametrize("name", ["abc\n", "show-e01\n"])
def test_a_trailing_newline_is_not_a_slug(name: str) -> None:
    assert not is_slug(name)
    with pytest.raises(UnsafeNameError):
        check_slug(name)


def test_check_slug_error_names_what_and_the_value() -> None:
    with pytest.raises(UnsafeNameError, match=r"episode key '\.\./x' is not allowed") as info:
        check_slug("../x", "episode key")
    assert "lowercase letters, digits and '-'" in str(info.value)
    with pytest.raises(UnsafeNameError, match=r"^name 'A' is not allowed"):
        check_slug("A")  # the default `what`
    assert issubclass(UnsafeNameError, DubbingError)  # shown to the user as it is, like every project error


@pytest.mark.parametrize("value", [None, 5, b"abc", ["abc"]])
def test_check_slug_refuses_non_strings_with_its_own_error(value: object) -> None:
    with pytest.raises(UnsafeNameError, match="is not allowed"):
        check_slug(value)  # type: ignore[arg-type]


# --- safe_join -----------------------------------------------------------------------------------------


def test_safe_join_joins_under_the_resolved_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert safe_join(root, "show", "e01", "translation.json") == root.resolve() / "show" / "e01" / "translation.json"
    assert safe_join(root) == root.resolve()  # no parts: the root itself
    # the root need not exist yet (writers create it afterwards)
    assert safe_join(tmp_path / "later", "a") == (tmp_path / "later").resolve() / "a"


@pytest.mark.parametrize("name", ["...", "..a", ".hidden", "a..b", "submit-e01.json", "名前"])
def test_safe_join_allows_single_components_that_only_look_odd(tmp_path: Path, name: str) -> None:
    assert safe_join(tmp_path, name) == tmp_path.resolve() / name


@pytest.mark.parametrize("parts", [
    (".",), ("/etc",), ("/",), ("a\\..\\..\\b",), ("ok", ".."), ("ok", ""), ("ok", "x/../../y"), ("ok", "a\x00"),
])
def test_safe_join_refuses_any_bad_part(tmp_path: Path, parts: tuple[str, ...]) -> None:
    with pytest.raises(UnsafeNameError, match="is not allowed under"):
        safe_join(tmp_path, *parts)


def test_safe_join_refuses_a_symlink_that_leads_out_of_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "link")
    os.symlink("/etc/passwd", root / "passwd")
    with pytest.raises(UnsafeNameError, match="would leave"):
        safe_join(root, "link")
    with pytest.raises(UnsafeNameError, match="would leave"):
        safe_join(root, "link", "file.json")
    with pytest.raises(UnsafeNameError, match="would leave"):
        safe_join(root, "passwd")


def test_safe_join_follows_symlinks_that_stay_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    os.symlink(root / "real", root / "alias")
    assert safe_join(root, "alias", "f") == root.resolve() / "real" / "f"
    # a root that is itself a symlink is fine: containment is checked against where it points
    os.symlink(root, tmp_path / "root-link")
    assert safe_join(tmp_path / "root-link", "real") == root.resolve() / "real"


@pytest.mark.parametrize(("name", "before"), [("進撃の巨人", "series"), ("第1話", "1"), ("Café Show", "cafe-show"),
                                             ("Плохой сериал 2", "2")])
def test_slug_before_digest_is_what_the_earlier_release_filed_a_name_under(name: str, before: str) -> None:
    """Where the cast stage looks for the characters of a series whose slug the digest changed."""
    assert slug_before_digest(name) == before
