"""Stages 6-12 as assets: each calls its `core.stages` function and shows the result as metadata."""

import base64
import warnings
from pathlib import Path
from typing import Any

import dagster as dg

from dubbing_assets.core.contracts import (
    QA,
    Cast,
    Delivery,
    LibraryEntry,
    LipSync,
    Mix,
    Script,
    SourceMedia,
    Speakers,
    Speech,
    Stems,
    Translation,
)
from dubbing_assets.core.stages import render as stage
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


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"python"}, code_version="1",
          description="Speakers matched to the series' encrypted character store; a stable voice per "
                      "character (pin voices in library/<series>/cast.yaml).")
def cast(context: dg.AssetExecutionContext, dubbing: DubbingResource, speakers: Speakers,
         source_media: SourceMedia, script: Script, audio_stems: Stems) -> Cast:
    with user_errors():
        result = stage.cast(dubbing.for_step(context), context.partition_key, speakers, source_media, script,
                            audio_stems)
    voices, high = result.voices, source_media.record.high
    rows = [{"speaker": k, **{f: x for f, x in v.items() if f != "casting"}, "voice": voices[k].voice,
             "pitch": voices[k].pitch_semitones, "gender": (v.get("casting") or {}).get("gender"),
             "cast by": (v.get("casting") or {}).get("why")} for k, v in result.characters.items()]
    context.add_output_metadata({
        "mode": source_media.record.mode, "high_mode": result.high_mode,
        "characters": len(result.characters),
        "new_characters": sum(1 for v in result.characters.values() if v["new"]),
        "voice_bank": result.voice_bank, "pitch_shifted": sum(1 for v in voices.values() if v.pitch_semitones),
        "cast_file": dg.MetadataValue.path(str(result.cast_file)),
        "cast": dg.MetadataValue.md(md_table(rows, ["speaker", "character_id", "name", "similarity", "new",
                                                    "engine", "voice", "pitch", "gender", "cast by"]
                                             + (["reference_s", "conditioning"] if high else []))
                                    if rows else "")})
    return result


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"onnx"}, code_version="1", pool=GPU_POOL,
          description="Each translated line synthesized in its character's voice and fitted to its slot "
                      "(rate, then pitch-kept stretch up to 1.25x, then borrowed silence, then overflow); "
                      "per-line cache so an edit re-synthesizes only that line.")
def dub_speech(context: dg.AssetExecutionContext, dubbing: DubbingResource, translation: Translation,
               cast: Cast, source_media: SourceMedia) -> Speech:
    with user_errors():
        result = stage.dub_speech(dubbing.for_step(context), translation, cast, source_media)
    fits = [c.fit for c in result.clips]
    synthesized = sum(1 for f in fits if f.get("cache_misses"))
    rows = [{"#": f["index"], "start": f"{f['start']:.2f}", "dur": f"{f['duration']:.2f}",
             "rate": f"{f['rate']:.2f}", "stretch": f"{f['stretch']:.2f}", "borrowed": f"{f['borrowed_s']:.2f}",
             "overflow": f"{f['overflow_s']:.2f}", "cached": "no" if f.get("cache_misses") else "yes"}
            for f in fits]
    context.add_output_metadata({
        "lines": len(fits), "lines_from_cache": len(fits) - synthesized, "lines_synthesized": synthesized,
        "cache_hits": result.cache["hits"], "cache_misses": result.cache["misses"],
        "cache_repaired": result.cache.get("repaired", 0),
        "overflows": sum(1 for f in fits if f["overflow_s"] > 0), "engine": result.engine,
        "fit": dg.MetadataValue.md(md_table(rows, list(rows[0])) if rows else "")}
        | ({"cloning": dg.MetadataValue.json(result.cloning)} if result.cloning else {}))
    return result


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"numpy"}, code_version="1",
          description="Dub over the kept background with ducking; loudness normalised (default -23 LUFS, "
                      "true peak <= -1 dBTP); the source's rate and channel layout kept.")
def dub_mix(context: dg.AssetExecutionContext, dubbing: DubbingResource, audio_stems: Stems,
            dub_speech: Speech) -> Mix:
    with user_errors():
        result = stage.dub_mix(dubbing.for_step(context), audio_stems, dub_speech)
    ld = result.loudness
    context.add_output_metadata({"integrated_lufs": round(ld["integrated_lufs"], 2),
                                 "true_peak_db": round(ld["true_peak_db"], 2), "clipped_samples": ld["clipped_samples"],
                                 "layout": ld["layout"], "sample_rate": ld["sample_rate"],
                                 "channels": ld["channels"]})
    return result


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"opencv"}, code_version="1", pool=GPU_POOL,
          description="High mode: lips re-rendered to follow the dub (Wav2Lip plugin, found through entry points); "
                      "with no face (animation, usually) the original video is kept and the reason recorded. "
                      "Low mode: skipped.")
