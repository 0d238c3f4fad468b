"""Stages 1-5: understanding an episode (media, stems, script, speakers, translation)."""



from typing import Any

import dagster as dg

from dubbing_assets.core.model import MediaHandle, Script, Speakers, Translation
from dubbing_assets.errors import ModelNotFoundError
from dubbing_assets.orchestration.assets.common import (
    GPU_POOL,
    GROUP,
    PARTITIONS,
    episode_record,
    md_table,
    source_path,
    user_errors,
)
from dubbing_assets.orchestration.resources import DubbingResource


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"ffmpeg"}, code_version="1",
          description="The episode file: probed, validated, fingerprinted; text subtitles extracted.")
def source_media(context: dg.AssetExecutionContext, dubbing: DubbingResource) -> dict[str, Any]:
    from dubbing_assets.core import media, subtitles

    settings = dubbing.settings
    record = episode_record(context, settings)
    path = source_path(settings, record)
    context.log.info(f"validating {record['source']}")
    with user_errors():
        info = media.validate(path)
        fp = media.fingerprint(path)
    if record.get("fingerprint") and fp != record["fingerprint"]:
        # A new version replaced the file after this run was queued: dubbing it here would give it this
        # run's options and run key; the sensor queues the new version as its own run.
        raise dg.Failure(description=(
            f"{record['source']} changed after this run was queued (sha256 {fp[:16]}, queued "
            f"{str(record['fingerprint'])[:16]}); the inbox sensor queues the new version as its own run."))
    work = dubbing.workdir("source_media")
    with user_errors():
        subs = [{"language": t["language"], "title": t.get("title"), "kind": t["kind"], "index": t.get("index"),
                 "name": t["name"], "language_from": t["language_from"],
                 "language_confidence": t["language_confidence"], "language_note": t["language_note"],
                 "file": MediaHandle(path=t["file"], kind="subtitles")}
                for t in subtitles.catalog_subtitles(path, work)]
    for t in subs:
        if t["language"] is None:
            context.log.warning(f"subtitle {t['name']}: language undetermined ({t['language_note']})")
    audio = [s for s in info["streams"] if s["type"] == "audio"]
    video = [s for s in info["streams"] if s["type"] == "video"]
    context.add_output_metadata({
        "source": record["source"], "fingerprint": fp[:16], "duration_s": info.get("duration_s"),
        "container": info.get("container"),
        "streams": dg.MetadataValue.md(md_table(info["streams"], ["index", "type", "codec", "language", "title"])),
        "subtitle_tracks": len(subs),
        "subtitles": dg.MetadataValue.md(md_table(
            [{k: t[k] for k in ("name", "kind", "language", "language_from", "language_note")} for t in subs],
            ["name", "kind", "language", "language_from", "language_note"]) if subs else "none"),
    })
    return {"media": MediaHandle(path=str(path), kind="video"), "probe": info, "fingerprint": fp,
            "record": record, "subtitles": subs,
            "audio_stream": info["validated"]["audio_stream"],
            "audio_language": audio[0].get("language") if audio else None,
            "has_video": bool(video)}


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"numpy"}, code_version="1",
          description="Dialogue and background stems at the source's rate and layout (low mode: "
                      "centre/mid-side/VAD signal processing; high mode: Demucs when installed).")
def audio_stems(context: dg.AssetExecutionContext, dubbing: DubbingResource,
                source_media: dict[str, Any]) -> dict[str, Any]:
    from dubbing_assets.core import media, stems

    work = dubbing.workdir("audio_stems")
    mode = source_media["record"].get("mode", "low")
    with user_errors():
        original = media.extract_audio(source_media["media"].path, work / "original.wav",
                                       stream_index=source_media["audio_stream"])
        separator: Any = stems.get_separator("signal")
        note = ""
        if mode == "high":
            try:
                demucs = stems.get_separator("demucs", allow_download=dubbing.allow_download)
                dialogue, background = demucs.separate(original, work)
                separator = demucs
            except ModelNotFoundError as exc:
                note = f"Demucs unavailable, signal separation used: {exc}"
                context.log.warning(note)
        if separator.name == "signal":
            dialogue, background = separator.separate(original, work)
    info = dict(getattr(separator, "last_info", {}) or {})
    context.add_output_metadata({"separator": getattr(separator, "name", type(separator).__name__), "note": note,
                                 "mode": info.get("mode", ""), "speech_s": info.get("speech_s", 0.0),
                                 "sample_rate": info.get("sample_rate", 0), "channels": info.get("channels", 0)})
    return {"original": MediaHandle(str(original), "audio"), "dialogue": MediaHandle(str(dialogue), "audio"),
            "background": MediaHandle(str(background), "audio"), "info": info}


