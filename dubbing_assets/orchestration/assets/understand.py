"""Stages 1-5 as assets: each calls its `core.stages` function and shows the result as metadata."""

import dagster as dg

from dubbing_assets.core.contracts import Cast, Script, SourceMedia, Speakers, Stems, Translation
from dubbing_assets.core.stages import understand as stage
from dubbing_assets.orchestration.assets.common import GPU_POOL, GROUP, PARTITIONS, md_table, user_errors
from dubbing_assets.orchestration.resources import DubbingResource


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"ffmpeg"}, code_version="1",
          description="The episode file: probed, validated, fingerprinted; text subtitles extracted.")
def source_media(context: dg.AssetExecutionContext, dubbing: DubbingResource) -> SourceMedia:
    with user_errors():
        src = stage.source_media(dubbing.for_step(context), context.partition_key)
    tracks = [t.as_mapping() for t in src.subtitles]
    context.add_output_metadata({
        "source": src.record.source, "fingerprint": src.fingerprint[:16], "duration_s": src.probe.get("duration_s"),
        "container": src.probe.get("container"),
        "streams": dg.MetadataValue.md(md_table(src.streams, ["index", "type", "codec", "language", "title"])),
        "subtitle_tracks": len(tracks),
        "subtitles": dg.MetadataValue.md(md_table(tracks, ["name", "kind", "language", "language_from",
                                                           "language_note"]) if tracks else "none"),
    })
    return src


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"numpy"}, code_version="1",
          description="Dialogue and background stems at the source's rate and layout (low mode: "
                      "centre/mid-side/VAD signal processing; high mode: Demucs when installed).")
def audio_stems(context: dg.AssetExecutionContext, dubbing: DubbingResource, source_media: SourceMedia) -> Stems:
    with user_errors():
        stems = stage.audio_stems(dubbing.for_step(context), source_media)
    info = stems.info
    context.add_output_metadata({"separator": stems.separator, "note": stems.note, "mode": info.get("mode", ""),
                                 "speech_s": info.get("speech_s", 0.0), "sample_rate": info.get("sample_rate", 0),
                                 "channels": info.get("channels", 0)})
    return stems


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"python"}, code_version="1", pool=GPU_POOL,
          description="Timed lines: the episode's own subtitles (Actor = speaker) or faster-whisper ASR.")
def script(context: dg.AssetExecutionContext, dubbing: DubbingResource, source_media: SourceMedia,
           audio_stems: Stems) -> Script:
    rt = dubbing.for_step(context)
    with user_errors():
        result = stage.script(rt, source_media, audio_stems)
    shown = rt.settings.metadata_dialogue
    rows = [{"#": ln.index, "start": f"{ln.start:.2f}", "end": f"{ln.end:.2f}", "speaker": ln.speaker,
             "text": ln.text[:80] if shown else "(hidden)"} for ln in result.lines]
    context.add_output_metadata({"source": result.source, "language": result.language,
                                 "lines": len(result.lines), "script_from": result.meta.get("script_from", ""),
                                 "preview": dg.MetadataValue.md(md_table(rows[:40], list(rows[0])))})
    return result


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"torch"}, code_version="1",
          description="Who speaks each line: subtitle Actor names, or diarization (Resemblyzer embeddings, "
                      "agglomerative clustering); one embedding per speaker for the voice bank.")
def speakers(context: dg.AssetExecutionContext, dubbing: DubbingResource, script: Script,
             audio_stems: Stems, source_media: SourceMedia) -> Speakers:
    with user_errors():
        result = stage.speakers(dubbing.for_step(context), script, audio_stems, source_media)
    context.add_output_metadata({"method": result.method, "speakers": len(result.speakers),
                                 "low_confidence_lines": len(result.meta.get("low_confidence") or []),
                                 "speakers_chosen_by": str(result.meta.get("speakers_chosen_by", result.method)),
                                 "labels": ", ".join(s.label for s in result.speakers),
                                 "guided_by_store": str(result.meta.get("guided_by_store") or "no known characters"),
                                 "median_f0_hz": ", ".join(f"{s.label} {s.f0_hz}" for s in result.speakers)})
    return result


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"python"}, code_version="1",
          description="One target-language line per script line (whisper-translate, the episode's subtitles, "
                      "CTranslate2 or passthrough); glossary applied; review edits win.")
def translation(context: dg.AssetExecutionContext, dubbing: DubbingResource, script: Script, speakers: Speakers,
                source_media: SourceMedia, audio_stems: Stems, cast: Cast) -> Translation:
    rt = dubbing.for_step(context)
    with user_errors():
        result = stage.translation(rt, context.partition_key, script, speakers, source_media, audio_stems, cast)
    meta = result.meta
    fit = meta.get("fit") or {}
    shown = rt.settings.metadata_dialogue  # dialogue in event metadata only when asked for
    rows = [{"#": ln.index, "speaker": ln.speaker, "source": ln.source_text[:50] if shown else "(hidden)",
             "text": ln.text[:70] if shown else "(hidden)",
             "glossary": "ok" if ln.glossary_ok else ",".join(ln.glossary_missing)}
            | ({"fit": _fit_cell(ln), "chosen": ln.chosen_by or ""} if fit else {}) for ln in result.lines]
    context.add_output_metadata({"engine": meta.get("engine_chosen", result.engine),
                                 "target": result.target_language, "lines": len(result.lines),
                                 "review_edits": meta.get("review_edits", 0), **fit,
                                 "translation_from": meta["subtitles"]["translation"]["why"],
                                 "preview": dg.MetadataValue.md(md_table(rows[:40], list(rows[0])) if rows else "")})
    return result


def _fit_cell(line) -> str:
    chosen = next((a for a in line.alternatives if a.get("text") == line.text and "seconds" in a), None)
    if chosen is None or not line.slot_s:
        return ""
    return f"{chosen['seconds']:.2f}/{line.slot_s:.2f}s"
