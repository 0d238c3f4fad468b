"""Stages 6-11: rendering the dub (cast, speech, mix, delivery, QA, library)."""


import base64
import warnings
from pathlib import Path
from typing import Any

import dagster as dg

from dubbing_assets.core.model import MediaHandle, Speakers, Translation, Voice
from dubbing_assets.orchestration.assets.common import GPU_POOL, GROUP, PARTITIONS, md_table, user_errors
from dubbing_assets.orchestration.resources import DubbingResource

QA_CHECKS = {
    "sync": "Every dub line starts close to its source line, and the lines together are neither early nor "
            "late (signed median onset error); onsets found in the rendered dub track.",
    "overflow": "No line runs into the next one, beyond a tolerance (DUBBING_QA_OVERFLOW_TOLERANCE_MS, "
                "default 20 ms), after rate, stretch and borrowed silence.",
    "speed": "No line had to be sped up (rate x stretch) beyond what still sounds natural.",
    "loudness": "Integrated loudness of the mix is at the target (default -23 LUFS) within 1 LU.",
    "true_peak": "True peak of the mix (4x oversampled) stays at or below -1 dBTP.",
    "clipping": "No sample of the mix reaches full scale.",
    "intelligibility": "ASR of each dub line matches the translated text (mean WER).",
}


with warnings.catch_warnings():
    # Partitioned check specs are a 1.13 preview; we rely on them so each episode keeps its own results.
    warnings.simplefilter("ignore", dg.PreviewWarning)
    _QA_CHECK_SPECS = [dg.AssetCheckSpec(name, asset="qa_report", partitions_def=PARTITIONS, description=text)
                       for name, text in QA_CHECKS.items()]


def _high_mode_cloner(context, dubbing: DubbingResource, script: dict[str, Any], speakers: dict[str, Any],
                      audio_stems: dict[str, Any], source_media: dict[str, Any]):
    """Pass 1 of voice cloning: (cloner, None, per-character notes), or (None, reason, {}) when XTTS cannot
    run here (then low-mode voices are used).

    Conditioning is computed once per character and kept in the encrypted character store
    (`Character.extra["xtts"]`), so later episodes reuse it. The notes (by character id) say, for the
    manifest, which engine speaks the character, how much reference speech it was cloned from, whether
    the conditioning was computed now or reused, and why a character keeps its low-mode voice.
    """
    from dubbing_assets.core import cloning
    from dubbing_assets.core.diarize import apply_speakers
    from dubbing_assets.core.model import Script
    from dubbing_assets.core.tts import get_engine
    from dubbing_assets.errors import DubbingError

    device = None if dubbing.settings.device == "auto" else dubbing.settings.device
    try:
        xtts = get_engine("xtts", registry=dubbing.registry, device=device)
    except (ImportError, DubbingError) as exc:
        note = f"high mode unavailable, using low-mode voices: {exc}"
        context.log.warning(note)
        return None, note, {}
    target = source_media["record"].get("target_lang", "en")
    lines = apply_speakers(Script.from_dict(script), Speakers.from_dict(speakers)).lines
    work = dubbing.workdir("cloning")
    notes: dict[str, dict[str, Any]] = {}

    def clone(character, label: str, fallback: Voice) -> Voice:
        reused = bool(character.extra.get("xtts"))
        if not reused:
            prepared = cloning.prepare_character(xtts, audio_stems["dialogue"].path, lines, label, work)
            character.extra["xtts"] = prepared.to_store()
            context.log.info(f"{character.name}: {prepared.references.seconds:.1f}s of reference speech"
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


def _original_language(source_media: dict[str, Any], script: dict[str, Any]) -> str:
    """The original track's language: its own tag, else what ASR detected, else undetermined."""
    from dubbing_assets.core.media import normalize_language

    tagged = normalize_language(source_media.get("audio_language"))
    if tagged:
        return tagged
    return script["language"] if script.get("source") == "asr" and script.get("language") else "und"


def _series(source_media: dict[str, Any]) -> str:
    return source_media["record"]["series"]


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"python"}, code_version="1",
          description="Speakers matched to the series' encrypted character store; a stable voice per "
                      "character (pin voices in library/<series>/cast.yaml).")
