"""Media probing, fingerprints, validation of bad inputs, audio extraction."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from dubbing_assets.core import audio_io, media
from dubbing_assets.core.ffmpeg import run_ffmpeg
from dubbing_assets.errors import MediaError
from dubbing_assets_tests.core.understand_helpers import EN, JA, validation


@pytest.mark.parametrize("clip", [JA, EN], ids=lambda p: p.name)
def test_probe_matches_recorded_ffprobe_summary(clip: Path) -> None:
    expected = validation()[clip.name]["probe"]
    info = media.probe(clip)
    assert info["container"] == expected["container"]
    assert info["duration_s"] == pytest.approx(expected["duration_s"], abs=0.01)
    assert info["size"] == expected["size"]
    assert info["title"] == expected["title"]
    assert len(info["streams"]) == len(expected["streams"])
    for got, want in zip(info["streams"], expected["streams"], strict=True):
        for key in ("index", "type", "codec", "language", "width", "height", "pix_fmt", "profile",
                    "sample_rate", "channels", "channel_layout", "title"):
            if key in want:
                assert got[key] == want[key], (clip.name, want["index"], key)
        if want["type"] == "video":
            assert got["frame_rate"] == want["r_frame_rate"]
    assert info["chapters"] == []


def test_probe_lists_embedded_and_sidecar_subtitles(tmp_path: Path) -> None:
    subs = media.probe(JA)["subtitles"]
    assert subs["embedded"] == [{"index": 2, "codec": "ass", "language": "en", "title": "English",
                                 "text_based": True}]
    clip = tmp_path / "ep01.mp4"
    shutil.copyfile(EN, clip)
    (tmp_path / "ep01.srt").write_text("1\n00:00:00,600 --> 00:00:03,888\nHi\n", encoding="utf-8")
    (tmp_path / "ep01.fr.ass").write_text("", encoding="utf-8")
    (tmp_path / "ep02.srt").write_text("", encoding="utf-8")  # another episode's file
    sidecars = media.probe(clip)["subtitles"]["sidecar"]
    assert [(Path(s["path"]).name, s["language"]) for s in sidecars] == [("ep01.fr.ass", "fr"),
                                                                         ("ep01.srt", None)]


def test_fingerprint_is_the_streamed_content_hash(tmp_path: Path) -> None:
    digest = hashlib.sha256(JA.read_bytes()).hexdigest()
    assert media.fingerprint(JA) == digest
    assert media.fingerprint(JA, chunk_size=4096) == digest
    copy = tmp_path / "renamed.bin"
    shutil.copyfile(JA, copy)
    assert media.fingerprint(copy) == digest
    assert media.fingerprint(EN) != digest


@pytest.mark.parametrize("clip", [JA, EN], ids=lambda p: p.name)
def test_fixtures_validate(clip: Path) -> None:
    info = media.validate(clip)
    assert info["validated"]["audio_decoded_s"] == pytest.approx(info["duration_s"], abs=0.1)


def _bad_inputs(tmp: Path) -> dict[str, Path]:
    empty = tmp / "empty.mkv"
    empty.write_bytes(b"")
    text = tmp / "notes.mp4"
    text.write_text("This is a text file, not a video.\n" * 20, encoding="utf-8")
    truncated = tmp / "truncated.mkv"
    data = JA.read_bytes()
    truncated.write_bytes(data[: int(len(data) * 0.55)])
    silent_video = tmp / "no_audio.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=duration=2:size=64x48:rate=10", "-c:v", "mpeg4", silent_video],
               what="making a video without audio")
    short = tmp / "short.wav"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=440:duration=0.3", short], what="making a short clip")
    return {"empty": empty, "text": text, "truncated": truncated, "no_audio": silent_video, "short": short}


EXPECTED_PHRASES = {
    "empty": "is empty (0 bytes)",
    "text": "is not a media file",
    "truncated": "is truncated",
    "no_audio": "has no audio track",
    "short": "cannot be dubbed",
}


def test_each_bad_input_gets_its_own_clear_error(tmp_path: Path) -> None:
    messages = {}
    for kind, path in _bad_inputs(tmp_path).items():
        with pytest.raises(MediaError) as err:
            media.validate(path)
        messages[kind] = str(err.value)
        assert EXPECTED_PHRASES[kind] in messages[kind], (kind, messages[kind])
        assert path.name in messages[kind]
    assert len(set(messages.values())) == len(messages)
    with pytest.raises(MediaError, match="does not exist"):
        media.validate(tmp_path / "missing.mkv")


def test_extract_audio_keeps_rate_and_layout_by_default(tmp_path: Path) -> None:
    ja = media.extract_audio(JA, tmp_path / "ja.wav")
    info = sf.info(str(ja))
    assert (info.samplerate, info.channels) == (48000, 2)
    assert info.duration == pytest.approx(13.717, abs=0.01)
    en = media.extract_audio(EN, tmp_path / "en.wav", stream_index=1)
    assert (sf.info(str(en)).samplerate, sf.info(str(en)).channels) == (44100, 1)
    small = media.extract_audio(JA, tmp_path / "small.wav", sample_rate=16000, channels=1)
    assert (sf.info(str(small)).samplerate, sf.info(str(small)).channels) == (16000, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["en.wav", "ja.wav", "small.wav"]  # no temp left


def test_load_audio_mono16k_keeps_the_file_timeline() -> None:
    audio = audio_io.load_audio_mono16k(EN)
    assert audio.dtype.name == "float32" and audio.ndim == 1
    assert len(audio) / 16000 == pytest.approx(10.472, abs=0.01)
    # The first line starts at 0.600 s (first sample above -40 dBFS).
    above = (abs(audio) > 10 ** (-40 / 20)).nonzero()[0]
    assert above[0] / 16000 == pytest.approx(0.600, abs=0.01)


def test_normalize_language() -> None:
    assert media.normalize_language("jpn") == "ja"
    assert media.normalize_language("eng") == "en"
    assert media.normalize_language("en-US") == "en"
    assert media.normalize_language("Japanese") == "ja"
    assert media.normalize_language("und") is None


def test_a_file_cut_short_by_two_percent_is_truncated(tmp_path: Path) -> None:
    """A 24-minute episode 2 % short would lose 29 s (issue 14, item 7): the audio may end at most 0.1 s plus
    one packet before the stated duration. The last 1 % of the fixture's bytes holds 0.3 s of sound."""
    cut = tmp_path / "cut.mkv"
    data = JA.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.99)])
    with pytest.raises(MediaError, match="is truncated"):
        media.validate(cut)


def test_video_end_is_read_from_its_packets(tmp_path: Path) -> None:
    """validate compares where the video's packets end with the duration the file states for it: a picture
    that its own metadata says is shorter (3 s of 6) is fine; a cut file's video stops where it was cut."""
    short = tmp_path / "short_picture.mkv"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=duration=3:size=64x48:rate=25", "-f", "lavfi", "-i",
                "sine=frequency=440:duration=6", "-c:v", "mpeg4", "-c:a", "flac", short],
               what="a clip whose picture is shorter than its sound")
    assert media.validate(short)["validated"]["audio_decoded_s"] == pytest.approx(6.0, abs=0.05)
    whole = tmp_path / "whole.mkv"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=duration=6:size=64x48:rate=25", "-f", "lavfi", "-i",
                "sine=frequency=440:duration=6", "-c:v", "mpeg4", "-c:a", "flac", whole], what="a whole clip")
    assert media._video_end_seconds(whole, 0) == pytest.approx((6.0, 0.04), abs=0.01)
    cut = tmp_path / "cut.mkv"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    end, frame = media._video_end_seconds(cut, 0)
    assert end < 4.5 and frame == pytest.approx(0.04)
    with pytest.raises(MediaError, match="is truncated"):
        media.validate(cut)
