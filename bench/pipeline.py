"""The whole low-mode pipeline against its raw-engine floor, measured in the same run (issue 15).

    PYTHONPATH=. .venv/bin/python bench/pipeline.py [--runs 3] [--seconds 146] [--executor multiprocess]
    PYTHONPATH=. .venv/bin/python bench/pipeline.py --long [1440]   # short clip vs a 24-minute one: RTF, RSS

The clip: `en_monologue.mp4` concatenated to about `--seconds` (English, one speaker, ASR path,
re-voiced in English). Each run measures, on that clip:

- the floor: raw engine calls in this process, models loaded first: decode to 16 kHz; faster-whisper
  (tiny.en, VAD) once; Piper for every line; the speaker embeddings of every line (d-vector and
  Resemblyzer); one ffmpeg call that encodes the placed dub to AAC and muxes it; and, as QA's floor,
  one more tiny.en pass over the dub;
- the pipeline: a real `dagster-daemon` on an embedded SQLite instance in a temporary home,
  `dubbing instance init`, `dubbing submit`, `dubbing wait`; each stage's time from its step events.

It prints each stage beside its floor (ASR = script, TTS = dub_speech, embeddings = speakers,
mux = dubbed_video, QA ASR = qa_report), the end-to-end ratio (submit to delivered over the floor
with QA) and the orchestration share (time in no step: process starts, queueing, sensor latency),
then the minimum and spread over the runs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SOURCE = ROOT / "dubbing_assets_tests" / "data" / "media" / "en_monologue.mp4"
STAGE_FLOOR = {"script": "asr", "speakers": "embeddings", "dub_speech": "tts", "dubbed_video": "mux",
               "qa_report": "qa_asr"}


def build_clip(out: Path, seconds: float) -> Path:
    from dubbing_assets.core.ffmpeg import run_ffmpeg
    from dubbing_assets.core.media import probe

    each = float(probe(SOURCE).get("duration_s") or 10.48)
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{SOURCE}'\n" for _ in range(max(1, round(seconds / each)))))
    run_ffmpeg(["-f", "concat", "-safe", "0", "-i", listing, "-c", "copy", out], what="concatenating the clip")
    listing.unlink()
    return out


def floor(clip: Path, work: Path) -> dict[str, float]:
    """The raw engine work of one episode, each part timed on its own."""
    from dubbing_assets.core import diarize
    from dubbing_assets.core.asr import Transcriber
    from dubbing_assets.core.audio_io import load_audio_mono16k
    from dubbing_assets.core.contracts import Voice
    from dubbing_assets.core.ffmpeg import run_ffmpeg
    from dubbing_assets.core.tts import get_engine

    times: dict[str, float] = {}
    # bare faster-whisper (the model the pipeline's ASR stage picks for English), models loaded before the
    # clock starts, as a warm worker has them
    transcriber = Transcriber("auto", device="cpu")
    model = transcriber.load(transcriber.model_name_for("en"))
    piper = get_engine("piper")
    voice = Voice(engine="piper", voice=piper.voices()[0])
    noise = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    diarize.embed_span(noise, 0.0, 1.0)
    diarize.embed_span_dvector(noise, 0.0, 1.0)
    piper.synthesize("warm up", voice, work / "warm.wav")

    def transcribe(samples: np.ndarray) -> list[tuple[float, float, str]]:
        segments, _ = model.transcribe(samples, language="en", vad_filter=True, beam_size=5)
        return [(s.start, s.end, s.text.strip()) for s in segments if s.text.strip()]

    t = time.perf_counter()
    audio = load_audio_mono16k(clip)
    times["decode"] = time.perf_counter() - t
    t = time.perf_counter()
    lines = transcribe(audio)
    times["asr"] = time.perf_counter() - t
    t = time.perf_counter()
    for start, end, _ in lines:
        diarize.embed_span_dvector(audio, start, end)
        diarize.embed_span(audio, start, end)
    times["embeddings"] = time.perf_counter() - t
    t = time.perf_counter()
    clips = []
    for n, (start, _, text) in enumerate(lines):
        clips.append((start, piper.synthesize(text, voice, work / f"line{n}.wav").path))
    times["tts"] = time.perf_counter() - t

    import soundfile as sf

    rate = 22050
    dub = np.zeros(int((len(audio) / 16000 + 5) * rate), dtype=np.float32)
    for start, path in clips:
        data, sr = sf.read(path, dtype="float32")
        a = int(start * sr)
        dub[a:a + len(data)] += data[: max(0, len(dub) - a)]
    dub_wav = work / "dub.wav"
    sf.write(dub_wav, dub, rate)
    t = time.perf_counter()
    run_ffmpeg(["-i", clip, "-i", dub_wav, "-map", "0:v", "-map", "1:a", "-map", "0:a", "-c:v", "copy",
                "-c:a", "aac", "-b:a", "192k", "-shortest", work / "floor.mkv"], what="the floor's mux")
    times["mux"] = time.perf_counter() - t
    t = time.perf_counter()
    transcribe(load_audio_mono16k(dub_wav))
    times["qa_asr"] = time.perf_counter() - t
    times["total"] = sum(v for k, v in times.items() if k != "qa_asr")
    times["total_with_qa"] = times["total"] + times["qa_asr"]
    return times


class PeakRss:
    """Peak resident memory (VmHWM) of the daemon and every process below it, sampled once a second: the run
    worker (every stage, under the in-process executor), the code server, ffmpeg children."""

    def __init__(self, root: int) -> None:
        import threading

        self.root, self.peaks, self.names = root, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        from dubbing_assets_tests.e2e_helpers import process_tree

        while not self._stop.is_set():
            tree = process_tree([self.root])
            for pid in tree:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    hwm = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmHWM:"))
                    self.peaks[pid] = max(self.peaks.get(pid, 0), hwm * 1024)
                    if pid not in self.names:
                        self.names[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(
                            b"\0", b" ")[:120].decode(errors="replace")
                except (OSError, StopIteration, IndexError, ValueError):
                    continue
            self._stop.wait(1.0)

    def stop(self) -> tuple[float, str]:
        """(the largest process's peak in bytes, its command line)."""
        self._stop.set()
        self._thread.join(10)
        if not self.peaks:
            return float("nan"), ""
        pid = max(self.peaks, key=self.peaks.get)
        return float(self.peaks[pid]), self.names.get(pid, "")


def pipeline(clip: Path, root: Path, executor: str = "") -> dict[str, float]:
    """Submit to delivered through a real daemon; the run's step times from its event log."""
    import dagster as dg

    from dubbing_assets_tests.e2e_helpers import REPO, make_home, start_daemon

    e2e = make_home(root, owner="bench", extra_env={"DUBBING_EXECUTOR": executor} if executor else None)
    try:
        e2e.dubbing("instance", "init")
        start_daemon(e2e, REPO / "workspace.yaml")
        rss = PeakRss(e2e.procs.procs["daemon"].pid)
        t, t_wall = time.monotonic(), time.time()
        key = e2e.submit(clip, "Bench Series", "e01", "--to", "en")
        t_submitted = time.time()
        waited = e2e.wait(key, 7200)
        total = time.monotonic() - t
        peak_rss, peak_cmd = rss.stop()
        if waited.returncode != 0:
            raise SystemExit(f"the pipeline run failed:\n{waited.stdout}\n{waited.stderr}\n{e2e.diagnostics()}")
        with dg.DagsterInstance.from_config(str(e2e.dagster_home)) as instance:
            (run,) = instance.get_runs(dg.RunsFilter(tags={"dubbing/episode": key}))
            record = instance.get_run_record_by_id(run.run_id)
            starts, ends = {}, {}
            for event in instance.get_records_for_run(run.run_id, limit=10000).records:
                entry = event.event_log_entry
                kind = entry.dagster_event.event_type if entry.dagster_event else None
                if kind == dg.DagsterEventType.STEP_START:
                    starts[entry.step_key] = entry.timestamp
                elif kind == dg.DagsterEventType.STEP_SUCCESS:
                    ends[entry.step_key] = entry.timestamp
        steps = {k: ends[k] - starts[k] for k in ends if k in starts}
        # where the time outside the stages goes: the `dubbing submit` command (validate, copy, hash), then to
        # the run's creation (the sensor's tick: up to 5 s apart, Dagster's floor), creation to the
        # worker's start (queue, launch, imports), start to the first stage, between stages, after the last
        # stage to the run's end, and the run's end to `dubbing wait` returning
        created, started, ended = record.create_timestamp.timestamp(), record.start_time, record.end_time
        first, last = min(starts.values()), max(ends.values())
        breakdown = {"submit": t_submitted - t_wall, "sensor": created - t_submitted,
                     "queue_launch": started - created, "to_first_stage": first - started,
                     "between_stages": (last - first) - sum(steps.values()), "to_run_end": ended - last,
                     "wait_return": (t_wall + total) - ended}
        print(f"peak RSS {peak_rss / 2**30:.2f} GiB ({peak_cmd[:80]})", flush=True)
        return {"total": total, "peak_rss": peak_rss, **{f"step:{k}": v for k, v in steps.items()},
                **{f"orch:{k}": v for k, v in breakdown.items()}, "orchestration": total - sum(steps.values())}
    finally:
        e2e.procs.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=146.0)
    parser.add_argument("--executor", default="", help="DUBBING_EXECUTOR for the daemon (default: the project's)")
    parser.add_argument("--long", type=float, nargs="?", const=1440.0, default=None, metavar="SECONDS",
                        help="instead: the pipeline on the short clip, then on a clip of SECONDS (default 24 min); "
                             "the RTF of each and the run worker's peak RSS")
    args = parser.parse_args()
    if args.long:
        return long_run(args.seconds, args.long, args.executor)
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        clip = build_clip(tmp / "bench_clip.mp4", args.seconds)
        results = []
        for n in range(args.runs):
            work = tmp / f"floor{n}"
            work.mkdir()
            f = floor(clip, work)
            p = pipeline(clip, tmp / f"run{n}", args.executor)
            results.append((f, p))
            print(f"run {n + 1}: floor {f['total']:.1f} s (+QA ASR {f['qa_asr']:.1f} s), pipeline {p['total']:.1f} s: "
                  f"{p['total'] / f['total']:.2f}x the floor (issue 15's measure, goal <= 1.9), "
                  f"{p['total'] / f['total_with_qa']:.2f}x the floor with QA; orchestration "
                  f"{100 * p['orchestration'] / p['total']:.0f} %", flush=True)
        print("\n| stage | pipeline s (min) | floor s (min) | ratio (min) | ratio spread |\n|---|---|---|---|---|")
        for stage, part in STAGE_FLOOR.items():
            ratios = [p.get(f"step:{stage}", float("nan")) / f[part] for f, p in results]
            print(f"| {stage} vs {part} | {min(p.get(f'step:{stage}', float('nan')) for _, p in results):.1f} | "
                  f"{min(f[part] for f, _ in results):.1f} | {min(ratios):.2f} | "
                  f"{min(ratios):.2f}-{max(ratios):.2f} |")
        bare = [p["total"] / f["total"] for f, p in results]
        print(f"| end to end vs floor | {min(p['total'] for _, p in results):.1f} | "
              f"{min(f['total'] for f, _ in results):.1f} | {min(bare):.2f} | {min(bare):.2f}-{max(bare):.2f} |")
        totals = [p["total"] / f["total_with_qa"] for f, p in results]
        shares = [p["orchestration"] / p["total"] for _, p in results]
        print(f"| end to end vs floor with QA | {min(p['total'] for _, p in results):.1f} | "
              f"{min(f['total_with_qa'] for f, _ in results):.1f} | {min(totals):.2f} | "
              f"{min(totals):.2f}-{max(totals):.2f} |")
        print(f"\norchestration share: min {100 * min(shares):.0f} %, median {100 * statistics.median(shares):.0f} %")
        parts = sorted({k for _, p in results for k in p if k.startswith("orch:")})
        print("orchestration (s, min over runs): " + ", ".join(
            f"{k[5:]} {min(p.get(k, float('nan')) for _, p in results):.1f}" for k in parts))
        other = sorted({k for _, p in results for k in p if k.startswith("step:")} -
                       {f"step:{s}" for s in STAGE_FLOOR})
        print("other stages (s, min over runs): " + ", ".join(
            f"{k[5:]} {min(p.get(k, float('nan')) for _, p in results):.1f}" for k in other))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def long_run(short_s: float, long_s: float, executor: str) -> None:
    """Linear in length, constant in memory: the short clip's pipeline RTF against a long one's, same run."""
    from dubbing_assets.core.media import probe

    tmp = Path(tempfile.mkdtemp(prefix="bench-long-"))
    try:
        rows = []
        for name, seconds in (("short", short_s), ("long", long_s)):
            clip = build_clip(tmp / f"{name}.mp4", seconds)
            duration = float(probe(clip)["duration_s"])
            p = pipeline(clip, tmp / f"run-{name}", executor)
            rows.append((name, duration, p))
            print(f"{name}: {duration:.0f} s clip, submit to delivered {p['total']:.1f} s, RTF "
                  f"{p['total'] / duration:.3f}, peak RSS {p['peak_rss'] / 2**30:.2f} GiB", flush=True)
        (_, d_short, p_short), (_, d_long, p_long) = rows
        ratio = (p_long["total"] / d_long) / (p_short["total"] / d_short)
        print(f"\nlong RTF / short RTF = {ratio:.3f} (goal <= 1.10); peak RSS {p_long['peak_rss'] / 2**30:.2f} GiB "
              "(goal < 3 GiB)")
        print("long run's stages (s): " + ", ".join(f"{k[5:]} {v:.1f}" for k, v in p_long.items()
                                                       if k.startswith("step:")))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
