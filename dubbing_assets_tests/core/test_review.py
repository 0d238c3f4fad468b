"""Human review (core/review.py): the editable translation file and the per-series glossary.

The pipeline writes review/<episode>/translation.json with a hash of its own lines; a person's edit is any
change to a line's `text` that makes the hash disagree, and the next translation run takes those edits and
rewrites the file, so the pipeline's own rewrite is never mistaken for an edit. test_sensor.py checks that
the sensor turns an edit into one re-run; here the file itself is tested: what counts as an edit (and what
does not), which lines an edit changes, the file's privacy (0600), unsafe keys and the glossary loader's
handling of bad YAML.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from dubbing_assets.core.contracts import TranslatedLine, Translation
from dubbing_assets.core.review import apply_review, is_user_edit, lines_hash, load_glossary, review_file
from dubbing_assets.errors import ConfigError, UnsafeNameError

KEY = "show-e01"


def _translation(*texts: str) -> Translation:
    texts = texts or ("line 0", "line 1", "line 2")
    lines = [TranslatedLine(index=i, start=float(i), end=i + 0.8, speaker=f"s{i % 2}", source_text=f"原文 {i}",
                            text=text) for i, text in enumerate(texts)]
    return Translation(source_language="ja", target_language="en", engine="test", lines=lines)


def _edit(path: Path, change: dict[int, dict[str, Any]]) -> None:
    """Change fields of some lines (by position) the way a person with an editor would."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for pos, fields in change.items():
        data["lines"][pos].update(fields)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


# --- lines_hash ----------------------------------------------------------------------------------------


def test_lines_hash_covers_index_and_text_only() -> None:
    base = [{"index": 0, "text": "hello"}, {"index": 1, "text": "world"}]
    same = [{"text": "hello", "index": "0", "speaker": "x", "start": 9.0}, {"index": 1.0, "text": "world"}]
    assert lines_hash(base) == lines_hash(same)  # other fields, key order and index type do not count
    assert lines_hash(base) != lines_hash([{"index": 0, "text": "hello!"}, {"index": 1, "text": "world"}])
    assert lines_hash(base) != lines_hash([{"index": 0, "text": "hello"}, {"index": 2, "text": "world"}])
    assert lines_hash(base) != lines_hash(list(reversed(base)))  # order is part of it
    assert lines_hash(base) != lines_hash(base[:1])
    assert len(lines_hash([])) == 64 and lines_hash([]) != lines_hash(base)


def test_lines_hash_tells_apart_texts_that_differ_only_in_non_ascii() -> None:
    assert lines_hash([{"index": 0, "text": "café"}]) != lines_hash([{"index": 0, "text": "cafe"}])
    assert lines_hash([{"index": 0, "text": "ケンジ"}]) == lines_hash([{"index": 0, "text": "ケンジ"}])


# --- review_file ---------------------------------------------------------------------------------------


def test_review_file_is_per_episode_under_the_review_folder(tmp_path: Path) -> None:
    assert review_file(tmp_path, KEY) == tmp_path.resolve() / KEY / "translation.json"


@pytest.mark.parametrize("key", ["../other", "Show-E01", "a/b", "", "..", "-x"])
def test_review_file_refuses_unsafe_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(UnsafeNameError, match="episode key"):
        review_file(tmp_path, key)
    with pytest.raises(UnsafeNameError):
        apply_review(tmp_path / "review", key, _translation())
    assert not (tmp_path / "review").exists()


# --- apply_review: the pipeline's own write --------------------------------------------------------------


