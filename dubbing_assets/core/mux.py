"""Muxing the deliverable: original video untouched, the dub first, the original kept.

`mux()` writes one file with

- the source's video stream(s), copied (never re-encoded);
- the dub (AAC) as the first and DEFAULT audio track, tagged with the target
  language, in the source audio's channel layout (a side surround pair is
  carried in AAC's own surround pair, see `_dub_filters`);
- the original audio track, copied, tagged with its language, not default;
- subtitle tracks: the target-language subtitles given (from the
  translation) first, then the source's own subtitle streams, copied (MKV)
  or converted to `mov_text` (MP4; bitmap subtitles cannot go into MP4 and
  are reported as skipped);
- the source's chapters, container title and (MKV) attachments such as fonts.

The write is atomic: ffmpeg writes a temp file in the target folder, which is
fsynced and renamed over `out_path` only when ffmpeg succeeded.

Timing. Nothing the source holds moves: the mux runs with `-copyts`, so the
video, the original audio and the source's subtitles keep their timestamps
(Matroska is written with `-avoid_negative_ts disabled`, so a primed track's
first packet keeps its slightly negative timestamp on ffmpeg 5.1 too instead
of every stream being shifted by the priming). The dub WAV's sample 0 is the original track's first decoded
sample, so the dub is placed where ffmpeg decodes that sample (`P`), and it
is given the original's *priming handling*, measured with the ffmpeg that
muxes (builds differ: ffmpeg 5.1 plays Matroska's CodecDelay priming, newer
builds skip it):

- the original's first packet is decoded with its priming skipped (an MP4
  edit list, a Matroska CodecDelay the build honours): the dub is encoded in
  the mux, so it carries the same 1024-sample priming and skip, and both
  tracks' first packets sit at `P - 1024 samples`;
- the original's priming, if any, is played (a Matroska AAC from an older
  muxer, PCM, FLAC): the dub is encoded first to raw ADTS (which carries no
  skip) with its first 1024 samples dropped, so its own priming takes their
  place, then copied with its first packet at the original's first packet.

Either way both tracks start at the same timestamp and the dub's samples
land where the WAV put them, on every ffmpeg build and in MKV and MP4.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dubbing_assets.core.ffmpeg import ffmpeg_exe, run_ffmpeg
from dubbing_assets.core.fsutil import atomic_path
from dubbing_assets.core.languages import iso639_2, language_name
from dubbing_assets.core.media import TEXT_SUBTITLE_CODECS
from dubbing_assets.core.media import probe as media_probe
from dubbing_assets.errors import ConfigError, MediaError

#: Audio codecs an MP4 can carry as they are; others are re-encoded (AAC) for MP4 delivery.
MP4_AUDIO_CODECS = {"aac", "mp3", "ac3", "eac3", "alac", "flac", "opus"}
_CONTAINERS = {"mkv": "matroska", "mp4": "mp4"}
#: Layouts AAC has no channel configuration for, and the configuration their channels go to. ffmpeg 5.1
#: signals 5.1(side) with a program config element, which decoders then report as "6 channels" with no
#: positions; AAC's configurations 5 and 6 name their pair "left/right surround" (ffmpeg's BL/BR), which is
#: where a side pair belongs.
_AAC_LAYOUT = {"5.1(side)": "5.1", "5.0(side)": "5.0"}
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


#: Priming samples ffmpeg's AAC encoder puts before the signal (its `initial_padding`).
AAC_PRIMING = 1024


@dataclass(frozen=True)
class AudioTiming:
    """Where one audio stream starts, as the ffmpeg that muxes reads it (seconds, source timestamps)."""

    first_packet_s: float
    first_sample_s: float
    sample_rate: int

    @property
    def skipped_s(self) -> float:
        """Priming the decoder drops before the first sample (0 when the priming is played)."""
        return max(0.0, self.first_sample_s - self.first_packet_s)


def _ffmpeg_stderr(args: Sequence[str | Path]) -> str:
    import subprocess

    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *[str(a) for a in args]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-4:])
        raise MediaError(f"ffmpeg could not read the start of the audio stream ({tail}); check the file.")
    return proc.stdout + proc.stderr


def audio_timing(path: Path | str, stream_index: int) -> AudioTiming:
    """First packet and first decoded sample of stream `stream_index`, with `-copyts`, by `ffmpeg_exe()`.

    Measured with the ffmpeg binary itself (not PyAV's libraries), because
    builds disagree on whether some priming (Matroska CodecDelay) is skipped.
    """
    src = Path(path)
    packets = _ffmpeg_stderr(["-v", "error", "-copyts", "-i", src, "-map", f"0:{stream_index}", "-c", "copy",
                              "-frames:a", "1", "-f", "framecrc", "-"])
    tb = re.search(r"^#tb \d+: (\d+)/(\d+)", packets, re.M)
    row = re.search(r"^\d+,\s*(-?\d+),\s*(-?\d+),", packets, re.M)
    decoded = _ffmpeg_stderr(["-copyts", "-i", src, "-map", f"0:{stream_index}", "-af", "ashowinfo",
                              "-frames:a", "1", "-f", "null", "-"])
    line = next((ln for ln in decoded.splitlines() if "showinfo" in ln and "pts_time:" in ln), "")
    shown = re.search(r"pts_time:\s*(-?[\d.]+(?:e-?\d+)?)", line)
    rate = re.search(r"\brate:\s*(\d+)", line)
    if not (tb and row and shown):
        raise MediaError(f"Could not find the first audio packet of stream {stream_index} in {src.name}.")
    first_packet = int(row.group(2)) * int(tb.group(1)) / int(tb.group(2))
    return AudioTiming(first_packet_s=first_packet, first_sample_s=float(shown.group(1)),
                       sample_rate=int(rate.group(1)) if rate else 0)


def _dub_filters(layout: str | None) -> list[str]:
    """The filters that give the AAC dub the source's layout, in a channel configuration AAC itself has.

    The same layout name on every ffmpeg build: without the remap, ffmpeg 5.1 and newer builds encode
    5.1(side) differently, and what players and ffprobe then report differs too.
    """
    if not layout:
        return []
    filters = [f"aformat=channel_layouts={layout}"]
    target = _AAC_LAYOUT.get(layout)
    if target:
        from dubbing_assets.core.audio_io import LAYOUTS

        pairs = zip(LAYOUTS[layout], LAYOUTS[target], strict=True)
        filters.append(f"channelmap=map={'|'.join(f'{a}-{b}' for a, b in pairs)}:channel_layout={target}")
    return filters


def _encode_adts(wav: Path, out: Path, *, drop_samples: int, layout: str | None, bitrate: str) -> None:
    """AAC in raw ADTS (no timestamps, no skip), `drop_samples` cut from the start to make room for the priming."""
    filters = [f"atrim=start_sample={int(drop_samples)}", "asetpts=PTS-STARTPTS", *_dub_filters(layout)]
    run_ffmpeg(["-i", wav, "-map", "0:a:0", "-af", ",".join(filters), "-c:a", "aac", "-b:a", bitrate,
                "-f", "adts", out], what=f"encoding the dub {wav.name}")


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
    out_path = Path(out_path)
    picture = Path(video_from) if video_from is not None else None
    plan = _plan(Path(source_video), original_audio_stream_index, container, keep_source_subtitles)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    maps = _maps(plan, len(subtitles), picture)
    meta = _metadata(plan, subtitles, dub_language=dub_language, original_language=original_language,
                     dub_title=dub_title, original_title=original_title, default_subtitles=default_subtitles,
                     title=title)
    with tempfile.TemporaryDirectory(prefix=f".{out_path.stem}.mux-", dir=out_path.parent) as work, \
            atomic_path(out_path, f".{container}") as tmp:
        args = _inputs(plan, Path(dub_audio_wav), subtitles, picture, audio_bitrate, Path(work))
        run_ffmpeg([*args, *maps, *_codecs(plan, subtitles, audio_bitrate), *meta, *_format(plan), tmp],
                   what=f"muxing {out_path.name}")
    total = len(plan.videos) + 1 + (1 if plan.original is not None else 0) + len(subtitles) + len(plan.source_subs)
    return MuxResult(path=str(out_path), container=container, streams=total, skipped=plan.skipped)


@dataclass
class _Plan:
    """What one delivery is made of, decided once: the streams it takes and how the dub is timed."""

    source: Path
    container: str
    probe: dict[str, Any]
    videos: list[dict[str, Any]]
    original: dict[str, Any] | None
    timing: Any  # AudioTiming of the anchor audio stream, or None
    reencode_original: bool
    pre_encode: bool
    dub_start: float
    layout: str | None
    source_subs: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _plan(source_video: Path, original_index: int | None, container: str, keep_source_subtitles: bool) -> _Plan:
    if container not in _CONTAINERS:
        raise ConfigError(f"Container {container!r} is not supported; use 'mkv' or 'mp4'.")
    probe = media_probe(source_video)
    streams = probe["streams"]
    videos = [s for s in streams if s["type"] == "video"]
    if not videos:
        raise MediaError(f"{source_video.name} has no video stream to deliver.")
    original = None
    if original_index is not None:
        matches = [s for s in streams if s["index"] == original_index]
        if not matches or matches[0]["type"] != "audio":
            raise MediaError(f"Stream {original_index} of {source_video.name} is not an audio stream.")
        original = matches[0]
    # where the dub goes and how it is primed (see "Timing" in the module docstring)
    anchor = original or next((s for s in streams if s["type"] == "audio"), None)
    timing = audio_timing(source_video, anchor["index"]) if anchor is not None else None
    reencode = original is not None and container == "mp4" and original["codec"] not in MP4_AUDIO_CODECS
    primed_like_original = timing is not None and timing.skipped_s < 0.5 / max(1, timing.sample_rate)
    plan = _Plan(source=source_video, container=container, probe=probe, videos=videos, original=original,
                 timing=timing, reencode_original=reencode, pre_encode=primed_like_original and not reencode,
                 dub_start=timing.first_sample_s if timing is not None else 0.0,
                 layout=original.get("channel_layout") if original is not None else None)
    for s in streams if keep_source_subtitles else []:
        if s["type"] != "subtitle":
            continue
        if container == "mp4" and s["codec"] not in TEXT_SUBTITLE_CODECS:
            plan.skipped.append(f"subtitle stream {s['index']} ({s['codec']}): bitmap subtitles cannot go into MP4")
            continue
        plan.source_subs.append(s)
    if reencode:
        plan.skipped.append(f"audio stream {original['index']} ({original['codec']}) re-encoded to AAC for MP4")
    return plan


def _inputs(plan: _Plan, dub_audio_wav: Path, subtitles: Sequence[tuple[Path | str, str, str]],
            video_from: Path | None, audio_bitrate: str, work: Path) -> list[str | Path]:
    """Input 0 the source, 1 the dub, 2.. the new subtitle tracks, last the re-rendered picture if any."""
    args: list[str | Path] = ["-copyts", "-i", plan.source]
    if plan.pre_encode:
        dub_input = work / "dub.aac"
        _encode_adts(dub_audio_wav, dub_input, drop_samples=AAC_PRIMING, layout=plan.layout, bitrate=audio_bitrate)
        args += ["-itsoffset", f"{plan.timing.first_packet_s:.6f}", "-i", dub_input]
    else:
        args += ["-itsoffset", f"{plan.dub_start:.6f}", "-i", dub_audio_wav]
    for sub_path, _lang, _title in subtitles:  # on the dub's timeline: t = 0 is the WAV's sample 0
        args += ["-itsoffset", f"{plan.dub_start:.6f}", "-i", Path(sub_path)]
    if video_from is not None:
        # the re-rendered picture starts where the source's picture starts
        shift = _video_start(plan.source) - _video_start(video_from)
        args += ["-itsoffset", f"{shift:.6f}", "-i", video_from]
    return args


def _maps(plan: _Plan, n_subtitles: int, video_from: Path | None) -> list[str]:
    maps: list[str] = []
    if video_from is not None:
        plan.videos = [s for s in media_probe(video_from)["streams"] if s["type"] == "video"][:1]
        if not plan.videos:
            raise MediaError(f"{video_from.name} has no video stream to deliver.")
        maps += ["-map", f"{n_subtitles + 2}:{plan.videos[0]['index']}"]
    else:
        for v in plan.videos:
            maps += ["-map", f"0:{v['index']}"]
    maps += ["-map", "1:a:0"]
    if plan.original is not None:
        maps += ["-map", f"0:{plan.original['index']}"]
    for n in range(n_subtitles):
        maps += ["-map", f"{n + 2}:s:0"]
    for s in plan.source_subs:
        maps += ["-map", f"0:{s['index']}"]
    if plan.container == "mkv":
        maps += ["-map", "0:t?"]  # attachments (ASS fonts)
    return maps


def _codecs(plan: _Plan, subtitles: Sequence[tuple[Path | str, str, str]], audio_bitrate: str) -> list[str]:
    codecs: list[str] = ["-c:v", "copy"]
    codecs += ["-c:a:0", "copy"] if plan.pre_encode else ["-c:a:0", "aac", "-b:a:0", audio_bitrate]
    if plan.original is not None:
        codecs += ["-c:a:1", "aac", "-b:a:1", audio_bitrate] if plan.reencode_original else ["-c:a:1", "copy"]
    sub_codecs = [_subtitle_codec(Path(p).suffix.lstrip(".").lower(), plan.container) for p, _l, _t in subtitles]
    sub_codecs += [_subtitle_codec(str(s["codec"]), plan.container) for s in plan.source_subs]
    for n, codec in enumerate(sub_codecs):
        codecs += [f"-c:s:{n}", codec]
    if plan.container == "mkv":
        codecs += ["-c:t", "copy"]
    if plan.layout and not plan.pre_encode:
        codecs += ["-filter:a:0", ",".join(_dub_filters(plan.layout))]
    return codecs


def _original_tags(original: dict[str, Any], orig_lang: str, original_title: str | None) -> list[str]:
    orig_tag = original.get("language") or orig_lang
    if orig_tag == "und":
        orig_tag = orig_lang
    orig_title = (original_title or original.get("title")
                  or language_name(orig_tag) + " (original)")
    return ["-metadata:s:a:1", f"language={orig_tag}", "-disposition:a:1", "0",
            "-metadata:s:a:1", f"title={orig_title}"]


def _metadata(plan: _Plan, subtitles: Sequence[tuple[Path | str, str, str]], *, dub_language: str,
              original_language: str, dub_title: str | None, original_title: str | None,
              default_subtitles: bool, title: str | None) -> list[str]:
    dub_lang = iso639_2(dub_language)
    meta: list[str] = [
        "-map_metadata", "0", "-map_chapters", "0",
        "-metadata:s:a:0", f"language={dub_lang}",
        "-metadata:s:a:0", f"title={dub_title or language_name(dub_lang) + ' (dub)'}",
        "-disposition:a:0", "default", "-disposition:v:0", "default",
    ]
    if plan.original is not None:
        meta += _original_tags(plan.original, iso639_2(original_language), original_title)
    for n, (_path, lang, sub_title) in enumerate(subtitles):
        meta += [f"-metadata:s:s:{n}", f"language={iso639_2(lang)}", f"-metadata:s:s:{n}", f"title={sub_title}",
                 f"-disposition:s:{n}", "default" if n == 0 and default_subtitles else "0"]
    for n, s in enumerate(plan.source_subs, start=len(subtitles)):
        meta += [f"-metadata:s:s:{n}", f"language={s.get('language') or 'und'}",
                 f"-disposition:s:{n}", "0"]
        if s.get("title"):
            meta += [f"-metadata:s:s:{n}", f"title={s['title']}"]
    if plan.container == "mp4":  # MP4 players show a track's handler name as its title
        meta = _mp4_titles(meta)
    if title is not None:
        meta += ["-metadata", f"title={title}"]
    elif plan.probe.get("title"):
        meta += ["-metadata", f"title={plan.probe['title']}"]
    return meta


def _format(plan: _Plan) -> list[str]:
    fmt = ["-f", _CONTAINERS[plan.container]]
    if plan.container == "mp4":
        fmt += ["-movflags", "+faststart"]
        original = plan.original
        if original is not None and not plan.reencode_original and original["codec"] in {"flac", "opus"}:
            fmt += ["-strict", "experimental"]  # FLAC/Opus in MP4 are "experimental" before ffmpeg 6
    else:
        # Matroska stores a slightly negative first timestamp (a primed AAC's first packet) as it is;
        # ffmpeg 5.1 would otherwise shift every stream, the video included, by the priming.
        fmt += ["-avoid_negative_ts", "disabled"]
    return fmt


def _video_start(path: Path) -> float:
    """Earliest presentation time of the first video stream (seconds; 0 when unknown)."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0] if c.streams.video else None
        if v is None or v.start_time is None or v.time_base is None:
            return 0.0
        return float(v.start_time * v.time_base)


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
