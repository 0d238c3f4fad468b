"""Muxing the deliverable: original video untouched, the dub first, the original kept.

`mux()` writes one file with

- the source's video stream(s), copied (never re-encoded);
- the dub (AAC) as the first and DEFAULT audio track, tagged with the target
  language, in the source audio's channel layout;
- the original audio track, copied, tagged with its language, not default;
- subtitle tracks: the target-language subtitles given (from the
  translation) first, then the source's own subtitle streams, copied (MKV)
  or converted to `mov_text` (MP4; bitmap subtitles cannot go into MP4 and
  are reported as skipped);
- the source's chapters, container title and (MKV) attachments such as fonts.

The write is atomic: ffmpeg writes a temp file in the target folder, which is
fsynced and renamed over `out_path` only when ffmpeg succeeded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dubbing_assets.core.ffmpeg import run_ffmpeg
from dubbing_assets.errors import ConfigError, MediaError

TEXT_SUBTITLE_CODECS = {"ass", "ssa", "subrip", "srt", "mov_text", "webvtt", "vtt", "text"}
#: Audio codecs an MP4 can carry as they are; others are re-encoded (AAC) for MP4 delivery.
MP4_AUDIO_CODECS = {"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus"}
_CONTAINERS = {"mkv": "matroska", "mp4": "mp4"}
#: ISO 639-1 -> ISO 639-2/B, the tags Matroska and MP4 players expect.
_ISO639_2 = {
    "en": "eng",
    "ja": "jpn",
    "de": "ger",
    "fr": "fre",
    "es": "spa",
    "it": "ita",
    "pt": "por",
    "ko": "kor",
    "zh": "chi",
    "ru": "rus",
    "nl": "dut",
    "pl": "pol",
    "sv": "swe",
    "ar": "ara",
    "hi": "hin",
    "tr": "tur",
}
_LANGUAGE_NAMES = {
    "eng": "English",
    "jpn": "Japanese",
    "ger": "German",
    "fre": "French",
    "spa": "Spanish",
    "ita": "Italian",
    "por": "Portuguese",
    "kor": "Korean",
    "chi": "Chinese",
    "rus": "Russian",
}


def iso639_2(code: str | None) -> str:
    """'en' -> 'eng'; three-letter codes pass through; empty -> 'und'."""
    code = (code or "").strip().lower()
    if not code:
        return "und"
    return _ISO639_2.get(code, code)


@dataclass
class MuxResult:
    path: str
    container: str
    streams: int
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _subtitle_codec(codec: str, container: str) -> str:
    """ffmpeg subtitle encoder for one output track: copy where the container takes it as it is."""
    if container == "mp4":
        return "mov_text"
    if codec == "mov_text":  # MP4's text subtitles cannot be copied into Matroska
        return "srt"
    return "copy"


def _codec_name(stream: Any) -> str | None:
    """ffmpeg's canonical codec name ('ass', 'subrip'), as ffprobe reports it."""
    cc = stream.codec_context
    if cc is None:
        return None
    return getattr(cc.codec, "canonical_name", None) or cc.name


def _probe(path: Path) -> dict[str, Any]:
    import av

    try:
        with av.open(str(path)) as container:
            streams = []
            for stream in container.streams:
                codec = _codec_name(stream)
                info: dict[str, Any] = {
                    "index": stream.index,
                    "type": stream.type,
                    "codec": codec,
                    "metadata": dict(stream.metadata),
                }
                if stream.type == "audio":
                    info["layout"] = stream.codec_context.layout.name
                    info["channels"] = stream.codec_context.layout.nb_channels
                    info["sample_rate"] = stream.codec_context.sample_rate
                streams.append(info)
            return {"streams": streams, "metadata": dict(container.metadata)}
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path.name} cannot be read as media ({exc}); check the file.") from exc


def _mp4_titles(meta: list[str]) -> list[str]:
    out = list(meta)
    for i in range(len(meta) - 1):
        if meta[i].startswith("-metadata:s:") and meta[i + 1].startswith("title="):
            out += [meta[i], "handler_name=" + meta[i + 1].removeprefix("title=")]
    return out