def test_first_write_creates_a_private_file_that_is_not_an_edit(tmp_path: Path) -> None:
    translation = _translation()
    assert apply_review(tmp_path / "review", KEY, translation) == 0
    path = review_file(tmp_path / "review", KEY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # dialogue is private
    assert not is_user_edit(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["episode"] == KEY and data["target_language"] == "en" and "Edit `text`" in data["help"]
    assert data["generated_hash"] == lines_hash(data["lines"])
    assert [ln["text"] for ln in data["lines"]] == ["line 0", "line 1", "line 2"]
    assert data["lines"][1] == {"index": 1, "start": 1.0, "end": 1.8, "speaker": "s1", "source_text": "原文 1",
                                "text": "line 1", "machine_text": "line 1"}  # no alternatives: no alternative fields
    assert [ln.text for ln in translation.lines] == ["line 0", "line 1", "line 2"]  # untouched
    assert os.listdir(path.parent) == ["translation.json"]  # atomic: no temporary left behind


def test_alternatives_are_listed_with_their_slot_and_only_known_fields(tmp_path: Path) -> None:
    translation = _translation("short", "other")
    line = translation.lines[0]
    line.alternatives = [{"text": "short", "seconds": 0.7, "fit": 0.9, "logprob": -0.1, "score": 3.0},
                         {"text": "a much longer reading", "seconds": 1.9, "logprob": -0.4}]
    line.slot_s, line.chosen_by = 0.8, "fit"
    apply_review(tmp_path, KEY, translation)
    first, second = json.loads(review_file(tmp_path, KEY).read_text(encoding="utf-8"))["lines"]
    assert first["slot_s"] == 0.8 and first["chosen_by"] == "fit"
    assert first["alternatives"] == [{"text": "short", "seconds": 0.7, "fit": 0.9, "logprob": -0.1},
                                     {"text": "a much longer reading", "seconds": 1.9, "logprob": -0.4}]
    assert "alternatives" not in second and "slot_s" not in second


def test_rewriting_tightens_a_file_someone_made_readable(tmp_path: Path) -> None:
    apply_review(tmp_path, KEY, _translation())
    path = review_file(tmp_path, KEY)
    path.chmod(0o644)
    apply_review(tmp_path, KEY, _translation())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- what counts as an edit ----------------------------------------------------------------------------


def test_is_user_edit_is_false_for_files_that_cannot_be_read(tmp_path: Path) -> None:
    assert not is_user_edit(tmp_path / "missing.json")
    assert not is_user_edit(tmp_path)  # a folder
    for content in ("{broken", "[]", "null", json.dumps({"generated_hash": "x"}),
                    json.dumps({"lines": [{"text": "no index"}]}),
                    json.dumps({"lines": [{"index": "one", "text": ""}]}),
                    json.dumps({"lines": "not a list"})):
        path = tmp_path / "f.json"
        path.write_text(content, encoding="utf-8")
        assert not is_user_edit(path), content


def test_a_hand_written_file_without_a_hash_is_an_edit(tmp_path: Path) -> None:
    path = tmp_path / "translation.json"
    path.write_text(json.dumps({"lines": [{"index": 0, "text": "mine"}]}), encoding="utf-8")
    assert is_user_edit(path)


def test_changing_text_is_an_edit_and_other_fields_are_not(tmp_path: Path) -> None:
    apply_review(tmp_path, KEY, _translation())
    path = review_file(tmp_path, KEY)
    _edit(path, {0: {"speaker": "someone", "start": 5.0, "source_text": "changed", "note": "added"}})
    assert not is_user_edit(path)
    _edit(path, {2: {"text": "line 2 (edited)"}})
    assert is_user_edit(path)
    _edit(path, {2: {"text": "line 2"}})  # changed back: nothing to apply
    assert not is_user_edit(path)


# --- applying edits ------------------------------------------------------------------------------------


def test_edited_lines_are_applied_and_counted(tmp_path: Path) -> None:
    apply_review(tmp_path, KEY, _translation())
    path = review_file(tmp_path, KEY)
    _edit(path, {0: {"text": "Hello there."}, 2: {"text": "Goodbye, ケンジ."}})
    rerun = _translation()  # what the translation engine produces again on the re-run
    assert apply_review(tmp_path, KEY, rerun) == 2
    assert [ln.text for ln in rerun.lines] == ["Hello there.", "line 1", "Goodbye, ケンジ."]
    # the file now holds the edited lines with a matching hash: the pipeline's rewrite is no new edit
    assert not is_user_edit(path)
    assert [ln["text"] for ln in json.loads(path.read_text(encoding="utf-8"))["lines"]] == [
        "Hello there.", "line 1", "Goodbye, ケンジ."]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a person's editor may have widened it


def test_an_edit_outlives_later_runs_until_it_is_taken_back(tmp_path: Path) -> None:
    """A re-dub after the edit's own re-run (a new voice, a backfill) must not bring the machine's text back:
    before machine_text, the rewrite made the edited text look like the pipeline's own and the next run lost
    it. Setting the text back to machine_text takes the engine's reading again."""
    apply_review(tmp_path, KEY, _translation())
    path = review_file(tmp_path, KEY)
    _edit(path, {1: {"text": "Kenji, wait!"}})
    first = _translation()
    assert apply_review(tmp_path, KEY, first) == 1 and first.lines[1].text == "Kenji, wait!"
    for _ in range(2):  # later runs: the engine says the same, or now something else
        later = _translation("line 0", "line 1 (new reading)", "line 2")
        assert apply_review(tmp_path, KEY, later) == 1
        assert [ln.text for ln in later.lines] == ["line 0", "Kenji, wait!", "line 2"]
        assert not is_user_edit(path)  # the pipeline's rewrite is no new edit: no re-run loop
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["lines"][1]["machine_text"] == "line 1 (new reading)"
    _edit(path, {1: {"text": "line 1 (new reading)"}})  # taken back
    assert is_user_edit(path)
    back = _translation("line 0", "line 1 (new reading)", "line 2")
    assert apply_review(tmp_path, KEY, back) == 0 and back.lines[1].text == "line 1 (new reading)"
    again = _translation("line 0", "line 1 (new reading)", "line 2")
    assert apply_review(tmp_path, KEY, again) == 0


def test_an_edit_of_a_line_whose_source_changed_is_kept_aside_not_applied(tmp_path: Path) -> None:
    apply_review(tmp_path, KEY, _translation())
    path = review_file(tmp_path, KEY)
    _edit(path, {2: {"text": "edited two"}})
    retranscribed = _translation()
    retranscribed.lines[2].source_text = "別の原文"
    assert apply_review(tmp_path, KEY, retranscribed) == 0 and retranscribed.lines[2].text == "line 2"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["stale_edits"] == [{"index": 2, "text": "edited two", "source_text": "原文 2"}]
    apply_review(tmp_path, KEY, _translation())  # still kept, once
    assert json.loads(path.read_text(encoding="utf-8"))["stale_edits"] == data["stale_edits"]


def test_an_edit_may_empty_a_line_or_pick_an_alternative(tmp_path: Path) -> None:
    translation = _translation("chosen", "keep")
    translation.lines[0].alternatives = [{"text": "chosen"}, {"text": "the other reading"}]
    apply_review(tmp_path, KEY, translation)
    path = review_file(tmp_path, KEY)
    _edit(path, {0: {"text": "the other reading"}, 1: {"text": ""}})
    rerun = _translation("chosen", "keep")
    assert apply_review(tmp_path, KEY, rerun) == 2
    assert [ln.text for ln in rerun.lines] == ["the other reading", ""]


def test_edits_for_lines_the_translation_no_longer_has_are_ignored(tmp_path: Path) -> None:
    path = review_file(tmp_path, KEY)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"lines": [{"index": 1, "text": "edited one"}, {"index": 7, "text": "gone"}]}),
                    encoding="utf-8")
    translation = _translation()
    assert apply_review(tmp_path, KEY, translation) == 1
    assert [ln.text for ln in translation.lines] == ["line 0", "edited one", "line 2"]
    assert [ln["index"] for ln in json.loads(path.read_text(encoding="utf-8"))["lines"]] == [0, 1, 2]


