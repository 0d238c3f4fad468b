"""Stages 1-5: understanding an episode (media, stems, script, speakers, translation)."""

from __future__ import annotations

from typing import Any

from dubbing_assets.core.contracts import (
    Cast,
    EpisodeRecord,
    MediaHandle,
    Script,
    SourceMedia,
    Speakers,
    Stems,
    SubtitleTrack,
    Translation,
)
from dubbing_assets.core.runtime import Runtime
from dubbing_assets.errors import ModelNotFoundError, StageError


def episode_record(rt: Runtime, key: str) -> EpisodeRecord:
    """The sensor's record for this episode: its file and the options it was submitted with."""
    from dubbing_assets.core.inbox import read_episode_record

    record = read_episode_record(rt.settings.episodes, key)
    if record is None:
        raise StageError(
            f"No episode record for {key}: episodes enter through the inbox sensor "
            f"(drop the file into the inbox or run `dubbing submit FILE`), not by adding a partition by hand.")
    return record


def source_media(rt: Runtime, key: str) -> SourceMedia:
    """The episode file, probed, validated and fingerprinted; its text subtitles extracted."""
    from dubbing_assets.core import media, subtitles
    from dubbing_assets.core.inbox import source_file

    record = episode_record(rt, key)
    path = source_file(rt.settings.inbox, record)
    rt.log.info(f"validating {record.source}")
    info = media.validate(path)
    fp = media.fingerprint(path)
    if record.fingerprint and fp != record.fingerprint:
        # A new version replaced the file after this run was queued: dubbing it here would give it this
        # run's options and run key; the sensor queues the new version as its own run.
        raise StageError(
            f"{record.source} changed after this run was queued (sha256 {fp[:16]}, queued "
            f"{record.fingerprint[:16]}); the inbox sensor queues the new version as its own run.")
    tracks = tuple(SubtitleTrack.from_dict({**t, "file": MediaHandle(path=t["file"], kind="subtitles")})
                   for t in subtitles.catalog_subtitles(path, rt.workdir("source_media")))
    for t in tracks:
        if t.language is None:
            rt.log.warning(f"subtitle {t.name}: language undetermined ({t.language_note})")
    audio = [s for s in info["streams"] if s["type"] == "audio"]
    return SourceMedia(media=MediaHandle(path=str(path), kind="video"), probe=info, fingerprint=fp,
                       record=record, subtitles=tracks, audio_stream=info["validated"]["audio_stream"],
                       audio_language=audio[0].get("language") if audio else None,
                       has_video=any(s["type"] == "video" for s in info["streams"]))


def audio_stems(rt: Runtime, src: SourceMedia) -> Stems:
    """Dialogue and background at the source's rate and layout: signal processing in low mode, Demucs in
    high mode where it is installed (else signal processing, and the stems say why)."""
    from dubbing_assets.core import media, stems

    work = rt.workdir("audio_stems")
    original = media.extract_audio(src.media.path, work / "original.wav", stream_index=src.audio_stream)
    separator: Any = None
    note = ""
    if src.record.high:
        try:
            separator = stems.get_separator("demucs", allow_download=rt.allow_download)
            dialogue, background = separator.separate(original, work)
        except ModelNotFoundError as exc:
            note = f"Demucs unavailable, signal separation used: {exc}"
            rt.log.warning(note)
            separator = None
    if separator is None:
        separator = stems.get_separator("signal")
        dialogue, background = separator.separate(original, work)
    return Stems(original=MediaHandle(str(original), "audio"), dialogue=MediaHandle(str(dialogue), "audio"),
                 background=MediaHandle(str(background), "audio"),
                 info=dict(getattr(separator, "last_info", {}) or {}),
                 separator=getattr(separator, "name", type(separator).__name__), note=note)


def subtitle_roles(src: SourceMedia, target: str) -> dict[str, Any]:
    """Which of the episode's subtitle tracks is the script and which the translation (see core.subtitles)."""
    from dubbing_assets.core.subtitles import subtitle_roles as roles

    return roles([t.as_mapping() for t in src.subtitles], source_language=src.audio_language,
                 target_language=target)


def script(rt: Runtime, src: SourceMedia, stems: Stems) -> Script:
    """Timed lines: the episode's own subtitles (Actor = speaker), or faster-whisper ASR split at changes of
    voice. `meta["script_from"]` says which and why."""
    from dubbing_assets.core.media import normalize_language
    from dubbing_assets.core.subtitles import describe_track

    settings = rt.settings
    roles = subtitle_roles(src, src.record.target(settings.target_lang))
    track = roles["script"] if settings.script_source == "subtitles-first" else None
    if track is not None:
        from dubbing_assets.core.subtitles import script_from_subtitles

        result = script_from_subtitles(track["file"].path, normalize_language(track.get("language")))
        result.meta["subtitle"] = describe_track(track) | {"why": roles["reasons"]["script"]}
        result.meta["script_from"] = roles["reasons"].get("script", "")
        rt.log.info(f"script from subtitles: {roles['reasons']['script']}")
    else:
        from dubbing_assets.core.diarize import split_turns

        result = rt.transcriber(settings.asr_model).transcribe(
            stems.dialogue.path, language=normalize_language(src.audio_language))
        rt.log.info(f"script from ASR ({result.meta.get('model')}, language {result.language})")
        result, splits = split_turns(result, stems.dialogue.path)  # one speaker per line
        if splits:
            rt.log.info(f"split {len(splits)} ASR lines at a change of voice: "
                        + ", ".join(f"line {s['line']} at {s['at_s']:.2f}s" for s in splits))
        result.meta["turn_splits"] = splits
        result.meta["script_from"] = \
            f"ASR ({'DUBBING_SCRIPT_SOURCE=asr' if settings.script_source == 'asr' else 'no text subtitles'})"
    if not result.lines:
        raise StageError("No dialogue found: the subtitles hold no dialogue lines and ASR heard no "
                         "speech. Check the audio track, or supply subtitles.")
    return result


