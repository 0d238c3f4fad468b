"""Muxing on the real fixture: video copied, dub default + original, subtitles, chapters, MP4 option."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from dubbing_assets.core.ffmpeg import run_ffmpeg
from dubbing_assets.core.mux import iso639_2, mux, verify_delivery
from dubbing_assets.errors import ConfigError, EngineError, MediaError
from dubbing_assets_tests.conftest import MEDIA

pytestmark = [pytest.mark.both_ffmpeg]

SOURCE = MEDIA / "ja_two_speakers.mkv"
SRT = """1
00:00:01,020 --> 00:00:03,590
Morning. You're pretty early today.

2
00:00:04,190 --> 00:00:06,440
Yeah, I stopped by the bakery in front of the station.
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mux")
    meta = d / "chapters.txt"
    meta.write_text(
        ";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=5000\ntitle=Opening\n"
        "[CHAPTER]\nTIMEBASE=1/1000\nSTART=5000\nEND=13000\ntitle=Part A\n"
    )
    chaptered = d / "chaptered.mkv"
    run_ffmpeg(
        [
            "-i",
            SOURCE,
            "-i",
            meta,
            "-map",
            "0",
            "-map_metadata",
            "0",
            "-map_chapters",
            "1",
            "-c",
            "copy",
            chaptered,
        ],
        what="adding chapters to the fixture",
    )
    # the "dub" is the original audio: then both tracks must line up sample for sample
    dub = d / "dub.wav"
    run_ffmpeg(["-i", SOURCE, "-map", "0:a:0", "-c:a", "pcm_s16le", dub], what="decoding the fixture audio")
    srt = d / "en.srt"
    srt.write_text(SRT, encoding="utf-8")
    return {"dir": d, "source": chaptered, "dub": dub, "srt": srt}


def _decode(path: Path, index: int) -> tuple[np.ndarray, float]:
    with av.open(str(path)) as c:
        stream = c.streams[index]
        first = None
        chunks = []
        for frame in c.decode(stream):
            if first is None:
                first = float(frame.pts * frame.time_base)
            chunks.append(frame.to_ndarray().reshape(frame.layout.nb_channels, -1)[0])
    return np.concatenate(chunks), first or 0.0


def test_mkv_delivery(work: dict[str, Path]) -> None:
    out = work["dir"] / "out" / "episode.eng.mkv"
    result = mux(work["source"], work["dub"], 1, [(work["srt"], "en", "English (dub)")], out)
    assert result.streams == 5 and result.skipped == []
    src, got = verify_delivery(SOURCE), verify_delivery(out)
    # video copied: same codec, size and frame count
    sv, gv = src["streams"][0], got["streams"][0]
    assert gv["type"] == "video" and gv["codec"] == sv["codec"] == "h264"
    assert (gv["width"], gv["height"]) == (sv["width"], sv["height"])
    assert got["video_frames"] == src["video_frames"] == 329
    # two audio tracks: dub first and default, original second
    dub, orig = got["audio"]
    assert (dub["codec"], dub["language"], dub["default"]) == ("aac", "eng", True)
    assert (orig["codec"], orig["language"], orig["default"]) == ("aac", "jpn", False)
    assert (dub["sample_rate"], dub["layout"]) == (48000, "stereo")
    assert orig["title"] == "Japanese (original)"
    # subtitles: ours first, then the source's ASS copied; none forced on over the dub
    subs = got["subtitles"]
    assert [(s["codec"], s["language"], s["default"]) for s in subs] == [
        ("subrip", "eng", False),
        ("ass", "eng", False),
    ]
    assert subs[0]["title"] == "English (dub)" and subs[1]["title"] == "English"
    assert [c["title"] for c in got["chapters"]] == ["Opening", "Part A"]
    assert got["title"] == src["title"] == "Alpha Series - Episode 01 (synthetic test clip)"
    # dub and original stay in sync (the dub here is the decoded original)
    a, a0 = _decode(out, 1)
    b, b0 = _decode(out, 2)
    n = min(a.size, b.size, 48000 * 6)
    x, y = a[:n:4], b[:n:4]
    lag = int(np.argmax(np.correlate(x, y, mode="full"))) - (y.size - 1)
    assert abs((a0 - b0) * 1000) < 1.0 and abs(lag) <= 1
    # no temp files left behind
    assert sorted(p.name for p in out.parent.iterdir()) == ["episode.eng.mkv"]


def test_mp4_delivery(work: dict[str, Path]) -> None:
    out = work["dir"] / "episode.eng.mp4"
    mux(
        work["source"],
        work["dub"],
        1,
        [(work["srt"], "en", "English (dub)")],
        out,
        container="mp4",
        default_subtitles=True,
    )
    got = verify_delivery(out)
    assert got["format"].startswith("mov,mp4")
    assert got["video_frames"] == 329 and got["streams"][0]["codec"] == "h264"
    assert [(a["language"], a["default"]) for a in got["audio"]] == [("eng", True), ("jpn", False)]
    assert [s["codec"] for s in got["subtitles"]] == ["mov_text", "mov_text"]
    assert got["subtitles"][0]["default"] and got["subtitles"][0]["language"] == "eng"
    assert [c["title"] for c in got["chapters"]] == ["Opening", "Part A"]
    assert got["title"] == "Alpha Series - Episode 01 (synthetic test clip)"