def test_edits_of_another_episode_do_not_apply(tmp_path: Path) -> None:
    apply_review(tmp_path, "show-e02", _translation())
    _edit(review_file(tmp_path, "show-e02"), {0: {"text": "for e02 only"}})
    translation = _translation()
    assert apply_review(tmp_path, KEY, translation) == 0
    assert translation.lines[0].text == "line 0"
    assert is_user_edit(review_file(tmp_path, "show-e02"))  # still pending for its own episode


def test_a_broken_review_file_is_reported_not_overwritten(tmp_path: Path) -> None:
    path = review_file(tmp_path, KEY)
    path.parent.mkdir(parents=True)
    broken = '{"lines": [{"index": 0, "text": "my careful edit"},]'
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        apply_review(tmp_path, KEY, _translation())
    assert path.read_text(encoding="utf-8") == broken


# --- glossary ------------------------------------------------------------------------------------------


def _glossary(tmp_path: Path, text: str, series: str = "alpha-series") -> Path:
    path = tmp_path / series / "glossary.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_no_glossary_is_an_empty_one(tmp_path: Path) -> None:
    assert load_glossary(tmp_path, "alpha-series") == {}
    _glossary(tmp_path, "")
    assert load_glossary(tmp_path, "alpha-series") == {}
    _glossary(tmp_path, "# only a comment\n")
    assert load_glossary(tmp_path, "alpha-series") == {}


def test_glossary_maps_source_terms_to_target_terms_as_strings(tmp_path: Path) -> None:
    _glossary(tmp_path, "ケンジ: Kenji\nメロンパン: melonpan\n第3話: 'Episode 3'\n2024: twenty twenty-four\n")
    _glossary(tmp_path, "ケンジ: Kenzo\n", series="other-series")
    assert load_glossary(tmp_path, "alpha-series") == {"ケンジ": "Kenji", "メロンパン": "melonpan",
                                                       "第3話": "Episode 3", "2024": "twenty twenty-four"}
    assert load_glossary(tmp_path, "other-series") == {"ケンジ": "Kenzo"}  # per series


def test_invalid_glossary_yaml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = _glossary(tmp_path, "ケンジ: [Kenji\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_glossary(tmp_path, "alpha-series")
    assert str(path) in str(info.value) and "fix it or delete it" in str(info.value)


@pytest.mark.parametrize("text", ["- Kenji\n- Aiko\n", "just a sentence\n", "42\n"])
def test_a_glossary_that_is_not_a_mapping_is_a_config_error(tmp_path: Path, text: str) -> None:
    _glossary(tmp_path, text)
    with pytest.raises(ConfigError, match="must map source terms to target terms"):
        load_glossary(tmp_path, "alpha-series")


@pytest.mark.parametrize("series", ["../..", "Alpha Series", "a/b", ""])
def test_glossary_series_must_be_a_slug(tmp_path: Path, series: str) -> None:
    with pytest.raises(UnsafeNameError, match="series"):
        load_glossary(tmp_path, series)


def test_a_term_without_a_translation_is_a_config_error(tmp_path: Path) -> None:
    _glossary(tmp_path, "ケンジ:\nアイコ: Aiko\n")
    with pytest.raises(ConfigError, match="ケンジ"):
        load_glossary(tmp_path, "alpha-series")


def test_glossary_terms_are_kept_as_written(tmp_path: Path) -> None:
    _glossary(tmp_path, "no: nein\nyes: ja\non: an\n")
    assert load_glossary(tmp_path, "alpha-series") == {"no": "nein", "yes": "ja", "on": "an"}