def cast(context: dg.AssetExecutionContext, dubbing: DubbingResource, speakers: dict[str, Any],
         source_media: dict[str, Any], script: dict[str, Any], audio_stems: dict[str, Any]) -> dict[str, Any]:
    from dubbing_assets.core import cast as castlib
    from dubbing_assets.core import library
    from dubbing_assets.core.characters import transaction
    from dubbing_assets.core.safepath import check_slug, safe_join
    from dubbing_assets.core.tts import get_engine
    from dubbing_assets.core.voicebank import bank_engines, bank_listing, build_bank, user_cache_dir

    settings = dubbing.settings
    series = check_slug(_series(source_media), "series")
    spk = Speakers.from_dict(speakers)
    store_path = safe_join(settings.storage, "characters", f"{series}.chars")
    cast_path = library.cast_file_path(settings.output, series)
    mode = source_media["record"].get("mode", "low")
    cloner, high_note, clone_notes = (
        _high_mode_cloner(context, dubbing, script, speakers, audio_stems, source_media)
        if mode == "high" else (None, None, {}))
    with user_errors():
        pinned = library.load_cast_file(cast_path)
        available = get_engine("piper", registry=dubbing.registry).voices()
        engines = bank_engines(lambda name: get_engine(name, registry=dubbing.registry), log=context.log.info)
        bank = build_bank(engines, [settings.cache, user_cache_dir()], log=context.log.info)
        with transaction(store_path, dubbing.keyring, series) as store:
            voices, assigned = castlib.cast_episode(store, spk.speakers, context.partition_key, pinned, available,
                                                    cloner=cloner, bank=bank)
            all_voices = {c.id: Voice(**{k: v for k, v in c.voice.items() if k in Voice.__dataclass_fields__})
                          for c in store.characters if c.voice}
            names = {c.id: c.name for c in store.characters}
        library.write_cast_file(cast_path, {**all_voices, **pinned}, names=names, series=series,
                                bank=bank_listing(bank))
    for label, row in assigned.items():
        row["engine"] = voices[label]["engine"]
        if mode == "high":
            row.update(clone_notes.get(row["character_id"]) or {"engine": voices[label]["engine"],
                                                                 "fallback_reason": high_note})
    rows = [{"speaker": k, **{f: x for f, x in v.items() if f != "casting"}, "voice": voices[k]["voice"],
             "pitch": voices[k]["pitch_semitones"], "gender": (v.get("casting") or {}).get("gender"),
             "cast by": (v.get("casting") or {}).get("why")} for k, v in assigned.items()]
    context.add_output_metadata({
        "mode": mode, "high_mode": high_note or ("voice cloning" if mode == "high" else "off"),
        "characters": len(assigned), "new_characters": sum(1 for v in assigned.values() if v["new"]),
        "voice_bank": len(bank), "pitch_shifted": sum(1 for v in voices.values() if v["pitch_semitones"]),
        "cast_file": dg.MetadataValue.path(str(cast_path)),
        "cast": dg.MetadataValue.md(md_table(rows, ["speaker", "character_id", "name", "similarity", "new",
                                                    "engine", "voice", "pitch", "gender", "cast by"]
                                             + (["reference_s", "conditioning"] if mode == "high" else []))
                                    if rows else "")})
    return {"voices": voices, "characters": assigned}


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"onnx"}, code_version="1", pool=GPU_POOL,
          description="Each translated line synthesized in its character's voice and fitted to its slot "
                      "(rate, then pitch-kept stretch up to 1.25x, then borrowed silence, then overflow); "
                      "per-line cache so an edit re-synthesizes only that line.")
