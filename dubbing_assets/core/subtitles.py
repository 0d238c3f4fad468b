"""Subtitles in and out: the episode's own subtitles as a script, the translation as subtitles.

Fansub and broadcast ASS files mix dialogue with on-screen signs, song
lyrics and karaoke; only dialogue is spoken, so only dialogue becomes script
lines. An event is left out when its style or effect names a sign/song/
OP/ED/karaoke, when it is positioned or moved (``\\pos``, ``\\move``: signs are
placed on screen, dialogue is not), when it draws (``\\p1``), or when it carries
karaoke timing (``\\k``). Override tags are stripped from what remains, and
the ASS Name/Actor field becomes the line's speaker.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from dubbing_assets.core.ffmpeg import run_ffmpeg
from dubbing_assets.core.media import TEXT_SUBTITLE_CODECS, normalize_language, probe
from dubbing_assets.core.model import Line, Script, Translation
from dubbing_assets.errors import ConfigError, EngineError, MediaError

_NON_DIALOGUE_WORDS = {"sign", "signs", "song", "songs", "op", "ed", "opening", "ending", "karaoke",
                       "kara", "lyrics", "lyric", "insert", "title", "titles", "credit", "credits", "logo",
                       "eyecatch"}
_NON_DIALOGUE_PARTS = ("sign", "song", "karaoke", "lyric")
_POSITION_TAG = re.compile(r"\\(pos|move)\s*\(", re.IGNORECASE)
_KARAOKE_TAG = re.compile(r"\\(k|kf|ko|K)\d", re.IGNORECASE)
_DRAWING_TAG = re.compile(r"\\p[1-9]")
_OVERRIDE = re.compile(r"\{[^}]*\}")
SUBTITLE_FORMATS = ("srt", "ass")


def _pysubs2() -> Any:
    import pysubs2

    return pysubs2


def non_dialogue_reason(style: str, text: str, effect: str = "") -> str | None:
    """Why an event is not spoken dialogue ('style', 'positioned', 'karaoke', 'drawing'), or None."""
    for name in (style or "", effect or ""):
        lowered = name.lower()
        tokens = set(re.split(r"[^a-z0-9]+", lowered))
        if tokens & _NON_DIALOGUE_WORDS or any(part in lowered for part in _NON_DIALOGUE_PARTS):
            return "style" if name == style else "effect"
    if _KARAOKE_TAG.search(text):
        return "karaoke"
    if _DRAWING_TAG.search(text):
        return "drawing"
    if _POSITION_TAG.search(text):
        return "positioned"
    return None


def plain_text(text: str) -> str:
    """Event text without override tags, with ASS line breaks as spaces."""
    text = _OVERRIDE.sub("", text)
    text = text.replace("\\N", " ").replace("\\n", " ").replace("\\h", " ")
    return re.sub(r"\s+", " ", text).strip()


# -- finding subtitles in and next to media ---------------------------------

def subtitle_tracks(media: str | Path) -> list[dict[str, Any]]:
    """Every subtitle source of a media file: embedded streams and sidecar files.

    Each entry has ``kind`` ("embedded"/"sidecar"), ``language`` (ISO 639-1 or
    None), ``title``, ``format``/``codec`` and ``text_based``; embedded ones
    carry ``index`` (absolute stream index), sidecars ``path``.
    """
    info = probe(media)
    tracks: list[dict[str, Any]] = []
    for s in info["subtitles"]["embedded"]:
        tracks.append({"kind": "embedded", "index": s["index"], "codec": s["codec"],
                       "language": s["language"], "title": s["title"], "text_based": s["text_based"]})
    for s in info["subtitles"]["sidecar"]:
        tracks.append({"kind": "sidecar", "path": s["path"], "codec": s["format"], "language": s["language"],
                       "title": None, "text_based": True})
    return tracks


def _track_rank(track: dict[str, Any]) -> tuple[int, int, int]:
    title = (track.get("title") or "").lower()
    signs_only = int(any(w in title for w in ("sign", "song", "forced")))
    return (int(not track["text_based"]), signs_only, 0 if track["kind"] == "embedded" else 1)


def pick_subtitle_track(media: str | Path, language: str | None) -> dict[str, Any] | None:
    """The best text subtitle track in ``language`` (any language when None), or None.

    Prefers full dialogue tracks over "Signs & Songs"/forced ones, and
    embedded over sidecar when both exist.
    """
    want = normalize_language(language) if language else None
    candidates = [t for t in subtitle_tracks(media) if t["text_based"]
                  and (want is None or t["language"] == want)]
    if not candidates and want is not None:
        # Untagged tracks are a fallback only when the file has exactly one.
        untagged = [t for t in subtitle_tracks(media) if t["text_based"] and t["language"] is None]
        candidates = untagged if len(untagged) == 1 else []
    return sorted(candidates, key=_track_rank)[0] if candidates else None


def extract_subtitle_stream(media: str | Path, stream_index: int, out_path: str | Path) -> Path:
    """Write one embedded text subtitle stream to ``out_path`` (.ass or .srt), atomically."""
    media, out = Path(media), Path(out_path)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in SUBTITLE_FORMATS:
        raise ConfigError(f"Subtitles can be extracted to .ass or .srt, not {out.suffix!r}.")
    info = probe(media)
    stream = next((s for s in info["streams"] if s["index"] == stream_index), None)
    if stream is None or stream["type"] != "subtitle":
        raise MediaError(f"{media.name} has no subtitle stream #{stream_index}; see `probe` for its streams.")
    if stream["codec"] not in TEXT_SUBTITLE_CODECS:
        raise MediaError(f"Subtitle stream #{stream_index} of {media.name} is an image format "
                         f"({stream['codec']}); it needs OCR, use the audio (ASR) path instead.")
    codec = "copy" if (stream["codec"] in ("ass", "ssa") and fmt == "ass") or \
        (stream["codec"] in ("subrip", "srt") and fmt == "srt") else ("ass" if fmt == "ass" else "srt")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".{fmt}", dir=out.parent)
    os.close(fd)
    try:
        run_ffmpeg(["-i", media, "-map", f"0:{stream_index}", "-c:s", codec, "-f", fmt, tmp],
                   what=f"extracting subtitle stream #{stream_index} of {media.name}")
        os.replace(tmp, out)
    except EngineError as exc:
        raise MediaError(f"Could not read subtitle stream #{stream_index} of {media.name}: {exc}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def load_subtitles(path_or_sub: Any, *, language: str | None = None,
                   stream_index: int | None = None) -> tuple[Any, dict[str, Any]]:
    """(pysubs2.SSAFile, where it came from) for a subtitle file, a media file or an SSAFile.

    For media, ``stream_index`` picks an embedded stream; otherwise the best
    track in ``language`` (sidecars included) is used.
    """
    pysubs2 = _pysubs2()
    if isinstance(path_or_sub, pysubs2.SSAFile):
        return path_or_sub, {"kind": "object"}
    path = Path(path_or_sub)
    if not path.is_file():
        raise MediaError(f"{path} does not exist; check the subtitle or media path.")
    if path.suffix.lower() in (".srt", ".ass", ".ssa", ".vtt"):
        try:
            return pysubs2.load(str(path), encoding="utf-8"), {"kind": "file", "path": str(path),
                                                               "format": path.suffix.lower().lstrip(".")}
        except Exception as exc:  # noqa: BLE001 - pysubs2 raises several kinds
            raise MediaError(f"{path.name} is not a subtitle file pysubs2 can read ({exc}).") from exc
    if stream_index is not None:
        track: dict[str, Any] | None = {"kind": "embedded", "index": stream_index}
    else:
        track = pick_subtitle_track(path, language)
    if track is None:
        what = f"in language {language!r}" if language else "at all"
        raise MediaError(f"{path.name} carries no text subtitles {what}; use the audio (ASR) path instead.")
    if track["kind"] == "sidecar":
        subs, _ = load_subtitles(track["path"])
        return subs, {**track}
    with tempfile.TemporaryDirectory(prefix="subs-") as tmp:
        extracted = extract_subtitle_stream(path, int(track["index"]), Path(tmp) / "stream.ass")
        return pysubs2.load(str(extracted), encoding="utf-8"), {**track}


def script_from_subtitles(path_or_sub: Any, language: str | None = None, *,
                          stream_index: int | None = None) -> Script:
    """Dialogue lines of a subtitle track as a `Script` (source "subtitles").

    ``language`` picks the track (media input) and labels the script; when
    None the track's own tag is used. Signs, songs and karaoke are left out
    (counted in ``meta['dropped']``); the Actor field is the speaker
    ("unknown" when empty).
    """
    subs, origin = load_subtitles(path_or_sub, language=language, stream_index=stream_index)
    dropped: dict[str, int] = {}
    lines: list[Line] = []
    events = sorted((e for e in subs.events if not e.is_comment), key=lambda e: (e.start, e.end))
    for event in events:
        reason = non_dialogue_reason(event.style, event.text, event.effect)
        text = plain_text(event.text)
        if reason is None and not text:
            reason = "empty"
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        lines.append(Line(index=len(lines), start=event.start / 1000.0, end=event.end / 1000.0,
                          speaker=(event.name or "").strip() or "unknown", text=text,
                          style=event.style))
    lang = normalize_language(language) or origin.get("language") or "und"
    named = bool(lines) and all(line.speaker != "unknown" for line in lines)
    return Script(language=lang, source="subtitles", lines=lines, meta={
        "origin": origin, "events": len(subs.events), "dropped": dropped, "speakers_named": named})


def write_subtitles(translation: Translation, out_path: str | Path, fmt: str | None = None) -> Path:
    """Write the translated lines as .srt or .ass (the format from ``fmt`` or the suffix), atomically.

    ASS keeps each line's speaker in the Name field so an editor can review
    who says what; SRT has no such field.
    """
    pysubs2 = _pysubs2()
    out = Path(out_path)
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in SUBTITLE_FORMATS:
        raise ConfigError(f"Subtitle format {fmt!r} is not supported; use 'srt' or 'ass'.")
    subs = pysubs2.SSAFile()
    subs.info["Title"] = f"{translation.target_language} ({translation.engine})"
    for line in sorted(translation.lines, key=lambda x: x.start):
        text = line.text.replace("\n", "\\N")  # pysubs2 turns \N into a real break in SRT
        subs.events.append(pysubs2.SSAEvent(start=int(round(line.start * 1000)),
                                            end=int(round(line.end * 1000)), text=text,
                                            name=line.speaker if fmt == "ass" else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".{fmt}", dir=out.parent)
    os.close(fd)
    try:
        subs.save(tmp, format_=fmt, encoding="utf-8")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out
