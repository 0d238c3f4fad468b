"""Delivery timing on real ffmpeg builds: the dub starts where the original starts, the video never moves.

Sources are built here with the ffmpeg under test (libx264 with and without
B-frames, AAC audio, MKV and MP4, a video that starts 21 ms after the audio,
FLAC and PCM originals without priming, PCM re-encoded for MP4), delivered as MKV and MP4, and read back
with ffprobe (PyAV where there is none): per stream `start_time` and first
packet pts, and the decoded dub against the decoded original sample for
sample. The dub is the original itself, decoded the way the pipeline decodes
it, so the two tracks must line up exactly.

Run under each build: `DUBBING_FFMPEG=/usr/bin/ffmpeg` and the static
imageio-ffmpeg one (marker `both_ffmpeg`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubbing_assets.core.ffmpeg import run_ffmpeg
from dubbing_assets.core.media import extract_audio
from dubbing_assets.core.mux import audio_timing, mux
from dubbing_assets_tests.conftest import MEDIA

pytestmark = [pytest.mark.both_ffmpeg]

#: Tone bursts at irregular times and sweeping pitch: a cross-correlation has one clear peak.
_SIGNAL = "aevalsrc=0.4*sin(2*PI*(300+150*t)*t)*lt(mod(t*t+t\\,0.41)\\,0.07):s=48000:d=3"


def _make_source(path: Path, *, bframes: bool, video_delay_s: float = 0.0, audio_codec: str = "aac") -> Path:
    video = ["-f", "lavfi"]
    if video_delay_s:
        video += ["-itsoffset", f"{video_delay_s}"]
    video += ["-i", "testsrc2=size=160x90:rate=24:duration=3"]
    run_ffmpeg(
        [*video, "-f", "lavfi", "-i", _SIGNAL, "-map", "0:v", "-map", "1:a",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *([] if bframes else ["-bf", "0"]),
         "-c:a", audio_codec, *(["-b:a", "128k"] if audio_codec == "aac" else []),
         "-metadata:s:a:0", "language=jpn", path],
        what=f"making the test source {path.name}",
    )  # fmt: skip
    return path


def _ffprobe(path: Path) -> dict:
    """Per stream: type, start_time, first packet pts (s); from ffprobe, or PyAV where there is none."""
    exe = shutil.which("ffprobe")
    out: dict[int, dict] = {}
    if exe:
        info = json.loads(subprocess.run(
            [exe, "-v", "error", "-show_entries", "stream=index,codec_type,start_time", "-of", "json", str(path)],
            capture_output=True, text=True, check=True).stdout)  # fmt: skip
        for s in info["streams"]:
            out[s["index"]] = {"type": s["codec_type"], "start_time": float(s.get("start_time", "nan"))}
        packets = json.loads(subprocess.run(
            [exe, "-v", "error", "-show_entries", "packet=stream_index,pts_time", "-of", "json", str(path)],
            capture_output=True, text=True, check=True).stdout)["packets"]  # fmt: skip
        for p in packets:
            entry = out[p["stream_index"]]
            if "pts_time" in p:
                entry["first_pts"] = min(entry.get("first_pts", np.inf), float(p["pts_time"]))
        return out
    import av

    with av.open(str(path)) as c:
        for s in c.streams:
            start = float(s.start_time * s.time_base) if s.start_time is not None else float("nan")
            out[s.index] = {"type": s.type, "start_time": start}
        for packet in c.demux():
            if packet.pts is not None:
                entry = out[packet.stream.index]
                entry["first_pts"] = min(entry.get("first_pts", np.inf), float(packet.pts * packet.time_base))
    return out


def _codec(path: Path, index: int) -> str:
    import av

    with av.open(str(path)) as c:
        return c.streams[index].codec_context.name


def _decoded(path: Path, index: int, tmp: Path) -> tuple[np.ndarray, float, int]:
    """Stream `index` decoded by the ffmpeg under test: mono samples, time of the first one, rate."""
    wav = extract_audio(path, tmp / f"{path.stem}-{index}.wav", stream_index=index)
    audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    return audio.mean(axis=1), audio_timing(path, index).first_sample_s, int(rate)


def _misalignment_ms(a: np.ndarray, a0: float, b: np.ndarray, b0: float, rate: int) -> float:
    """How far b's content sits after a's on the common timeline (ms), by cross-correlation."""
    n = min(a.size, b.size, rate * 2)
    x, y = a[:n], b[:n]
    from scipy.signal import correlate

    corr = correlate(x, y[2400 : n - 2400], mode="valid", method="fft")  # y's middle slid along x
    lag = int(np.argmax(corr)) - 2400
    return ((b0 - a0) * rate - lag) / rate * 1000


def _check(source: Path, out: Path, tmp: Path, source_audio: int = 1) -> None:
    src, got = _ffprobe(source), _ffprobe(out)
    video_src = next(s for s in src.values() if s["type"] == "video")
    video, dub, orig = got[0], got[1], got[2]
    assert (video["type"], dub["type"], orig["type"]) == ("video", "audio", "audio")
    # the dub and the original start together, in start_time and in their first packets
    assert abs(dub["start_time"] - orig["start_time"]) * 1000 <= 1.0, (dub, orig)
    assert abs(dub["first_pts"] - orig["first_pts"]) * 1000 <= 1.0, (dub, orig)
    # the video keeps the source's offset to the original audio: to its packets where they are copied,
    # to its first decoded sample where the container needs it re-encoded (PCM into MP4)
    if _codec(source, source_audio) == _codec(out, 2):
        offset_src = video_src["first_pts"] - src[source_audio]["first_pts"]
        offset_out = video["first_pts"] - orig["first_pts"]
    else:
        offset_src = video_src["first_pts"] - audio_timing(source, source_audio).first_sample_s
        offset_out = video["first_pts"] - audio_timing(out, 2).first_sample_s
    assert abs(offset_out - offset_src) * 1000 <= 1.0, (src, got)
    # and the dub's samples land on the original's samples (the dub is the decoded original)
    a, a0, rate = _decoded(out, 2, tmp)
    b, b0, _ = _decoded(out, 1, tmp)
    assert abs(_misalignment_ms(a, a0, b, b0, rate)) <= 1.0


def _deliver(source: Path, container: str, tmp: Path, audio_index: int = 1) -> Path:
    dub = extract_audio(source, tmp / f"{source.stem}.dub.wav", stream_index=audio_index)
    out = tmp / "out" / f"{source.stem}.{container}"
    mux(source, dub, audio_index, [], out, container=container)
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sync-sources")
    return {
        "mkv-bframes": _make_source(d / "mkv-bframes.mkv", bframes=True),
        "mkv-no-bframes": _make_source(d / "mkv-no-bframes.mkv", bframes=False),
        "mp4-bframes": _make_source(d / "mp4-bframes.mp4", bframes=True),
        "mp4-no-bframes": _make_source(d / "mp4-no-bframes.mp4", bframes=False),
        "mp4-video-late": _make_source(d / "mp4-video-late.mp4", bframes=True, video_delay_s=0.021),
        "mkv-video-late": _make_source(d / "mkv-video-late.mkv", bframes=False, video_delay_s=0.021),
        "mkv-flac": _make_source(d / "mkv-flac.mkv", bframes=True, audio_codec="flac"),
        "mkv-pcm": _make_source(d / "mkv-pcm.mkv", bframes=False, audio_codec="pcm_s16le"),
    }


@pytest.mark.parametrize("container", ["mkv", "mp4"])
@pytest.mark.parametrize(
    "name",
    ["mkv-bframes", "mkv-no-bframes", "mp4-bframes", "mp4-no-bframes", "mp4-video-late", "mkv-video-late",
     "mkv-flac", "mkv-pcm"],
)  # fmt: skip
def test_dub_starts_with_the_original_and_the_video_stays(
    sources: dict[str, Path], name: str, container: str, tmp_path: Path
) -> None:
    source = sources[name]
    _check(source, _deliver(source, container, tmp_path), tmp_path)


@pytest.mark.parametrize("container", ["mkv", "mp4"])
def test_fixture_with_played_priming(container: str, tmp_path: Path) -> None:
    """ja_two_speakers.mkv: Matroska AAC whose priming is played (video at 0.021 s, audio at 0)."""
    source = MEDIA / "ja_two_speakers.mkv"
    _check(source, _deliver(source, container, tmp_path), tmp_path)


def test_delivered_file_delivered_again(sources: dict[str, Path], tmp_path: Path) -> None:
    """A delivery used as a source (a concatenated or re-cut episode): nothing drifts step by step."""
    first = _deliver(sources["mkv-bframes"], "mkv", tmp_path)
    again_dir = tmp_path / "again"
    again_dir.mkdir()
    second = _deliver(first, "mkv", again_dir, audio_index=2)
    _check(first, second, again_dir, source_audio=2)
    a, b = _ffprobe(first), _ffprobe(second)
    assert abs(a[0]["first_pts"] - b[0]["first_pts"]) * 1000 <= 1.0
    assert abs(a[2]["first_pts"] - b[2]["first_pts"]) * 1000 <= 1.0


def test_audio_timing_reads_the_priming(sources: dict[str, Path]) -> None:
    """An MP4's AAC has its priming skipped (edit list); a FLAC original has none."""
    mp4 = audio_timing(sources["mp4-no-bframes"], 1)
    assert mp4.sample_rate == 48000
    assert abs(mp4.skipped_s - 1024 / 48000) < 1e-4 and abs(mp4.first_sample_s) < 1e-4
    flac = audio_timing(sources["mkv-flac"], 1)
    assert flac.skipped_s == 0.0