def lip_sync(context: dg.AssetExecutionContext, dubbing: DubbingResource, source_media: SourceMedia,
             dub_mix: Mix) -> LipSync:
    rt = dubbing.for_step(context)
    with user_errors():
        result = stage.lip_sync(rt, context.partition_key, source_media, dub_mix)
    meta: dict[str, Any] = {"synced": result.synced, "reason": result.reason or ""}
    if result.plugin:
        meta |= {"plugin": result.plugin, "face_frames": result.face_frames, "frames": result.frames}
    png = Path(result.preview["contact_sheet"]) if result.preview.get("contact_sheet") else None
    if png is not None and png.exists() and rt.settings.metadata_dialogue:
        meta["preview"] = dg.MetadataValue.md(
            f"![before/after](data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()})")
    elif png is not None and png.exists():  # frames of an unreleased episode stay in its private library folder
        meta["preview"] = dg.MetadataValue.path(str(png))
    context.add_output_metadata(meta)
    return result


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"ffmpeg"}, code_version="1",
          description="The delivery: original video copied, dub as default track, original audio second, "
                      "target-language subtitles plus the originals, chapters kept; written atomically to "
                      "library/<series>/<episode>/.")
def dubbed_video(context: dg.AssetExecutionContext, dubbing: DubbingResource, source_media: SourceMedia,
                 dub_mix: Mix, translation: Translation, lip_sync: LipSync, script: Script) -> Delivery:
    with user_errors():
        result = stage.dubbed_video(dubbing.for_step(context), context.partition_key, source_media, dub_mix,
                                    translation, lip_sync, script)
    context.add_output_metadata({"path": dg.MetadataValue.path(result.path), "size": Path(result.path).stat().st_size,
                                 "streams": dg.MetadataValue.md(md_table(
                                     result.verify.get("streams", []), ["index", "type", "codec", "language",
                                                                        "default"]))})
    return result


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"python"}, code_version="1",
          check_specs=_QA_CHECK_SPECS,
          description="Sync drift, overflows, speed factors, round-trip intelligibility (ASR of the dub), "
                      "loudness and true peak, as a report with a timeline plot and asset checks.")
def qa_report(context: dg.AssetExecutionContext, dubbing: DubbingResource, dub_speech: Speech,
              dub_mix: Mix, translation: Translation, dubbed_video: Delivery, audio_stems: Stems):
    with user_errors():
        report, inline = stage.qa_report(dubbing.for_step(context), context.partition_key, dub_speech, dub_mix,
                                         translation, dubbed_video, audio_stems)
    voices = report.characters
    closest = voices.get("closest_pair") or {}
    yield dg.Output(report, metadata={
        "characters": len(voices["characters"]), "flagged_lines": len(voices["flagged"]),
        "closest_characters_similarity": float(closest.get("similarity", -1.0)),
        **{f"dvector_{k}": float(v["similarity"]) for k, v in (voices.get("dvector") or {}).items() if v},
        "passed": report.passed, "report": dg.MetadataValue.md(inline),
        "report_file": dg.MetadataValue.path(str(report.report_file)), **(report.cloning or {}), **{
            k: v for k, v in report.summary.items() if isinstance(v, int | float | str | bool)}})
    by_name = {c["name"]: c for c in report.checks}
    for name in QA_CHECKS:
        c = by_name.get(name)
        if c is None:
            yield dg.AssetCheckResult(check_name=name, asset_key="qa_report", passed=True,
                                      metadata={"note": "not measured for this episode"})
            continue
        yield dg.AssetCheckResult(check_name=name, asset_key="qa_report", passed=bool(c["passed"]),
                                  severity=dg.AssetCheckSeverity.WARN, description=c["message"],
                                  metadata={"value": float(c["value"]) if c["value"] is not None else -1.0,
                                            "limit": str(c["limit"])})


@dg.asset(partitions_def=PARTITIONS, group_name=GROUP, kinds={"json"}, code_version="1",
          description="manifest.json in the library (private by default) and the per-series index.")
def library_entry(context: dg.AssetExecutionContext, dubbing: DubbingResource, source_media: SourceMedia,
                  dubbed_video: Delivery, qa_report: QA, translation: Translation, dub_speech: Speech,
                  cast: Cast, script: Script) -> LibraryEntry:
    with user_errors():
        result = stage.library_entry(dubbing.for_step(context), context.partition_key, context.run_id,
                                     source_media, dubbed_video, qa_report, translation, dub_speech, cast, script)
    context.add_output_metadata({"manifest": dg.MetadataValue.path(str(Path(result.folder) / "manifest.json")),
                                 "visibility": result.manifest["visibility"], "owner": result.manifest["owner"]})
    return result