def mux(
    source_video: Path | str,
    dub_audio_wav: Path | str,
    original_audio_stream_index: int | None,
    subtitles: Sequence[tuple[Path | str, str, str]],
    out_path: Path | str,
    *,
    container: str = "mkv",
    dub_language: str = "eng",
    original_language: str = "jpn",
    dub_title: str | None = None,
    original_title: str | None = None,
    keep_source_subtitles: bool = True,
    default_subtitles: bool = False,
    audio_bitrate: str = "192k",
    title: str | None = None,
    video_from: Path | str | None = None,
) -> MuxResult:
    """Write the delivered video (see the module docstring).

    `original_audio_stream_index` is the absolute stream index (as PyAV and
    ffmpeg's `0:<n>` count) of the original audio in `source_video`, or None
    to leave the original audio out. `subtitles` are `(file, language, title)`
    for the target-language tracks, in order; `default_subtitles` marks the
    first of them default (off by default: the dub is already in that
    language). Languages may be ISO 639-1 or -2. `video_from` takes the video
    stream(s) from another file (the lip-synced render) while audio, subtitles,
    chapters and title still come from `source_video`.
    """
    source_video, dub_audio_wav, out_path = Path(source_video), Path(dub_audio_wav), Path(out_path)
    if container not in _CONTAINERS:
        raise ConfigError(f"Container {container!r} is not supported; use 'mkv' or 'mp4'.")
    probe = _probe(source_video)
    streams = probe["streams"]
    videos = [s for s in streams if s["type"] == "video"]
    if not videos:
        raise MediaError(f"{source_video.name} has no video stream to deliver.")
    original = None
    if original_audio_stream_index is not None:
        matches = [s for s in streams if s["index"] == original_audio_stream_index]
        if not matches or matches[0]["type"] != "audio":
            raise MediaError(
                f"Stream {original_audio_stream_index} of {source_video.name} is not an audio stream."
            )
        original = matches[0]
    dub_lang, orig_lang = iso639_2(dub_language), iso639_2(original_language)
    skipped: list[str] = []

    args: list[str | Path] = ["-i", source_video, "-i", dub_audio_wav]
    for sub_path, _lang, _title in subtitles:
        args += ["-i", Path(sub_path)]
    maps: list[str] = []
    if video_from is not None:
        args += ["-i", Path(video_from)]
        videos = [s for s in _probe(Path(video_from))["streams"] if s["type"] == "video"][:1]
        if not videos:
            raise MediaError(f"{Path(video_from).name} has no video stream to deliver.")
        maps += ["-map", f"{len(subtitles) + 2}:{videos[0]['index']}"]
    else:
        for v in videos:
            maps += ["-map", f"0:{v['index']}"]
    maps += ["-map", "1:a:0"]
    if original is not None:
        maps += ["-map", f"0:{original['index']}"]
    for n in range(len(subtitles)):
        maps += ["-map", f"{n + 2}:s:0"]
    source_subs = []
    if keep_source_subtitles:
        for s in streams:
            if s["type"] != "subtitle":
                continue
            if container == "mp4" and s["codec"] not in TEXT_SUBTITLE_CODECS:
                skipped.append(
                    f"subtitle stream {s['index']} ({s['codec']}): bitmap subtitles cannot go into MP4"
                )
                continue
            source_subs.append(s)
            maps += ["-map", f"0:{s['index']}"]
    if container == "mkv":
        maps += ["-map", "0:t?"]  # attachments (ASS fonts)

    codecs: list[str] = ["-c:v", "copy", "-c:a:0", "aac", "-b:a:0", audio_bitrate]
    if original is not None:
        if container == "mp4" and original["codec"] not in MP4_AUDIO_CODECS:
            codecs += ["-c:a:1", "aac", "-b:a:1", audio_bitrate]
            skipped.append(
                f"audio stream {original['index']} ({original['codec']}) re-encoded to AAC for MP4"
            )
        else:
            codecs += ["-c:a:1", "copy"]
    sub_codecs = [_subtitle_codec(Path(p).suffix.lstrip(".").lower(), container) for p, _l, _t in subtitles]
    sub_codecs += [_subtitle_codec(str(s["codec"]), container) for s in source_subs]
    for n, codec in enumerate(sub_codecs):
        codecs += [f"-c:s:{n}", codec]
    if container == "mkv":
        codecs += ["-c:t", "copy"]
    layout = None
    if original is not None:
        layout = original.get("layout")
    if layout:
        codecs += ["-filter:a:0", f"aformat=channel_layouts={layout}"]

    meta: list[str] = [
        "-map_metadata",
        "0",
        "-map_chapters",
        "0",
        "-metadata:s:a:0",
        f"language={dub_lang}",
        "-metadata:s:a:0",
        f"title={dub_title or _LANGUAGE_NAMES.get(dub_lang, dub_lang) + ' (dub)'}",
        "-disposition:a:0",
        "default",
        "-disposition:v:0",
        "default",
    ]
    if original is not None:
        orig_tag = original["metadata"].get("language") or orig_lang
        if orig_tag == "und":
            orig_tag = orig_lang
        meta += ["-metadata:s:a:1", f"language={orig_tag}", "-disposition:a:1", "0"]
        orig_title = (
            original_title
            or original["metadata"].get("title")
            or _LANGUAGE_NAMES.get(orig_tag, orig_tag) + " (original)"
        )
        meta += ["-metadata:s:a:1", f"title={orig_title}"]
    for n, (_path, lang, sub_title) in enumerate(subtitles):
        meta += [
            f"-metadata:s:s:{n}",
            f"language={iso639_2(lang)}",
            f"-metadata:s:s:{n}",
            f"title={sub_title}",
            f"-disposition:s:{n}",
            "default" if n == 0 and default_subtitles else "0",
        ]
    for n, s in enumerate(source_subs, start=len(subtitles)):
        lang = s["metadata"].get("language") or "und"
        meta += [f"-metadata:s:s:{n}", f"language={lang}", f"-disposition:s:{n}", "0"]
        if s["metadata"].get("title"):
            meta += [f"-metadata:s:s:{n}", f"title={s['metadata']['title']}"]
    if container == "mp4":  # MP4 players show a track's handler name as its title
        meta = _mp4_titles(meta)
    if title is not None:
        meta += ["-metadata", f"title={title}"]
    elif probe["metadata"].get("title"):
        meta += ["-metadata", f"title={probe['metadata']['title']}"]

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.stem}.{os.getpid()}.tmp.{container}")
    fmt = ["-f", _CONTAINERS[container]]
    if container == "mp4":
        fmt += ["-movflags", "+faststart"]
    try:
        run_ffmpeg([*args, *maps, *codecs, *meta, *fmt, tmp], what=f"muxing {out_path.name}")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    total = len(videos) + 1 + (1 if original is not None else 0) + len(subtitles) + len(source_subs)
    return MuxResult(path=str(out_path), container=container, streams=total, skipped=skipped)


