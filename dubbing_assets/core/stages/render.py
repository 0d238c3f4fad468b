"""Stages 6-12: rendering the dub (cast, speech, mix, lip-sync, delivery, QA, library entry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dubbing_assets.core.contracts import (
    QA,
    Cast,
    Delivery,
    EpisodeRecord,
    LibraryEntry,
    LipSync,
    MediaHandle,
    Mix,
    Script,
    SourceMedia,
    Speakers,
    Speech,
    SpokenClip,
    Stems,
    Translation,
    Voice,
)
from dubbing_assets.core.runtime import Runtime
from dubbing_assets.errors import ConfigError, DubbingError, ModelNotFoundError

#: The model that listens to an English dub for the intelligibility check (round-trip ASR).
QA_ASR_MODEL = "whisper-tiny.en"


def _xtts(rt: Runtime) -> Any:
    """The run's one XTTS engine, on DUBBING_DEVICE (cloning in cast and synthesis in dub_speech share it;
    they used to build two, the second on the automatic device whatever the setting said)."""
    return rt.tts("xtts", device=None if rt.device == "auto" else rt.device)


def _high_mode_cloner(rt: Runtime, script: Script, speakers: Speakers, stems: Stems, src: SourceMedia):
    """Pass 1 of voice cloning: (cloner, None, per-character notes), or (None, reason, {}) when XTTS cannot
    run here (then low-mode voices are used).

    Conditioning is computed once per character and kept in the encrypted character store
    (`Character.extra["xtts"]`), so later episodes reuse it. The notes (by character id) say, for the
    manifest, which engine speaks the character, how much reference speech it was cloned from, whether
    the conditioning was computed now or reused, and why a character keeps its low-mode voice.
    """
    from dubbing_assets.core import cloning
    from dubbing_assets.core.diarize import apply_speakers

    try:
        xtts = _xtts(rt)
    except (ImportError, DubbingError) as exc:
        note = f"high mode unavailable, using low-mode voices: {exc}"
        rt.log.warning(note)
        return None, note, {}
    target = src.record.target(rt.settings.target_lang)
    lines = apply_speakers(script, speakers).lines
    work = rt.workdir("cloning")
    notes: dict[str, dict[str, Any]] = {}

    def clone(character, label: str, fallback: Voice) -> Voice:
        reused = bool(character.extra.get("xtts"))
        if not reused:
            prepared = cloning.prepare_character(xtts, stems.dialogue.path, lines, label, work)
            character.extra["xtts"] = prepared.to_store()
            rt.log.info(f"{character.name}: {prepared.references.seconds:.1f}s of reference speech"
                        + (f" ({prepared.note})" if prepared.note else ""))
        stored = character.extra["xtts"]
        note = {"reference_s": round(float(stored.get("seconds") or 0.0), 2),
                "conditioning": "reused from the character store" if reused else "computed in this episode"}
        if stored.get("note"):
            note["reference_note"] = stored["note"]
        if not stored.get("latents"):
            notes[character.id] = {**note, "engine": fallback.engine,
                                   "fallback_reason": stored.get("note") or "no clean reference speech"}
            return fallback
        notes[character.id] = {**note, "engine": "xtts"}
        return cloning.clone_voice(stored, fallback, language=target)

    return clone, None, notes


def cast(rt: Runtime, key: str, speakers: Speakers, src: SourceMedia, script: Script, stems: Stems) -> Cast:
    """Speakers matched to the series' encrypted character store; a stable voice per character, new ones
    cast from the voice bank; the series' cast file rewritten with every voice and the bank."""
    from dubbing_assets.core import cast as castlib
    from dubbing_assets.core import library
    from dubbing_assets.core.characters import transaction
    from dubbing_assets.core.safepath import check_slug, safe_join
    from dubbing_assets.core.voicebank import bank_engines, bank_listing, build_bank, user_cache_dir

    settings = rt.settings
    series = check_slug(src.record.series, "series")
    store_path = safe_join(settings.storage, "characters", f"{series}.chars")
    cast_path = library.cast_file_path(settings.output, series)
    high = src.record.high
    cloner, high_note, clone_notes = (_high_mode_cloner(rt, script, speakers, stems, src)
                                      if high else (None, None, {}))
    pinned = {**_adopted_pins(rt, series, src.record, store_path), **library.load_cast_file(cast_path)}
    piper = rt.tts("piper")
    available = piper.voices()
    for voice, why in getattr(piper, "unavailable", {}).items():
        rt.log.warning(f"voice bank: Piper voice {voice} left out: {why}")
    bank = build_bank(bank_engines(rt.tts, log=rt.log.info), [settings.cache, user_cache_dir()], log=rt.log.info)
    with transaction(store_path, rt.keyring, series) as store:
        voices, assigned = castlib.cast_episode(store, speakers.speakers, key, pinned, available,
                                                cloner=cloner, bank=bank)
        all_voices = {c.id: Voice.from_dict(c.voice) for c in store.characters if c.voice}
        names = {c.id: c.name for c in store.characters}
    library.write_cast_file(cast_path, {**all_voices, **pinned}, names=names, series=series,
                            bank=bank_listing(bank))
    for label, row in assigned.items():
        row["engine"] = voices[label]["engine"]
        if high:
            row.update(clone_notes.get(row["character_id"]) or {"engine": voices[label]["engine"],
                                                                 "fallback_reason": high_note})
    return Cast(voices={label: Voice.from_dict(v) for label, v in voices.items()}, characters=assigned,
                high_mode=high_note or ("voice cloning" if high else "off"), voice_bank=len(bank),
                cast_file=str(cast_path))


