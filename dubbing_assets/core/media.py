"""Media files: probe, fingerprint, validate, extract audio.

Probing goes through PyAV (the bundled ffmpeg has no ffprobe); extraction
goes through the ffmpeg binary (`core.ffmpeg`) so big files stream from disk
to disk and never pass through Python memory. ``validate`` decodes the whole
audio track once, because a truncated upload often still carries a header
that states the full duration: only decoding to the end catches it.
"""

from __future__ import annotations

import hashlib
import re
import stat
from fractions import Fraction
from pathlib import Path
from typing import Any

from dubbing_assets.core.ffmpeg import run_ffmpeg
from dubbing_assets.core.fsutil import atomic_path
from dubbing_assets.core.languages import BY_NAME, TO_ISO639_1, UNDETERMINED
from dubbing_assets.errors import EngineError, MediaError

#: Shortest input worth dubbing.
MIN_DURATION_S = 0.5
SUBTITLE_SUFFIXES = (".srt", ".ass", ".ssa", ".vtt")
#: Text (not bitmap) subtitle codecs ffmpeg can convert to .ass/.srt.
TEXT_SUBTITLE_CODECS = frozenset({"ass", "ssa", "subrip", "srt", "webvtt", "vtt", "mov_text", "text", "microdvd",
                                  "subviewer"})

def normalize_language(code: str | None) -> str | None:
    """ISO 639-1 code for a stream tag ('jpn', 'ja', 'ja-JP', 'Japanese'); None for und/unknown.

    Containers use three-letter tags, engines use two-letter codes; comparing
    through one form keeps "pick the eng subtitles for target en" simple.
    """
    if not code:
        return None
    value = str(code).strip().lower().replace("_", "-")
    if not value or value in UNDETERMINED:
        return None
    if value in BY_NAME:
        return BY_NAME[value]
    base = value.split("-")[0]
    if len(base) == 2:
        return base
    return TO_ISO639_1.get(base, base)


def _duration_tag(value: str | None) -> float | None:
    """Parse Matroska's 'HH:MM:SS.nnnnnnnnn' DURATION tag."""
    if not value:
        return None
    m = re.fullmatch(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)", value.strip())
    if not m:
        return None
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


def _open(path: Path) -> Any:
    import av

    try:
        return av.open(str(path))
    except av.error.InvalidDataError as exc:
        raise MediaError(
            f"{path.name} is not a media file ffmpeg can read (its content is not audio or video, "
            "whatever the file name says); upload the original video file."
        ) from exc
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(f"{path.name} could not be opened as media ({exc}); check that it is a complete "
                         "video file and upload it again.") from exc