def verify_delivery(path: Path | str) -> dict[str, Any]:
    """What a player will see: streams (codec, language, title, default flag), chapters, title, frames.

    The video frame count comes from demuxing every video packet (no decoding).
    """
    import av

    path = Path(path)
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path.name} cannot be read as media ({exc}).") from exc
    with container:
        streams: list[dict[str, Any]] = []
        for stream in container.streams:
            codec = _codec_name(stream)
            flags = stream.disposition
            info: dict[str, Any] = {
                "index": stream.index,
                "type": stream.type,
                "codec": codec,
                "language": stream.metadata.get("language"),
                "title": stream.metadata.get("title") or stream.metadata.get("handler_name"),
                "default": bool(flags & av.stream.Disposition.default),
                "start_time_s": float(stream.start_time * stream.time_base)
                if stream.start_time is not None and stream.time_base is not None
                else None,
            }
            if stream.type == "audio":
                info.update(
                    channels=stream.codec_context.layout.nb_channels,
                    layout=stream.codec_context.layout.name,
                    sample_rate=stream.codec_context.sample_rate,
                )
            elif stream.type == "video":
                info.update(
                    width=stream.codec_context.width,
                    height=stream.codec_context.height,
                    frame_rate=str(stream.average_rate) if stream.average_rate else None,
                    pix_fmt=stream.codec_context.pix_fmt,
                )
            streams.append(info)
        chapters = [
            {
                "start_s": float(c["start"] * c["time_base"]),
                "end_s": float(c["end"] * c["time_base"]),
                "title": c["metadata"].get("title"),
            }
            for c in container.chapters()
        ]
        title = container.metadata.get("title")
        duration = container.duration / 1_000_000 if container.duration else None
        fmt = container.format.name
        video = [s for s in container.streams if s.type == "video"]
        frames = 0
        if video:
            for packet in container.demux(video[0]):
                if packet.size:
                    frames += 1
    return {
        "path": str(path),
        "format": fmt,
        "title": title,
        "duration_s": duration,
        "chapters": chapters,
        "streams": streams,
        "video_frames": frames,
        "audio": [s for s in streams if s["type"] == "audio"],
        "subtitles": [s for s in streams if s["type"] == "subtitle"],
    }