def dub_speech(context: dg.AssetExecutionContext, dubbing: DubbingResource, translation: dict[str, Any],
               cast: dict[str, Any], source_media: dict[str, Any]) -> dict[str, Any]:
    from dubbing_assets.core.engines import route_voices
    from dubbing_assets.core.timing import fit_lines
    from dubbing_assets.core.tts import get_engine
    from dubbing_assets.core.tts_cache import EncryptedLineCache

    settings = dubbing.settings
    tr = Translation.from_dict(translation)
    voices = {label: Voice(**v) for label, v in cast["voices"].items()}
    work = dubbing.workdir("dub_speech")
    cache = EncryptedLineCache(settings.cache / "tts", dubbing.keyring, work / "cache-plain")
    duration = float(source_media["probe"].get("duration_s") or max(ln.end for ln in tr.lines) + 1.0)
    with user_errors():
        engine = route_voices(voices.values(), lambda name: get_engine(name, registry=dubbing.registry))
        if any(v.engine == "xtts" for v in voices.values()):
            from dubbing_assets.core.cloning import VerifiedCloneEngine

            engine = VerifiedCloneEngine(get_engine("xtts", registry=dubbing.registry), engine,
                                         threshold=settings.clone_min_similarity)
        default = next(iter(voices.values()), None)
        fits = fit_lines(tr.lines, voices, engine, work / "clips", media_end=duration, cache=cache,
                         default_voice=default)
    resynthesized = sum(1 for f in fits if f.cache_misses)
    context.log.info(f"{len(fits)} lines: {len(fits) - resynthesized} wholly from the cache, {resynthesized} "
                     f"synthesized ({cache.hits} cache hits, {cache.misses} misses)")
    overflow = [f for f in fits if f.overflow_s > 0]
    rows = [{"#": f.index, "start": f"{f.start:.2f}", "dur": f"{f.duration:.2f}", "rate": f"{f.rate:.2f}",
             "stretch": f"{f.stretch:.2f}", "borrowed": f"{f.borrowed_s:.2f}", "overflow": f"{f.overflow_s:.2f}",
             "cached": "no" if f.cache_misses else "yes"} for f in fits]
    context.add_output_metadata({
        "lines": len(fits), "lines_from_cache": len(fits) - resynthesized, "lines_synthesized": resynthesized,
        "cache_hits": cache.hits, "cache_misses": cache.misses,
        "overflows": len(overflow), "engine": engine.version,
        "fit": dg.MetadataValue.md(md_table(rows, list(rows[0])) if rows else "")})
    out = {"clips": [{"fit": f.to_dict(), "audio": MediaHandle(f.path, "audio")} for f in fits],
           "cache": {"hits": cache.hits, "misses": cache.misses}, "engine": engine.version}
    if hasattr(engine, "outcome"):
        out["cloning"] = _cloning_lines(engine, tr, voices, default)
        context.add_output_metadata({"cloning": dg.MetadataValue.json(out["cloning"])})
    return out


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


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"numpy"}, code_version="1",
          description="Dub over the kept background with ducking; loudness normalised (default -23 LUFS, "
                      "true peak <= -1 dBTP); the source's rate and channel layout kept.")
def dub_mix(context: dg.AssetExecutionContext, dubbing: DubbingResource, audio_stems: dict[str, Any],
            dub_speech: dict[str, Any]) -> dict[str, Any]:
    from dubbing_assets.core.mix import mix

    work = dubbing.workdir("dub_mix")
    clips = [(float(c["fit"]["start"]), c["audio"].path) for c in dub_speech["clips"]]
    info = audio_stems.get("info", {})
    with user_errors():
        result = mix(audio_stems["background"].path, clips, work / "mix.wav",
                     target_lufs=dubbing.settings.loudness_lufs, speech_wav=work / "dub_only.wav",
                     layout=info.get("layout"))  # the layout the stems stage found (5.1(side) is not 5.1)
    context.add_output_metadata({"integrated_lufs": round(result.integrated_lufs, 2),
                                 "true_peak_db": round(result.true_peak_db, 2),
                                 "clipped_samples": result.clipped_samples, "layout": result.layout,
                                 "sample_rate": result.sample_rate, "channels": result.channels})
    return {"mix": MediaHandle(result.path, "audio"), "dub_only": MediaHandle(str(result.speech_path), "audio"),
            "loudness": result.to_dict()}


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"opencv"}, code_version="1", pool=GPU_POOL,
          description="High mode: lips re-rendered to follow the dub (Wav2Lip plugin, found through entry points); "
                      "with no face (animation, usually) the original video is kept and the reason recorded. "
                      "Low mode: skipped.")