def is_plain_file(path: Path) -> bool:
    """A regular file itself, not a link to one (`lstat`): a sidecar that is a symlink could point
    anywhere on the machine (`ep01.srt -> /elsewhere/secret.srt`) and is never read."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def sidecar_subtitles(path: str | Path) -> list[dict[str, Any]]:
    """Subtitle files next to the media with the same base name (`ep.srt`, `ep.en.ass`); regular files
    only, never symlinks or devices."""
    path = Path(path)
    found: list[dict[str, Any]] = []
    if not path.parent.is_dir():
        return found
    stem = path.stem
    for cand in sorted(path.parent.iterdir()):
        if cand == path or cand.suffix.lower() not in SUBTITLE_SUFFIXES or not is_plain_file(cand):
            continue
        rest = cand.name[: -len(cand.suffix)]
        if rest == stem:
            lang = None
        elif rest.startswith(stem + ".") and "." not in rest[len(stem) + 1:]:
            lang = normalize_language(rest[len(stem) + 1:])
        else:
            continue
        found.append({"path": str(cand), "format": cand.suffix.lower().lstrip("."), "language": lang})
    return found


def probe(path: str | Path) -> dict[str, Any]:
    """Describe a media file: container, duration, streams, chapters, subtitles.

    Keys follow ffprobe's vocabulary (codec names are ffmpeg's canonical
    names, e.g. 'ass' rather than the decoder 'ssa') so results compare with
    ffprobe output recorded elsewhere.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path} does not exist or is not a file; check the path.")
    with _open(path) as container:
        streams: list[dict[str, Any]] = []
        for s in container.streams:
            cc = s.codec_context
            codec = None
            if cc is not None:
                codec = getattr(cc.codec, "canonical_name", None) or cc.name
            meta = {str(k).lower(): v for k, v in (s.metadata or {}).items()}
            info: dict[str, Any] = {
                "index": s.index,
                "type": s.type,
                "codec": codec,
                "language": meta.get("language") or None,
                "title": meta.get("title") or None,
            }
            duration = None
            if s.duration is not None and s.time_base is not None:
                duration = float(s.duration * s.time_base)
            duration = duration if duration else _duration_tag(meta.get("duration"))
            info["duration_s"] = round(duration, 6) if duration else None
            if s.type == "audio" and cc is not None:
                info.update(sample_rate=cc.sample_rate, channels=cc.channels,
                            channel_layout=cc.layout.name if cc.layout else None,
                            channel_names=[ch.name for ch in cc.layout.channels] if cc.layout else [],
                            profile=cc.profile)
            elif s.type == "video" and cc is not None:
                rate = s.average_rate or s.guessed_rate or s.base_rate
                info.update(width=cc.width, height=cc.height, pix_fmt=cc.pix_fmt, profile=cc.profile,
                            fps=round(float(rate), 6) if rate else None,
                            frame_rate=f"{Fraction(rate).numerator}/{Fraction(rate).denominator}"
                            if rate else None,
                            frames=s.frames or None)
            elif s.type == "subtitle":
                info["text_based"] = codec in TEXT_SUBTITLE_CODECS
            streams.append(info)
        chapters = []
        try:
            raw_chapters = container.chapters()
        except AttributeError:  # older PyAV
            raw_chapters = []
        for ch in raw_chapters:
            tb = ch.get("time_base") or Fraction(1, 1)
            chapters.append({"start_s": float(ch["start"] * tb), "end_s": float(ch["end"] * tb),
                             "title": (ch.get("metadata") or {}).get("title")})
        cmeta = {str(k).lower(): v for k, v in (container.metadata or {}).items()}
        duration_s = container.duration / 1_000_000 if container.duration else None
        result = {
            "path": str(path),
            "container": container.format.name,
            "duration_s": round(duration_s, 6) if duration_s else None,
            "size": path.stat().st_size,
            "title": cmeta.get("title"),
            "streams": streams,
            "chapters": chapters,
        }
    result["subtitles"] = {
        "embedded": [{"index": s["index"], "codec": s["codec"], "language": normalize_language(s["language"]),
                      "title": s["title"], "text_based": s["text_based"]}
                     for s in streams if s["type"] == "subtitle"],
        "sidecar": sidecar_subtitles(path),
    }
    return result