def known_characters(rt: Runtime, series: str) -> list[tuple[str, list[float]]]:
    """The series' characters whose voice its character store knows (id, d-vector); none for a new series.
    A store that cannot be read here guides nothing: the cast stage reports it."""
    from dubbing_assets.core.cast import known_voices
    from dubbing_assets.core.characters import CharacterStore
    from dubbing_assets.core.safepath import check_slug, safe_join
    from dubbing_assets.errors import DubbingError

    path = safe_join(rt.settings.storage, "characters", f"{check_slug(series, 'series')}.chars")
    if not path.exists():
        return []
    try:
        return known_voices(CharacterStore.load(path, rt.keyring, series))
    except DubbingError as exc:
        rt.log.warning(f"the character store of {series} cannot guide the diarization: {exc}")
        return []


def speakers(rt: Runtime, script: Script, stems: Stems, src: SourceMedia) -> Speakers:
    """Who speaks each line: the subtitles' Actor names, else diarization guided by the series' known
    characters; each speaker's median F0."""
    from dubbing_assets.core.audio_io import load_audio_mono16k
    from dubbing_assets.core.diarize import diarize, speakers_from_subtitles
    from dubbing_assets.core.voicerange import median_f0

    audio = load_audio_mono16k(stems.dialogue.path)
    if script.source == "subtitles" and script.meta.get("speakers_named"):
        result = speakers_from_subtitles(script, audio)
    else:
        known = known_characters(rt, src.record.series)
        result = diarize(audio, script, known=known)
        guided = result.meta.get("guided_by_store") or {}
        if guided.get("splits") or guided.get("merges"):
            rt.log.info(f"the series' {len(known)} known characters guided the diarization: "
                        f"{len(guided['splits'])} clusters split, {len(guided['merges'])} merged")
    by_index = {ln.index: ln for ln in script.lines}
    for sp in result.speakers:
        f0 = median_f0(audio, [(by_index[i].start, by_index[i].end) for i in sp.lines if i in by_index])
        sp.f0_hz = round(f0, 1) if f0 else None
    low = result.meta.get("low_confidence") or []
    if low:
        rt.log.warning(f"speaker unsure for lines {low}: check them in the QA report's Characters section")
    return result


def _translator(rt: Runtime, engine: str) -> Any:
    """The translator by name, with the options that engine takes from the settings."""
    from dubbing_assets.core import translate

    options: dict[str, Any] = {}
    if engine in ("whisper-translate", "ctranslate2"):
        options = {"registry": rt.registry, "candidates": rt.settings.translation_candidates}
        if engine == "whisper-translate":
            options["device"] = rt.device
    return translate.get_translator(engine, **options)


def translation(rt: Runtime, key: str, script: Script, speakers: Speakers, src: SourceMedia, stems: Stems,
                cast: Cast) -> Translation:
    """One target-language line per script line; readings chosen to fit the cast's voices; the series'
    glossary applied; review edits win. `meta` holds the engine chosen, the edits and the fit figures."""
    from dubbing_assets.core import review, translate
    from dubbing_assets.core.diarize import apply_speakers
    from dubbing_assets.core.subtitles import subtitle_report

    settings = rt.settings
    target = src.record.target(settings.target_lang)
    sc = apply_speakers(script, speakers)
    roles = subtitle_roles(src, target)
    own = roles["translation"]
    engine = settings.translation_engine
    if engine == "auto":
        engine = translate.choose_engine(sc, target, subtitle_languages=[own["language"]] if own else [],
                                         registry=rt.registry)
    result: Translation = _translator(rt, engine).translate(sc, target, subtitles=own["file"].path if own else None,
                                                            audio=stems.dialogue.path)
    figures: dict[str, Any] = {}
    if any(ln.alternatives for ln in result.lines):
        result, figures = _fit_readings(rt, result, cast, src)
    result.meta["subtitles"] = subtitle_report(sc, roles, engine)
    # lines whose speaker the diarization was unsure of: QA lists them for review
    result.meta["speaker_low_confidence"] = list(speakers.meta.get("low_confidence") or [])
    glossary = review.load_glossary(settings.output, src.record.series)
    if glossary:
        result = translate.apply_glossary(result, glossary)
    edits = review.apply_review(settings.review, key, result)
    result.meta.update(engine_chosen=engine, review_edits=edits, fit=figures)
    rt.log.info(f"translated {len(result.lines)} lines with {engine}; {edits} edited in review")
    return result


def _fit_readings(rt: Runtime, result: Translation, cast: Cast, src: SourceMedia
                  ) -> tuple[Translation, dict[str, Any]]:
    """core.fit_choice with the cast's voices: the translation with the chosen readings, and the figures."""
    from dubbing_assets.core.fit_choice import choose_for_cast
    from dubbing_assets.core.voicebank import user_cache_dir

    end = src.duration_s or max(ln.end for ln in result.lines) + 1.0
    return choose_for_cast(result, dict(cast.voices), rt.tts, [rt.settings.cache, user_cache_dir()],
                           media_end=end, log=rt.log.info)