def _adopted_pins(rt: Runtime, series: str, record: EpisodeRecord, store_path: Path) -> dict[str, Voice]:
    """A series whose slug changed in the upgrade (its name is not ASCII) takes its own characters from
    the store they were filed under, the first time it is cast; and their rows of that cast file."""
    from dubbing_assets.core import library
    from dubbing_assets.core.characters import adopt
    from dubbing_assets.core.inbox import read_episode_record
    from dubbing_assets.core.safepath import safe_join, slug_before_digest

    folder = record.source.split("/")[0]
    earlier = slug_before_digest(folder)
    if earlier == series:
        return {}

    def belongs(key: str) -> bool:
        try:
            other = read_episode_record(rt.settings.episodes, key)
        except (DubbingError, OSError):  # a damaged or unreadable record attributes nothing
            return False
        return other is not None and other.source.split("/")[0] == folder

    carried = adopt(store_path, rt.keyring, series, safe_join(rt.settings.storage, "characters",
                                                              f"{earlier}.chars"), belongs)
    if not carried:
        return {}
    ids = {c.id for c in carried}
    rt.log.warning(f"series folder {folder!r} is now {series!r} (it was {earlier!r} before names with no ASCII "
                   f"form kept a digest): its {len(carried)} characters "
                   f"({', '.join(sorted(c.name or c.id for c in carried))}) come over with their voices; "
                   f"{earlier!r} is left as it was")
    try:
        rows = library.load_cast_file(library.cast_file_path(rt.settings.output, earlier))
    except ConfigError as exc:
        rt.log.warning(f"the cast file of {earlier!r} is not read, so no pins come over: {exc}")
        return {}
    return {cid: voice for cid, voice in rows.items() if cid in ids}


def dub_speech(rt: Runtime, translation: Translation, cast: Cast, src: SourceMedia) -> Speech:
    """Each line synthesized in its character's voice and fitted to its slot; the per-line encrypted cache
    means an edit re-synthesizes only that line. High mode verifies each cloned line against its character."""
    from dubbing_assets.core.engines import route_voices
    from dubbing_assets.core.timing import fit_lines
    from dubbing_assets.core.tts_cache import EncryptedLineCache

    voices = dict(cast.voices)
    work = rt.workdir("dub_speech")
    cache = EncryptedLineCache(rt.settings.cache / "tts", rt.keyring, work / "cache-plain")
    duration = src.duration_s or max(ln.end for ln in translation.lines) + 1.0
    engine = route_voices(voices.values(), rt.tts)
    if any(v.engine == "xtts" for v in voices.values()):
        from dubbing_assets.core.cloning import VerifiedCloneEngine

        engine = VerifiedCloneEngine(_xtts(rt), engine, threshold=rt.settings.clone_min_similarity)
    default = cast.default_voice()
    fits = fit_lines(translation.lines, voices, engine, work / "clips", media_end=duration, cache=cache,
                     default_voice=default)
    resynthesized = sum(1 for f in fits if f.cache_misses)
    rt.log.info(f"{len(fits)} lines: {len(fits) - resynthesized} wholly from the cache, {resynthesized} "
                f"synthesized ({cache.hits} cache hits, {cache.misses} misses"
                + (f", {cache.repaired} damaged entries made again" if cache.repaired else "") + ")")
    return Speech(clips=tuple(SpokenClip(fit=f.to_dict(), audio=MediaHandle(f.path, "audio")) for f in fits),
                  engine=engine.version, cache=cache.stats,
                  cloning=_cloning_lines(engine, translation, voices, default) if hasattr(engine, "outcome")
                  else None)