def _subtitle_roles(source_media: dict[str, Any], target: str) -> dict[str, Any]:
    """Which of the episode's subtitle tracks is the script and which the translation (see core)."""
    from dubbing_assets.core.subtitles import subtitle_roles

    return subtitle_roles(source_media["subtitles"], source_language=source_media.get("audio_language"),
                          target_language=target)


def _target(source_media: dict[str, Any], dubbing: DubbingResource) -> str:
    return source_media["record"].get("target_lang") or dubbing.settings.target_lang


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"python"}, code_version="1", pool=GPU_POOL,
          description="Timed lines: the episode's own subtitles (Actor = speaker) or faster-whisper ASR.")
def script(context: dg.AssetExecutionContext, dubbing: DubbingResource, source_media: dict[str, Any],
           audio_stems: dict[str, Any]) -> dict[str, Any]:
    from dubbing_assets.core.media import normalize_language
    from dubbing_assets.core.subtitles import describe_track

    settings = dubbing.settings
    roles = _subtitle_roles(source_media, _target(source_media, dubbing))
    track = roles["script"] if settings.script_source == "subtitles-first" else None
    with user_errors():
        if track is not None:
            from dubbing_assets.core.subtitles import script_from_subtitles

            result = script_from_subtitles(track["file"].path, normalize_language(track.get("language")))
            result.meta["subtitle"] = describe_track(track) | {"why": roles["reasons"]["script"]}
            context.log.info(f"script from subtitles: {roles['reasons']['script']}")
        else:
            from dubbing_assets.core.asr import Transcriber

            transcriber = Transcriber(settings.asr_model, registry=dubbing.registry, device=settings.device)
            result = transcriber.transcribe(audio_stems["dialogue"].path,
                                            language=normalize_language(source_media.get("audio_language")))
            context.log.info(f"script from ASR ({result.meta.get('model')}, language {result.language})")
            from dubbing_assets.core.diarize import split_turns

            result, splits = split_turns(result, audio_stems["dialogue"].path)  # one speaker per line
            if splits:
                context.log.info(f"split {len(splits)} ASR lines at a change of voice: "
                                 + ", ".join(f"line {s['line']} at {s['at_s']:.2f}s" for s in splits))
    if not result.lines:
        raise dg.Failure(description="No dialogue found: the subtitles hold no dialogue lines and ASR heard no "
                                     "speech. Check the audio track, or supply subtitles.")
    rows = [{"#": ln.index, "start": f"{ln.start:.2f}", "end": f"{ln.end:.2f}", "speaker": ln.speaker,
             "text": ln.text[:80] if settings.metadata_dialogue else "(hidden)"} for ln in result.lines]
    why = roles["reasons"].get("script", "") if track is not None else \
        f"ASR ({'DUBBING_SCRIPT_SOURCE=asr' if settings.script_source == 'asr' else 'no text subtitles'})"
    context.add_output_metadata({"source": result.source, "language": result.language,
                                 "lines": len(result.lines), "script_from": why,
                                 "preview": dg.MetadataValue.md(md_table(rows[:40], list(rows[0])))})
    return result.to_dict()


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"torch"}, code_version="1",
          description="Who speaks each line: subtitle Actor names, or diarization (Resemblyzer embeddings, "
                      "agglomerative clustering); one embedding per speaker for the voice bank.")
def speakers(context: dg.AssetExecutionContext, script: dict[str, Any],
             audio_stems: dict[str, Any]) -> dict[str, Any]:
    from dubbing_assets.core.audio_io import load_audio_mono16k
    from dubbing_assets.core.diarize import diarize, speakers_from_subtitles
    from dubbing_assets.core.voicerange import median_f0

    sc = Script.from_dict(script)
    with user_errors():
        audio = load_audio_mono16k(audio_stems["dialogue"].path)
        if sc.source == "subtitles" and sc.meta.get("speakers_named"):
            result = speakers_from_subtitles(sc, audio)
        else:
            result = diarize(audio, sc)
    by_index = {ln.index: ln for ln in sc.lines}
    for sp in result.speakers:
        f0 = median_f0(audio, [(by_index[i].start, by_index[i].end) for i in sp.lines if i in by_index])
        sp.f0_hz = round(f0, 1) if f0 else None
    low = result.meta.get("low_confidence") or []
    if low:
        context.log.warning(f"speaker unsure for lines {low}: check them in the QA report's Characters section")
    context.add_output_metadata({"method": result.method, "speakers": len(result.speakers),
                                 "low_confidence_lines": len(low),
                                 "speakers_chosen_by": str(result.meta.get("speakers_chosen_by", result.method)),
                                 "labels": ", ".join(s.label for s in result.speakers),
                                 "median_f0_hz": ", ".join(f"{s.label} {s.f0_hz}" for s in result.speakers)})
    return result.to_dict()


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"python"}, code_version="1",
          description="One target-language line per script line (whisper-translate, the episode's subtitles, "
                      "CTranslate2 or passthrough); glossary applied; review edits win.")
