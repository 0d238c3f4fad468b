"""Subtitles as a script (signs/songs/karaoke left out) and translations written as subtitles."""

from __future__ import annotations

import shutil
from pathlib import Path

import pysubs2
import pytest

from dubbing_assets.core.model import TranslatedLine, Translation
from dubbing_assets.core.subtitles import (
    non_dialogue_reason,
    pick_subtitle_track,
    plain_text,
    script_from_subtitles,
    write_subtitles,
)
from dubbing_assets.errors import ConfigError, MediaError
from dubbing_assets_tests.core.understand_helpers import EN, JA, ground_truth


def test_embedded_ass_gives_four_lines_with_speakers_and_times() -> None:
    truth = ground_truth(JA)["lines"]
    script = script_from_subtitles(JA, "en")
    assert script.source == "subtitles" and script.language == "en"
    assert [ln.speaker for ln in script.lines] == ["Aiko", "Kenji", "Aiko", "Kenji"]
    assert [ln.text for ln in script.lines] == [t["text_en"] for t in truth]
    for line, want in zip(script.lines, truth, strict=True):
        assert abs(line.start - want["start"]) <= 0.050
        assert abs(line.end - want["end"]) <= 0.050
    assert script.meta["speakers_named"] is True
    assert script.meta["origin"]["index"] == 2


def test_track_is_picked_by_language() -> None:
    assert pick_subtitle_track(JA, "eng")["index"] == 2
    assert pick_subtitle_track(JA, "en")["index"] == 2
    assert pick_subtitle_track(JA, "ja") is None
    with pytest.raises(MediaError, match="no text subtitles in language 'ja'"):
        script_from_subtitles(JA, "ja")
    with pytest.raises(MediaError, match="no text subtitles"):
        script_from_subtitles(EN)


# (The long Format line is wrapped with backslash-newline, removed before parsing.)
ASS = r"""[Script Info]
ScriptType: v4.00+
PlayResX: 640
PlayResY: 360

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, \
Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, \
MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H80000000,0,0,0,0,100,100,0,0,1,2,1,2,20,20,15,1
Style: Signs,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H80000000,0,0,0,0,100,100,0,0,1,2,1,8,20,20,15,1
Style: OP-Romaji,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H80000000,0,0,0,0,100,100,0,0,1,2,1,8,20,20,15,1
Style: ED,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H80000000,0,0,0,0,100,100,0,0,1,2,1,8,20,20,15,1
Style: Song_Insert,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H80000000,0,0,0,0,100,100,0,0,1,2,1,8,20,20,15,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:01.00,0:00:02.50,Default,Aiko,0,0,0,,{\i1}Good{\i0} morning!\NHow are you?
Dialogue: 0,0:00:01.20,0:00:02.00,Signs,,0,0,0,,Bakery
Dialogue: 0,0:00:03.00,0:00:04.00,Default,,0,0,0,,{\pos(320,40)}Station Square
Dialogue: 0,0:00:03.00,0:00:04.00,Default,,0,0,0,,{\an8\move(10,10,100,10)}Moving sign
Dialogue: 0,0:00:05.00,0:00:07.00,OP-Romaji,,0,0,0,,{\k20}ha{\k30}ru
Dialogue: 0,0:00:05.00,0:00:07.00,Default,,0,0,0,,{\kf40}ka{\kf40}ra
Dialogue: 0,0:00:05.00,0:00:07.00,ED,,0,0,0,,Ending lyric
Dialogue: 0,0:00:05.00,0:00:07.00,Song_Insert,,0,0,0,,Insert song
Dialogue: 0,0:00:06.00,0:00:07.00,Default,,0,0,0,,{\p1}m 0 0 l 100 0 100 100{\p0}
Comment: 0,0:00:07.00,0:00:08.00,Default,Kenji,0,0,0,,Translator note
Dialogue: 0,0:00:08.00,0:00:09.50,Default,Kenji,0,0,0,,{\an8}Fine, {\b1}thanks{\b0}.
Dialogue: 0,0:00:10.00,0:00:11.00,Default,,0,0,0,,No name here.
"""


def test_signs_songs_and_karaoke_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "episode.ass"
    path.write_text(ASS.replace("\\\n", ""), encoding="utf-8")
    script = script_from_subtitles(path, "en")
    assert [(ln.speaker, ln.text) for ln in script.lines] == [
        ("Aiko", "Good morning! How are you?"),
        ("Kenji", "Fine, thanks."),  # \an8 alone is placement, not a sign
        ("unknown", "No name here."),
    ]
    assert [ln.index for ln in script.lines] == [0, 1, 2]
    assert (script.lines[1].start, script.lines[1].end) == (8.0, 9.5)
    assert script.meta["dropped"] == {"style": 4, "positioned": 2, "karaoke": 1, "drawing": 1}
    assert script.meta["speakers_named"] is False


def test_dialogue_rules() -> None:
    assert non_dialogue_reason("Default", "Hello") is None
    assert non_dialogue_reason("sign_bakery", "x") == "style"
    assert non_dialogue_reason("Default", "x", effect="Karaoke") == "effect"
    assert non_dialogue_reason("Default", r"{\K50}la") == "karaoke"
    assert non_dialogue_reason("Editorial", "x") is None  # "ed" only as a whole word
    assert plain_text(r"{\fad(200,200)}Hi\Nthere{\i1}!") == "Hi there!"


def test_sidecar_srt_is_read_for_media_without_embedded_subtitles(tmp_path: Path) -> None:
    clip = tmp_path / "ep.mp4"
    shutil.copyfile(EN, clip)
    (tmp_path / "ep.en.srt").write_text(
        "1\n00:00:00,600 --> 00:00:03,888\n<i>The morning train</i> was late again.\n\n"
        "2\n00:00:04,438 --> 00:00:06,424\nOn the way...\n", encoding="utf-8")
    script = script_from_subtitles(clip, "en")
    assert [ln.text for ln in script.lines] == ["The morning train was late again.", "On the way..."]
    assert script.meta["origin"]["kind"] == "sidecar"


def _translation() -> Translation:
    return Translation(source_language="ja", target_language="en", engine="test", lines=[
        TranslatedLine(index=1, start=4.187, end=6.435, speaker="Kenji", source_text="うん", text="Yeah."),
        TranslatedLine(index=0, start=1.021, end=3.587, speaker="Aiko", source_text="おはよう",
                       text="Morning.\nEarly today."),
    ])


def test_write_ass_keeps_speakers_and_srt_round_trips(tmp_path: Path) -> None:
    ass = write_subtitles(_translation(), tmp_path / "out.ass")
    subs = pysubs2.load(str(ass))
    assert [e.name for e in subs.events] == ["Aiko", "Kenji"]
    assert subs.events[0].text == r"Morning.\NEarly today."
    again = script_from_subtitles(ass, "en")
    assert [ln.speaker for ln in again.lines] == ["Aiko", "Kenji"]
    assert again.lines[0].start == pytest.approx(1.02, abs=0.011)
    srt = write_subtitles(_translation(), tmp_path / "out.txt", fmt="srt")
    text = srt.read_text(encoding="utf-8")
    assert "00:00:01,021 --> 00:00:03,587" in text and "Morning.\nEarly today." in text
    with pytest.raises(ConfigError):
        write_subtitles(_translation(), tmp_path / "out.vtt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ass", "out.txt"]