def test_five_one_layout_is_kept(tmp_path: Path) -> None:
    src = tmp_path / "surround.mkv"
    run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x90:rate=10:duration=1",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=300:sample_rate=48000:duration=1",
            "-filter_complex",
            "[1:a]pan=5.1|FL=c0|FR=c0|FC=c0|LFE=c0|BL=c0|BR=c0[a]",
            "-map",
            "0:v",
            "-map",
            "[a]",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-c:a",
            "aac",
            "-metadata:s:a:0",
            "language=jpn",
            src,
        ],
        what="making a 5.1 test clip",
    )
    dub = tmp_path / "dub.wav"
    sf.write(dub, np.zeros((48000, 6), dtype=np.float32), 48000)
    out = tmp_path / "out.mkv"
    mux(src, dub, 1, [], out, dub_language="en", original_language="ja")
    got = verify_delivery(out)
    assert [(a["layout"], a["language"]) for a in got["audio"]] == [("5.1", "eng"), ("5.1", "jpn")]
    assert got["video_frames"] == 10


@pytest.mark.parametrize("container", ["mkv", "mp4"])
def test_side_surround_dub_is_standard_aac_five_one(tmp_path: Path, container: str) -> None:
    """A 5.1(side) source (FLAC here; Blu-ray and broadcast E-AC-3 alike) gets an AAC dub in AAC's own 5.1.

    ffmpeg 5.1 encoded the side pair with a program config element, which decoders report as "6 channels"
    without positions (the surround test failed so on Debian's ffmpeg and passed on the static build).
    """
    src = tmp_path / "side.mkv"
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10:duration=1", "-f", "lavfi",
                "-i", "sine=frequency=300:sample_rate=48000:duration=1", "-filter_complex",
                "[1:a]pan=5.1(side)|FL=c0|FR=c0|FC=c0|LFE=c0|SL=c0|SR=c0[a]", "-map", "0:v", "-map", "[a]",
                "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "flac", "-metadata:s:a:0", "language=jpn",
                src], what="making a 5.1(side) test clip")
    dub = tmp_path / "dub.wav"
    t = np.arange(48000) / 48000
    signal = np.zeros((48000, 6), dtype=np.float32)
    signal[:, 4] = 0.3 * np.sin(2 * np.pi * 440 * t)  # the left surround only
    sf.write(dub, signal, 48000)
    out = tmp_path / f"out.{container}"
    mux(src, dub, 1, [], out, container=container, dub_language="en", original_language="ja")
    got = verify_delivery(out)
    assert [a["layout"] for a in got["audio"]] == ["5.1", "5.1(side)"]
    with av.open(str(out)) as c:
        stream = c.streams.audio[0]
        names = [ch.name for ch in stream.codec_context.layout.channels]
        audio = np.concatenate([f.to_ndarray() for f in c.decode(stream)], axis=1)
    rms = dict(zip(names, np.sqrt(np.mean(audio**2, axis=1)), strict=True))
    assert rms["BL"] > 0.1 and max(v for k, v in rms.items() if k != "BL") < 0.01, rms


def test_failed_mux_keeps_the_old_file(work: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "episode.mkv"
    out.write_bytes(b"previous delivery")
    bad = tmp_path / "bad.srt"
    bad.write_text("this is not a subtitle file at all\n")
    with pytest.raises((EngineError, MediaError)):
        mux(work["source"], work["dub"], 1, [(bad, "en", "English")], out)
    assert out.read_bytes() == b"previous delivery"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.srt", "episode.mkv"]


def test_bad_arguments(work: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        mux(work["source"], work["dub"], 1, [], tmp_path / "x.avi", container="avi")
    with pytest.raises(MediaError, match="not an audio stream"):
        mux(work["source"], work["dub"], 0, [], tmp_path / "x.mkv")
    assert iso639_2("en") == "eng" and iso639_2("jpn") == "jpn" and iso639_2(None) == "und"


def test_mp4_source_with_mov_text_into_mkv(work: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "narration.mp4"
    run_ffmpeg(
        [
            "-i",
            MEDIA / "en_monologue.mp4",
            "-i",
            work["srt"],
            "-map",
            "0",
            "-map",
            "1",
            "-c",
            "copy",
            "-c:s",
            "mov_text",
            "-metadata:s:s:0",
            "language=eng",
            src,
        ],
        what="adding mov_text subtitles",
    )
    dub = tmp_path / "dub.wav"
    sf.write(dub, 0.01 * np.ones((44100 * 10, 1), dtype=np.float32), 44100)
    out = tmp_path / "narration.mkv"
    mux(src, dub, 1, [(work["srt"], "de", "Deutsch")], out, dub_language="de", original_language="en")
    got = verify_delivery(out)
    assert [(a["language"], a["layout"], a["sample_rate"]) for a in got["audio"]] == [
        ("ger", "mono", 44100),
        ("eng", "mono", 44100),
    ]
    assert [(s["codec"], s["language"]) for s in got["subtitles"]] == [("subrip", "ger"), ("subrip", "eng")]
    assert got["video_frames"] == verify_delivery(MEDIA / "en_monologue.mp4")["video_frames"] == 262