def lip_sync(context: dg.AssetExecutionContext, dubbing: DubbingResource, source_media: dict[str, Any],
             dub_mix: dict[str, Any]) -> dict[str, Any]:
    mode = source_media["record"].get("mode", "low")
    if mode != "high" or not source_media.get("has_video"):
        reason = "low mode: lip-sync runs in high mode only" if mode != "high" else "no video stream"
        context.add_output_metadata({"synced": False, "reason": reason})
        return {"synced": False, "reason": reason}
    from dubbing_assets.core import library, lipsync
    from dubbing_assets.errors import ModelNotFoundError

    work = dubbing.workdir("lip_sync")
    with user_errors():
        plugin = lipsync.get_plugin("wav2lip", registry=dubbing.registry)
        try:
            result = plugin.sync(Path(source_media["media"].path), Path(dub_mix["mix"].path), work / "synced.mp4")
        except ModelNotFoundError as exc:
            # The dub is still worth delivering: keep the original picture and say why.
            reason = f"lip-sync model not installed, original video kept: {exc}"
            context.log.warning(reason)
            context.add_output_metadata({"synced": False, "reason": reason})
            return {"synced": False, "reason": reason}
        folder = library.prepare_episode_dir(dubbing.settings.output, _series(source_media), context.partition_key,
                                             source_media["record"].get("visibility", "private"))
        shown = lipsync.preview(Path(source_media["media"].path), Path(result.video_path),
                                folder / "lipsync_preview.png", clip_out=folder / "lipsync_preview.mp4")
    png = folder / "lipsync_preview.png"
    meta: dict[str, Any] = {"synced": result.synced, "reason": result.reason or "", "plugin": result.plugin,
                            "face_frames": result.face_frames, "frames": result.frames}
    if png.exists() and dubbing.settings.metadata_dialogue:
        meta["preview"] = dg.MetadataValue.md(
            f"![before/after](data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()})")
    elif png.exists():  # frames of an unreleased episode stay in its private library folder
        meta["preview"] = dg.MetadataValue.path(str(png))
    context.add_output_metadata(meta)
    out = result.to_dict() | {"preview": {k: str(v) for k, v in (shown or {}).items()}}
    if result.synced:
        out["video"] = MediaHandle(result.video_path, "video")
    return out


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"ffmpeg"}, code_version="1",
          description="The delivery: original video copied, dub as default track, original audio second, "
                      "target-language subtitles plus the originals, chapters kept; written atomically to "
                      "library/<series>/<episode>/.")
def dubbed_video(context: dg.AssetExecutionContext, dubbing: DubbingResource, source_media: dict[str, Any],
                 dub_mix: dict[str, Any], translation: dict[str, Any], lip_sync: dict[str, Any],
                 script: dict[str, Any]) -> dict[str, Any]:
    from dubbing_assets.core import library
    from dubbing_assets.core.mux import mux, verify_delivery
    from dubbing_assets.core.subtitles import write_subtitles

    settings = dubbing.settings
    tr = Translation.from_dict(translation)
    key = context.partition_key
    folder = library.prepare_episode_dir(settings.output, _series(source_media), key,
                                         source_media["record"].get("visibility", "private"))
    work = dubbing.workdir("dubbed_video")
    container = settings.container
    with user_errors():
        subs_path = write_subtitles(tr, work / f"{key}.{tr.target_language}.{'ass' if container == 'mkv' else 'srt'}")
        out = folder / f"{key}.{container}"
        synced = lip_sync["video"].path if lip_sync.get("synced") else None
        if synced:
            context.log.info("delivering the lip-synced video (re-encoded); original audio and subtitles kept")
        result = mux(source_media["media"].path, dub_mix["mix"].path, source_media["audio_stream"],
                     [(subs_path, tr.target_language, f"{tr.target_language} (dub)")], out, container=container,
                     dub_language=tr.target_language,
                     original_language=_original_language(source_media, script),
                     title=source_media["probe"].get("title"), video_from=synced)
        check = verify_delivery(out)
    context.add_output_metadata({"path": dg.MetadataValue.path(str(out)), "size": out.stat().st_size,
                                 "streams": dg.MetadataValue.md(md_table(
                                     check.get("streams", []), ["index", "type", "codec", "language", "default"]))})
    return {"path": str(out), "verify": check, "mux": result.to_dict()}


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"python"}, code_version="1",
          check_specs=_QA_CHECK_SPECS,
          description="Sync drift, overflows, speed factors, round-trip intelligibility (ASR of the dub), "
                      "loudness and true peak, as a report with a timeline plot and asset checks.")
