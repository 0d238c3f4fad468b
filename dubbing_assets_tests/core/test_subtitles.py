"""Subtitles as a script (signs/songs/karaoke left out) and translations written as subtitles."""

from __future__ import annotations

import shutil
from pathlib import Path

import pysubs2
import pytest

from dubbing_assets.core.contracts import TranslatedLine, Translation
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


# -- the language of a track: name, tag, then its text (issue 12) -------------

def test_language_from_the_file_name_suffix() -> None:
    from dubbing_assets.core.subtitles import language_from_filename

    for name in ("Episode 03.en.ass", "Episode 03.eng.srt", "Episode 03.en-US.ass", "Episode 03.English.srt"):
        assert language_from_filename(name, "Episode 03") == ("en", name.split(".")[1])
    assert language_from_filename("Episode 03.ja.ass", "Episode 03")[0] == "ja"
    for name in ("Episode 03.ass", "Episode 03.forced.srt", "Episode 03.for.srt", "Other.en.ass"):
        assert language_from_filename(name, "Episode 03") is None
    assert language_from_filename("Ep.03.ass", "Ep.03") is None  # dots in the episode name are not a suffix


def test_language_is_detected_offline_from_short_tag_laden_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """ASS override tags and \\N are stripped first; the model is in the wheel, so no socket is ever opened."""
    import socket

    from dubbing_assets.core import subtitles

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("language identification tried to use the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    subtitles._detector.cache_clear()  # load the model again, with the network gone
    english = [r"{\i1}Morning.{\i0}\NYou're pretty early today.", r"{\an8}{\fad(200,200)}Yeah,\Nthe bakery.",
               r"{\b1}Lucky you.{\b0} What\h did you get?", r"{\c&H00FFFF&}Two melon buns.\NYou can have one."]
    japanese = [r"{\i1}おはよう。{\i0}\N今日はずいぶん早いね。", r"{\an8}うん、\N駅前のパン屋に寄ってきたんだ。",
                r"{\fad(100,100)}いいな。\N何を買ったの？", r"{\b1}メロンパンを二つ。{\b0}\N一つあげるよ。"]
    code, confidence = subtitles.detect_language(english)
    assert code == "en" and confidence >= 0.9
    code, confidence = subtitles.detect_language(japanese)
    assert code == "ja" and confidence >= 0.9
    for line in english:
        assert subtitles.detect_language([line])[0] == "en", line
    for line in japanese:
        assert subtitles.detect_language([line])[0] == "ja", line
    assert subtitles.detect_language([r"{\an8}", "♪ ♪", "..."]) == (None, 0.0)


def test_language_id_accuracy_on_the_fixture_subtitle_lines() -> None:
    """Every subtitle line of the fixtures, alone and per file: the figures of the issue's closing note."""
    from dubbing_assets.core.subtitles import detect_language

    files = {"ja_two_speakers.mkv English track": ("en", [ln.text for ln in script_from_subtitles(JA, "en").lines]),
             "ja_two_speakers Japanese lines": ("ja", [t["text_ja"] for t in ground_truth(JA)["lines"]]),
             "en_monologue English lines": ("en", [t["text_en"] for t in ground_truth(EN)["lines"]])}
    right = total = right_files = 0
    for name, (want, lines) in files.items():
        results = [detect_language([line]) for line in lines]
        whole = detect_language(lines)
        right += sum(code == want for code, _ in results)
        total += len(lines)
        right_files += whole[0] == want
        print(f"{name}: {sum(c == want for c, _ in results)}/{len(lines)} lines; file {whole[0]} ({whole[1]:.2f}); "
              f"per line {[(c, round(p, 2)) for c, p in results]}")
    print(f"per line {right}/{total}, per file {right_files}/{len(files)}")
    assert (right, right_files) == (total, len(files))


def _episode_with_sidecars(folder: Path, sidecars: dict[str, str]) -> Path:
    from dubbing_assets_tests.core.understand_helpers import (
        english_sidecar,
        episode_without_subtitles,
        japanese_sidecar,
    )

    folder.mkdir(parents=True, exist_ok=True)
    clip = episode_without_subtitles(folder / "Episode 03.mkv")
    for tail, what in sidecars.items():
        (english_sidecar if what == "en" else japanese_sidecar)(folder / f"Episode 03{tail}")
    return clip


def test_unnamed_sidecars_get_their_language_from_their_text(tmp_path: Path) -> None:
    from dubbing_assets.core.subtitles import catalog_subtitles, subtitle_roles

    clip = _episode_with_sidecars(tmp_path / "inbox", {".ass": "en", ".srt": "ja"})
    tracks = {t["name"]: t for t in catalog_subtitles(clip, tmp_path / "work")}
    assert set(tracks) == {"Episode 03.ass", "Episode 03.srt"}
    assert (tracks["Episode 03.ass"]["language"], tracks["Episode 03.ass"]["language_from"]) == ("en", "detected")
    assert (tracks["Episode 03.srt"]["language"], tracks["Episode 03.srt"]["language_from"]) == ("ja", "detected")
    assert tracks["Episode 03.srt"]["language_confidence"] >= 0.9
    roles = subtitle_roles(list(tracks.values()), source_language="jpn", target_language="en")
    assert roles["script"]["name"] == "Episode 03.srt" and roles["translation"]["name"] == "Episode 03.ass"
    assert "audio's language ja" in roles["reasons"]["script"]
    assert "spoken as written" in roles["reasons"]["translation"]
    # English alone: it is the translation, and (with no Japanese track) gives the script its timing.
    only = subtitle_roles([tracks["Episode 03.ass"]], source_language="ja", target_language="en")
    assert only["script"] is only["translation"] is tracks["Episode 03.ass"]
    # A Japanese target makes the Japanese track the translation.
    assert subtitle_roles(list(tracks.values()), source_language="en", target_language="ja")[
        "translation"]["name"] == "Episode 03.srt"


def test_name_beats_text_and_undetermined_tracks_are_reported(tmp_path: Path) -> None:
    from dubbing_assets.core.subtitles import catalog_subtitles, subtitle_roles

    clip = _episode_with_sidecars(tmp_path / "inbox", {".ja.ass": "en"})  # mislabelled: the name wins
    (tmp_path / "inbox" / "Episode 03.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\n♪ ♪\n", encoding="utf-8")
    tracks = {t["name"]: t for t in catalog_subtitles(clip, tmp_path / "work")}
    named = tracks["Episode 03.ja.ass"]
    assert (named["language"], named["language_from"], named["language_note"]) == (
        "ja", "name", "file name suffix '.ja'")
    odd = tracks["Episode 03.srt"]
    assert odd["language"] is None and odd["language_from"] == "undetermined"
    roles = subtitle_roles(list(tracks.values()), source_language="ja", target_language="en")
    assert roles["script"] is named and roles["translation"] is None
    assert [t["name"] for t in roles["undetermined"]] == ["Episode 03.srt"]
    # Nothing in either language: the first track serves as the script, as before detection.
    assert subtitle_roles([odd], source_language="ja", target_language="en")["script"] is odd


def test_untagged_embedded_stream_is_detected_and_picked(tmp_path: Path) -> None:
    from dubbing_assets.core.subtitles import catalog_subtitles
    from dubbing_assets_tests.core.understand_helpers import episode_without_subtitles

    clip = episode_without_subtitles(tmp_path / "untagged.mkv", untag_subtitles=True)
    (track,) = catalog_subtitles(clip, tmp_path / "work")
    assert (track["name"], track["language"], track["language_from"]) == ("stream #2", "en", "detected")
    assert pick_subtitle_track(clip, "en")["index"] == 2
    assert pick_subtitle_track(clip, "ja") is None  # before detection the one untagged track was taken for any
    assert [ln.text for ln in script_from_subtitles(clip, "en").lines] == [
        t["text_en"] for t in ground_truth(JA)["lines"]]
    tagged = catalog_subtitles(JA, tmp_path / "work2")
    assert (tagged[0]["language"], tagged[0]["language_from"]) == ("en", "tag")