def fingerprint(path: str | Path, *, chunk_size: int = 1024 * 1024) -> str:
    """SHA-256 of the file's bytes, read in chunks: the same content always gets the same id.

    Content (not name or mtime) decides, so a re-upload of the same episode is
    recognised and a changed file is not mistaken for the old one.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


#: A stream may end this much (plus one of its own packets) before the duration the file states: muxers
#: round, and AAC's priming and padding move the end by a frame. More is a file cut off in transfer.
END_TOLERANCE_S = 0.1


def _decoded_audio_seconds(path: Path, stream_index: int) -> float:
    """Decode one audio stream to the end; return the decoded duration in seconds."""
    return _decoded_audio(path, stream_index)[0]


def _decoded_audio(path: Path, stream_index: int) -> tuple[float, float]:
    """(decoded seconds, the longest frame in seconds) of one audio stream, decoded to the end."""
    import av

    samples = 0
    rate = 0
    longest = 0
    with av.open(str(path)) as container:
        stream = container.streams[stream_index]
        rate = stream.codec_context.sample_rate or 0
        for frame in container.decode(stream):
            samples += frame.samples
            longest = max(longest, frame.samples)
            rate = frame.sample_rate or rate
    return (samples / rate, longest / rate) if rate else (0.0, 0.0)


def _video_end_seconds(path: Path, stream_index: int) -> tuple[float, float] | None:
    """(where the video's last packet ends, one frame) in seconds from the stream's start, read from
    packets alone (no decoding); None when the stream has no timestamps."""
    import av

    end, frame, start = None, 0.0, None
    with av.open(str(path)) as container:
        stream = container.streams[stream_index]
        base = stream.time_base
        rate = stream.average_rate or stream.base_rate
        frame = float(1 / rate) if rate else 0.0
        for packet in container.demux(stream):
            if packet.pts is None or base is None:
                continue
            t0 = float(packet.pts * base)
            start = t0 if start is None else min(start, t0)
            t1 = t0 + float((packet.duration or 0) * base) if packet.duration else t0 + frame
            end = t1 if end is None else max(end, t1)
    if end is None or start is None:
        return None
    return end - start, frame


def validate(path: str | Path) -> dict[str, Any]:
    """Check that a file can be dubbed; return its probe plus what was measured.

    Raises MediaError, each with its own message, for: a missing or zero-byte
    file, a file that is not media, a file without audio, a truncated or
    corrupt audio track, and media shorter than `MIN_DURATION_S`.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path} does not exist or is not a file; check the path.")
    if path.stat().st_size == 0:
        raise MediaError(f"{path.name} is empty (0 bytes); the upload or copy did not finish, send it again.")
    info = probe(path)
    audio = [s for s in info["streams"] if s["type"] == "audio"]
    has_video = any(s["type"] == "video" for s in info["streams"])
    if not audio and not has_video:
        raise MediaError(f"{path.name} holds no audio or video streams; it is not a media file we can dub.")
    if not audio:
        raise MediaError(f"{path.name} has no audio track, so there is nothing to dub; "
                         "use a version of the episode that includes its sound.")
    stream = audio[0]
    import av

    try:
        decoded, packet = _decoded_audio(path, stream["index"])
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path.name} is corrupt: its audio could not be decoded to the end ({exc}); "
                         "re-export or re-download the file.") from exc
    stated = stream.get("duration_s") or info.get("duration_s")
    if stated and decoded < stated - (END_TOLERANCE_S + packet):
        raise MediaError(
            f"{path.name} is truncated: it states {stated:.2f} s but its audio ends after "
            f"{decoded:.2f} s; the file was cut off during upload or copy, send the complete file again."
        )
    for video in (s for s in info["streams"] if s["type"] == "video"):
        video_stated = video.get("duration_s") or info.get("duration_s")
        try:
            reached = _video_end_seconds(path, video["index"])
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path.name} is corrupt: its video could not be read to the end ({exc}); "
                             "re-export or re-download the file.") from exc
        if video_stated and reached is not None and reached[0] < video_stated - (END_TOLERANCE_S + reached[1]):
            raise MediaError(
                f"{path.name} is truncated: it states {video_stated:.2f} s but its video ends after "
                f"{reached[0]:.2f} s; the file was cut off during upload or copy, send the complete file again.")
        break
    duration = max(decoded, 0.0)
    if duration < MIN_DURATION_S:
        raise MediaError(f"{path.name} is only {duration:.2f} s long; episodes shorter than "
                         f"{MIN_DURATION_S} s cannot be dubbed.")
    info["validated"] = {"audio_stream": stream["index"], "audio_decoded_s": round(decoded, 4),
                         "audio_stated_s": stated}
    return info


def extract_audio(path: str | Path, out_wav: str | Path, *, sample_rate: int | None = None,
                  channels: int | None = None, stream_index: int | None = None) -> Path:
    """Decode one audio stream to a WAV file (24-bit PCM), written atomically.

    By default the source's sample rate and channel layout are kept (a 5.1
    track stays 5.1), because separation and the final mix work best on the
    original. ``stream_index`` is the absolute stream index from `probe`;
    None takes the first audio stream.
    """
    path, out = Path(path), Path(out_wav)
    mapping = f"0:{stream_index}" if stream_index is not None else "0:a:0"
    args: list[str | Path] = ["-i", path, "-map", mapping, "-vn", "-sn", "-dn", "-c:a", "pcm_s24le"]
    if sample_rate:
        args += ["-ar", str(int(sample_rate))]
    if channels:
        args += ["-ac", str(int(channels))]
    try:
        with atomic_path(out, ".wav") as tmp:
            run_ffmpeg([*args, "-f", "wav", tmp], what=f"extracting audio from {path.name}")
    except EngineError as exc:
        raise MediaError(f"Could not extract audio from {path.name}: {exc}") from exc
    return out