def qa_report(context: dg.AssetExecutionContext, dubbing: DubbingResource, dub_speech: dict[str, Any],
              dub_mix: dict[str, Any], translation: dict[str, Any], dubbed_video: dict[str, Any],
              audio_stems: dict[str, Any]):
    from dubbing_assets.core.asr import Transcriber
    from dubbing_assets.core.qa import build_report, character_section, character_voices
    from dubbing_assets.core.timing import FitResult

    tr = Translation.from_dict(translation)
    fits = [FitResult.from_dict(c["fit"]) for c in dub_speech["clips"]]
    for fit, clip in zip(fits, dub_speech["clips"], strict=True):
        fit.path = clip["audio"].path
    transcribe = None
    if tr.target_language == "en":
        asr = Transcriber("whisper-tiny.en", registry=dubbing.registry, device=dubbing.settings.device)

        def transcribe(path: Path) -> str:
            return " ".join(ln.text for ln in asr.transcribe(path, language="en").lines)

    with user_errors():
        report = build_report(fits, tr.lines, loudness=dub_mix["loudness"],
                              target_lufs=dubbing.settings.loudness_lufs, transcribe=transcribe,
                              dub_stem=dub_mix["dub_only"].path, source_stem=audio_stems["dialogue"].path,
                              thresholds={"overflow_tolerance_s": dubbing.settings.qa_overflow_tolerance_ms / 1000})
        speaker_of = {ln.index: ln.speaker for ln in tr.lines}
        voices = character_voices([(f.index, speaker_of.get(f.index, "unknown"), f.path) for f in fits],
                                  low_confidence=tr.meta.get("speaker_low_confidence") or [])
    folder = Path(dubbed_video["path"]).parent
    png = report.plot_timeline(folder / "qa_timeline.png", title=f"{context.partition_key}: source vs dub")
    cloning_md, cloning_meta = _cloning_section(dub_speech.get("cloning"))
    cloning_md = character_section(voices) + cloning_md
    markdown = report.to_markdown(title=f"Dub QA {context.partition_key}", plot_png=png.name) + cloning_md
    (folder / "qa_report.md").write_text(markdown, encoding="utf-8")
    inline = report.to_markdown(title=f"Dub QA {context.partition_key}",
                                plot_png="data:image/png;base64," + base64.b64encode(png.read_bytes()).decode(),
                                dialogue=dubbing.settings.metadata_dialogue)
    out = report.to_dict()
    out["characters"] = voices
    if dub_speech.get("cloning"):
        out["cloning"] = cloning_meta
    closest = voices.get("closest_pair") or {}
    yield dg.Output(out, metadata={
        "characters": len(voices["characters"]), "flagged_lines": len(voices["flagged"]),
        "closest_characters_similarity": float(closest.get("similarity", -1.0)),
        "passed": report.passed, "report": dg.MetadataValue.md(inline + cloning_md),
        "report_file": dg.MetadataValue.path(str(folder / "qa_report.md")), **cloning_meta, **{
            k: v for k, v in report.summary.items() if isinstance(v, int | float | str | bool)}})
    by_name = {c.name: c for c in report.checks}
    for name in QA_CHECKS:
        c = by_name.get(name)
        if c is None:
            yield dg.AssetCheckResult(check_name=name, asset_key="qa_report", passed=True,
                                      metadata={"note": "not measured for this episode"})
            continue
        yield dg.AssetCheckResult(check_name=name, asset_key="qa_report", passed=bool(c.passed),
                                  severity=dg.AssetCheckSeverity.WARN,
                                  description=c.message,
                                  metadata={"value": float(c.value) if c.value is not None else -1.0,
                                            "limit": str(c.limit)})