def _cloning_lines(engine, tr: Translation, voices: dict[str, Voice], default: Voice | None) -> dict[str, Any]:
    """How each line of a high-mode episode was spoken: engine, similarity to its character, fallback reason.

    Lines served whole from the TTS cache were not re-verified in this run; they say so.
    """
    rows = []
    for line in tr.lines:
        voice = voices.get(line.speaker or "", default)
        if voice is None:
            continue
        outcome = engine.outcome(line.text, voice) if voice.engine == engine.primary.name else None
        row: dict[str, Any] = {"index": line.index, "speaker": line.speaker, "engine": voice.engine}
        if outcome is not None:
            best = [a["similarity"] for a in outcome.attempts if a.get("similarity") is not None]
            row.update(engine=outcome.engine, similarity=outcome.similarity if outcome.similarity is not None
                       else (round(max(best), 4) if best else None), seed=outcome.seed,
                       attempts=len(outcome.attempts), fallback_reason=outcome.fallback_reason)
        elif voice.engine == engine.primary.name:
            row["note"] = "from the TTS cache (verified when first synthesized)"
        rows.append(row)
    return {"threshold": engine.threshold, "lines": rows,
            "cloned": sum(1 for r in rows if r["engine"] == engine.primary.name),
            "fallback": sum(1 for r in rows if r.get("fallback_reason"))}


def dub_mix(rt: Runtime, stems: Stems, speech: Speech) -> Mix:
    """The dub over the kept background, ducked and loudness-normalised, in the layout the stems stage
    found (5.1(side) is not 5.1)."""
    from dubbing_assets.core.mix import mix

    work = rt.workdir("dub_mix")
    result = mix(stems.background.path, [(c.start, c.audio.path) for c in speech.clips], work / "mix.wav",
                 target_lufs=rt.settings.loudness_lufs, speech_wav=work / "dub_only.wav", layout=stems.layout)
    return Mix(mix=MediaHandle(result.path, "audio"), dub_only=MediaHandle(str(result.speech_path), "audio"),
               loudness=result.to_dict())


def lip_sync(rt: Runtime, key: str, src: SourceMedia, mix: Mix) -> LipSync:
    """High mode: lips re-rendered to follow the dub, with a before/after preview in the library; otherwise,
    or with no face or no model, the original picture is kept and the reason recorded."""
    if not src.record.high or not src.has_video:
        return LipSync(synced=False, reason="low mode: lip-sync runs in high mode only" if not src.record.high
                       else "no video stream")
    from dubbing_assets.core import library, lipsync

    plugin = lipsync.get_plugin("wav2lip", registry=rt.registry)
    try:
        result = plugin.sync(Path(src.media.path), Path(mix.mix.path), rt.workdir("lip_sync") / "synced.mp4")
    except ModelNotFoundError as exc:
        # The dub is still worth delivering: keep the original picture and say why.
        reason = f"lip-sync model not installed, original video kept: {exc}"
        rt.log.warning(reason)
        return LipSync(synced=False, reason=reason)
    folder = library.prepare_episode_dir(rt.settings.output, src.record.series, key, src.record.visibility)
    shown = lipsync.preview(Path(src.media.path), Path(result.video_path), folder / "lipsync_preview.png",
                            clip_out=folder / "lipsync_preview.mp4")
    return LipSync.from_dict(result.to_dict() | {
        "preview": {k: str(v) for k, v in (shown or {}).items()},
        "video": MediaHandle(result.video_path, "video") if result.synced else None})


def original_language(src: SourceMedia, script: Script) -> str:
    """The original track's language: its own tag, else what ASR detected, else undetermined."""
    from dubbing_assets.core.media import normalize_language

    tagged = normalize_language(src.audio_language)
    if tagged:
        return tagged
    return script.language if script.source == "asr" and script.language else "und"


def dubbed_video(rt: Runtime, key: str, src: SourceMedia, mix: Mix, translation: Translation, lip: LipSync,
                 script: Script) -> Delivery:
    """The delivery, written atomically into the library: the original video (or the lip-synced one), the
    dub as the default track, the original audio second, target-language subtitles plus the originals."""
    from dubbing_assets.core import library
    from dubbing_assets.core.mux import mux, verify_delivery
    from dubbing_assets.core.subtitles import write_subtitles

    tr = translation
    container = rt.settings.container
    folder = library.prepare_episode_dir(rt.settings.output, src.record.series, key, src.record.visibility)
    subs = write_subtitles(tr, rt.workdir("dubbed_video") / f"{key}.{tr.target_language}."
                                                             f"{'ass' if container == 'mkv' else 'srt'}")
    out = folder / f"{key}.{container}"
    synced = lip.video.path if lip.synced and lip.video is not None else None
    if synced:
        rt.log.info("delivering the lip-synced video (re-encoded); original audio and subtitles kept")
    result = mux(src.media.path, mix.mix.path, src.audio_stream,
                 [(subs, tr.target_language, f"{tr.target_language} (dub)")], out, container=container,
                 dub_language=tr.target_language, original_language=original_language(src, script),
                 title=src.probe.get("title"), video_from=synced)
    return Delivery(path=str(out), verify=verify_delivery(out), mux=result.to_dict())