def translation(context: dg.AssetExecutionContext, dubbing: DubbingResource, script: dict[str, Any],
                speakers: dict[str, Any], source_media: dict[str, Any],
                audio_stems: dict[str, Any], cast: dict[str, Any]) -> dict[str, Any]:
    from dubbing_assets.core import review, translate
    from dubbing_assets.core.diarize import apply_speakers
    from dubbing_assets.core.subtitles import subtitle_report

    settings = dubbing.settings
    record = source_media["record"]
    target = _target(source_media, dubbing)
    sc = apply_speakers(Script.from_dict(script), Speakers.from_dict(speakers))
    roles = _subtitle_roles(source_media, target)
    own = roles["translation"]
    with user_errors():
        engine = settings.translation_engine
        if engine == "auto":
            engine = translate.choose_engine(sc, target, subtitle_languages=[own["language"]] if own else [],
                                             registry=dubbing.registry)
        kwargs: dict[str, Any] = {}
        if engine == "whisper-translate":
            kwargs = {"registry": dubbing.registry, "device": settings.device,
                      "candidates": settings.translation_candidates}
        elif engine == "ctranslate2":
            kwargs = {"registry": dubbing.registry, "candidates": settings.translation_candidates}
        translator = translate.get_translator(engine, **kwargs)
        result: Translation = translator.translate(sc, target, subtitles=own["file"].path if own else None,
                                                   audio=audio_stems["dialogue"].path)
        fit_info = _fit_readings(context, dubbing, result, cast, source_media) \
            if any(ln.alternatives for ln in result.lines) else {}
        if fit_info:
            result = fit_info.pop("translation")
        result.meta["subtitles"] = subtitle_report(sc, roles, engine)
        # lines whose speaker the diarization was unsure of: QA lists them for review
        result.meta["speaker_low_confidence"] = list((speakers.get("meta") or {}).get("low_confidence") or [])
        glossary = review.load_glossary(settings.output, record["series"])
        if glossary:
            result = translate.apply_glossary(result, glossary)
        edits = review.apply_review(settings.review, context.partition_key, result)
    context.log.info(f"translated {len(result.lines)} lines with {engine}; {edits} edited in review")
    shown = settings.metadata_dialogue  # dialogue in event metadata only when asked for (DUBBING_METADATA_DIALOGUE)
    rows = [{"#": ln.index, "speaker": ln.speaker, "source": ln.source_text[:50] if shown else "(hidden)",
             "text": ln.text[:70] if shown else "(hidden)",
             "glossary": "ok" if ln.glossary_ok else ",".join(ln.glossary_missing)}
            | ({"fit": _fit_cell(ln), "chosen": ln.chosen_by or ""} if fit_info else {}) for ln in result.lines]
    context.add_output_metadata({"engine": engine, "target": target, "lines": len(result.lines),
                                 "review_edits": edits, **fit_info,
                                 "translation_from": result.meta["subtitles"]["translation"]["why"],
                                 "preview": dg.MetadataValue.md(md_table(rows[:40], list(rows[0])) if rows else "")})
    return result.to_dict()


def _fit_cell(line: Any) -> str:
    chosen = next((a for a in line.alternatives if a.get("text") == line.text and "seconds" in a), None)
    if chosen is None or not line.slot_s:
        return ""
    return f"{chosen['seconds']:.2f}/{line.slot_s:.2f}s"


def _fit_readings(context: dg.AssetExecutionContext, dubbing: DubbingResource, result: Translation,
                  cast: dict[str, Any], source_media: dict[str, Any]) -> dict[str, Any]:
    """core.fit_choice with the cast's voices; the figures for the metadata, the translation under "translation"."""
    from dubbing_assets.core.fit_choice import choose_for_cast
    from dubbing_assets.core.model import Voice
    from dubbing_assets.core.tts import get_engine
    from dubbing_assets.core.voicebank import user_cache_dir

    voices = {label: Voice(**v) for label, v in cast["voices"].items()}
    end = float(source_media["probe"].get("duration_s") or max(ln.end for ln in result.lines) + 1.0)
    chosen, figures = choose_for_cast(result, voices, lambda name: get_engine(name, registry=dubbing.registry),
                                      [dubbing.settings.cache, user_cache_dir()], media_end=end, log=context.log.info)
    return {**figures, "translation": chosen}