def _cloning_section(cloning: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """High mode's part of the QA report: each line's engine and similarity, every fallback with its reason."""
    if not cloning:
        return "", {}
    rows = cloning["lines"]
    sims = [r["similarity"] for r in rows if r.get("similarity") is not None]
    meta = {"cloned_lines": cloning["cloned"], "fallback_lines": cloning["fallback"],
            "clone_threshold": cloning["threshold"],
            "clone_similarity_min": round(min(sims), 4) if sims else -1.0,
            "clone_similarity_median": round(sorted(sims)[len(sims) // 2], 4) if sims else -1.0}
    table = md_table([{"#": r["index"], "speaker": r["speaker"], "engine": r["engine"],
                       "similarity": "" if r.get("similarity") is None else f"{r['similarity']:.3f}",
                       "why not cloned": r.get("fallback_reason") or r.get("note") or ""} for r in rows],
                     ["#", "speaker", "engine", "similarity", "why not cloned"]) if rows else ""
    text = (f"\n\n## Voices (high mode)\n\n{cloning['cloned']} of {len(rows)} lines spoken by the cloned voice, "
            f"{cloning['fallback']} by the character's low-mode voice. A cloned line is kept when its speaker "
            f"similarity to the character's reference speech reaches {cloning['threshold']:.2f} "
            f"(DUBBING_CLONE_MIN_SIMILARITY) with one of the tried seeds.\n\n{table}\n")
    return text, meta


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"json"}, code_version="1",
          description="manifest.json in the library (private by default) and the per-series index.")
def library_entry(context: dg.AssetExecutionContext, dubbing: DubbingResource, source_media: dict[str, Any],
                  dubbed_video: dict[str, Any], qa_report: dict[str, Any], translation: dict[str, Any],
                  dub_speech: dict[str, Any], cast: dict[str, Any], script: dict[str, Any]) -> dict[str, Any]:
    from dubbing_assets.core import library

    record = source_media["record"]
    folder = Path(dubbed_video["path"]).parent
    with user_errors():
        manifest = library.write_manifest(folder, {
            "series": record["series"], "episode": context.partition_key,
            "source": {"file": Path(record["source"]).name, "fingerprint": source_media["fingerprint"],
                       "duration_s": source_media["probe"].get("duration_s")},
            "languages": {"source": source_media.get("audio_language"),
                          "target": translation["target_language"]},
            "video_path": dubbed_video["path"],
            "tracks": dubbed_video["verify"].get("streams", []),
            "engines": {"translation": translation["engine"], "tts": dub_speech.get("engine"),
                        "script": _script_engine(script)},
            "subtitles": translation.get("meta", {}).get("subtitles", {}),
            "mode": record.get("mode", "low"),
            "characters": _characters_with_lines(cast, dub_speech),
            "qa": {"passed": qa_report.get("passed"), "summary": qa_report.get("summary", {}),
                   "checks": {c["name"]: c["passed"] for c in qa_report.get("checks", [])}},
            "owner": record.get("owner", "unknown"),
            "visibility": record.get("visibility", "private"),
            "run_id": context.run_id,
        })
        library.apply_visibility(folder, manifest["visibility"])  # the MKV, previews, QA files and manifest
    context.add_output_metadata({"manifest": dg.MetadataValue.path(str(folder / "manifest.json")),
                                 "visibility": manifest["visibility"], "owner": manifest["owner"]})
    return manifest


def _script_engine(script: dict[str, Any]) -> str:
    """Where the script came from, for the manifest: `asr (whisper-base)` or `subtitles (<track>)`."""
    meta = script.get("meta") or {}
    if script.get("source") == "asr":
        return f"asr ({meta.get('model', 'whisper')})"
    track = meta.get("subtitle") or {}
    return f"{script.get('source', 'unknown')} ({track.get('name') or track.get('kind') or 'track'})"


def _characters_with_lines(cast: dict[str, Any], dub_speech: dict[str, Any]) -> dict[str, Any]:
    """The cast per speaker label; in high mode each with how its lines were spoken (engine, similarity,
    fallback reason), so the manifest says what cloning did for every character."""
    lines = (dub_speech.get("cloning") or {}).get("lines")
    if lines is None:
        return cast["characters"]
    return {label: {**info, "lines": [{k: v for k, v in ln.items() if k != "speaker"}
                                      for ln in lines if ln.get("speaker") == label]}
            for label, info in cast["characters"].items()}