def qa_report(rt: Runtime, key: str, speech: Speech, mix: Mix, translation: Translation, delivery: Delivery,
              stems: Stems) -> tuple[QA, str]:
    """Sync, overflow, speed, loudness, true peak, round-trip intelligibility and per-character voices; the
    report and its timeline plot written beside the delivery. Returns the record and the report as Markdown
    for the UI (plot inline; the lines' words only with DUBBING_METADATA_DIALOGUE)."""
    import base64

    from dubbing_assets.core.fsutil import atomic_write_text
    from dubbing_assets.core.qa import build_report, character_section, character_voices, cloning_section

    settings = rt.settings
    tr = translation
    fits = [c.fit_result() for c in speech.clips]
    transcribe = None
    if tr.target_language == "en":
        asr = rt.transcriber(QA_ASR_MODEL)

        def transcribe(path: Path) -> str:
            return " ".join(ln.text for ln in asr.transcribe(path, language="en").lines)

    report = build_report(fits, tr.lines, loudness=mix.loudness, target_lufs=settings.loudness_lufs,
                          transcribe=transcribe, dub_stem=mix.dub_only.path, source_stem=stems.dialogue.path,
                          thresholds={"overflow_tolerance_s": settings.qa_overflow_tolerance_ms / 1000})
    speaker_of = {ln.index: ln.speaker for ln in tr.lines}
    voices = character_voices([(f.index, speaker_of.get(f.index, "unknown"), f.path) for f in fits],
                              low_confidence=tr.meta.get("speaker_low_confidence") or [])
    folder = delivery.folder
    png = report.plot_timeline(folder / "qa_timeline.png", title=f"{key}: source vs dub")
    extra_md, cloning_meta = cloning_section(speech.cloning)
    extra_md = character_section(voices) + extra_md
    markdown = report.to_markdown(title=f"Dub QA {key}", plot_png=png.name) + extra_md
    report_file = folder / "qa_report.md"
    atomic_write_text(report_file, markdown, mode=0o600)  # the library entry applies the episode's visibility
    inline = report.to_markdown(title=f"Dub QA {key}",
                                plot_png="data:image/png;base64," + base64.b64encode(png.read_bytes()).decode(),
                                dialogue=settings.metadata_dialogue) + extra_md
    return QA.from_dict(report.to_dict() | {"characters": voices, "report_file": str(report_file),
                                            "cloning": cloning_meta if speech.cloning else None}), inline


def _script_engine(script: Script) -> str:
    """Where the script came from, for the manifest: `asr (whisper-base)` or `subtitles (<track>)`."""
    if script.source == "asr":
        return f"asr ({script.meta.get('model', 'whisper')})"
    track = script.meta.get("subtitle") or {}
    return f"{script.source or 'unknown'} ({track.get('name') or track.get('kind') or 'track'})"


def _characters_with_lines(cast: Cast, speech: Speech) -> dict[str, Any]:
    """The cast per speaker label; in high mode each with how its lines were spoken (engine, similarity,
    fallback reason), so the manifest says what cloning did for every character."""
    lines = (speech.cloning or {}).get("lines")
    if lines is None:
        return dict(cast.characters)
    return {label: {**info, "lines": [{k: v for k, v in ln.items() if k != "speaker"}
                                      for ln in lines if ln.get("speaker") == label]}
            for label, info in cast.characters.items()}


def library_entry(rt: Runtime, key: str, run_id: str, src: SourceMedia, delivery: Delivery, qa: QA,
                  translation: Translation, speech: Speech, cast: Cast, script: Script) -> LibraryEntry:
    """manifest.json in the episode's library folder and the series index; the visibility applied to every
    file of the episode."""
    from dubbing_assets.core import library

    record = src.record
    manifest = library.write_manifest(delivery.folder, {
        "series": record.series, "episode": key,
        "source": {"file": Path(record.source).name, "fingerprint": src.fingerprint,
                   "duration_s": src.probe.get("duration_s")},
        "languages": {"source": src.audio_language, "target": translation.target_language},
        "video_path": delivery.path,
        "tracks": delivery.verify.get("streams", []),
        "engines": {"translation": translation.engine, "tts": speech.engine, "script": _script_engine(script)},
        "subtitles": translation.meta.get("subtitles", {}),
        "mode": record.mode,
        "characters": _characters_with_lines(cast, speech),
        "qa": {"passed": qa.passed, "summary": qa.summary, "checks": {c["name"]: c["passed"] for c in qa.checks}},
        "owner": record.owner,
        "visibility": record.visibility,
        "run_id": run_id,
    })
    library.apply_visibility(delivery.folder, manifest["visibility"])  # the MKV, previews, QA files, manifest
    return LibraryEntry(manifest=manifest, folder=str(delivery.folder))
