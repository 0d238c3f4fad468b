"""Per-line speed of high-mode XTTS v2 cloning against low-mode Piper, in the same run.

Run in the high-mode environment: ``.venv-high/bin/python bench/highmode.py [--lines 3] [--device cpu|cuda]
[--json out.json]`` (``python3.11 scripts/dev.py setup --high`` makes it).

The XTTS model has the released checkpoint's architecture and sizes (30 GPT
layers of 1024 channels, perceiver conditioning, HiFi-GAN decoder: built from
``XttsConfig`` defaults plus the released config's token settings) with
random weights, written in the checkpoint layout and loaded through
`XTTSEngine` (the real loading, conditioning and inference code). Pass
``--checkpoint DIR`` to time real weights instead.

Random weights never say "stop", so each line's generation is pinned to the
number of GPT audio tokens the released model needs for the audio length
Piper produced for the same text (22050 / 1024 = 21.5 tokens per second);
real XTTS lines vary around that. Each line reports Piper seconds, XTTS
seconds, the audio length, XTTS's real-time factor and ``xtts_vs_piper``
(XTTS time over Piper time for the same text). Model loading and the
per-character conditioning are reported apart: they happen once per engine
and once per character.

Wav2Lip (released sizes, random weights) then lip-syncs a 4 s clip of
scikit-image's astronaut portrait (a real face, found by the Haar cascade),
against a plain H.264 re-encode of the same clip in the same run:
``wav2lip_vs_reencode`` is the lip-sync stage's cost over the encode it
cannot avoid, and ``wav2lip_fps`` its frames per second.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dubbing_assets.core.cloning import cut_references  # noqa: E402
from dubbing_assets.core.contracts import Voice  # noqa: E402
from dubbing_assets.core.tts import PiperEngine  # noqa: E402

MEDIA = ROOT / "dubbing_assets_tests" / "data" / "media"
TOKENS_PER_S = 22050 / 1024


def _texts(n: int) -> list[str]:
    texts = []
    for name in ("ja_two_speakers.script.json", "en_monologue.script.json"):
        texts += [x["text_en"] for x in json.loads((MEDIA / name).read_text(encoding="utf-8"))["lines"]]
    return texts[:n]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=3)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a real XTTS v2 folder instead")
    parser.add_argument("--tiny", action="store_true", help="tiny random model (smoke test of this script)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from dubbing_assets.core.engines.xtts import XTTSEngine
    from dubbing_assets.core.random_models import build_random_xtts, parameter_count

    if args.threads:
        torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(), "lines": []}
    with tempfile.TemporaryDirectory(prefix="bench-highmode-") as tmp:
        work = Path(tmp)
        folder = args.checkpoint
        if folder is None:
            t0 = time.perf_counter()
            folder = build_random_xtts(work / "xtts-v2", tiny=args.tiny)
            out["build_random_s"] = round(time.perf_counter() - t0, 2)
            out["weights"] = "random, tiny" if args.tiny else "random, released sizes"
        else:
            out["weights"] = f"checkpoint {folder}"
        out["parameters"] = parameter_count(folder)

        piper = PiperEngine()
        piper_voice = Voice("piper", piper.default_voice)
        t0 = time.perf_counter()
        piper.synthesize("Warm up.", piper_voice, work / "warm-piper.wav")
        out["piper_load_s"] = round(time.perf_counter() - t0, 2)

        xtts = XTTSEngine(folder, device=args.device)
        t0 = time.perf_counter()
        xtts.model()
        out["xtts_load_s"] = round(time.perf_counter() - t0, 2)
        out["device"] = xtts.device
        if xtts.device.startswith("cuda"):
            out["gpu"] = torch.cuda.get_device_name(0)
        refs = cut_references(MEDIA / "ja_two_speakers.mkv", [(1.021, 3.587), (7.235, 9.301)], work / "refs")
        t0 = time.perf_counter()
        latents = xtts.conditioning(refs)
        out["conditioning_s"] = round(time.perf_counter() - t0, 3)
        voice = Voice("xtts", "xtts-v2", settings={"xtts_latents": latents, "language": "en", "seed": 0})

        for k, text in enumerate(_texts(args.lines)):
            t0 = time.perf_counter()
            low = piper.synthesize(text, piper_voice, work / f"piper-{k}.wav")
            piper_s = time.perf_counter() - t0
            cap = int(xtts.model().gpt.max_gen_mel_tokens) - 1  # the model's own limit (605 - 3 released)
            tokens = max(2, min(cap, math.ceil(low.duration_s * TOKENS_PER_S)))
            xtts.generate_kwargs = {"min_new_tokens": tokens, "max_new_tokens": tokens}
            if xtts.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            high = xtts.synthesize(text, voice, work / f"xtts-{k}.wav")
            if xtts.device.startswith("cuda"):
                torch.cuda.synchronize()
            xtts_s = time.perf_counter() - t0
            row = {"text": text[:48], "audio_s": round(high.duration_s, 2), "gpt_tokens": tokens,
                   "piper_s": round(piper_s, 3), "xtts_s": round(xtts_s, 3),
                   "xtts_rtf": round(xtts_s / max(high.duration_s, 1e-6), 3),
                   "piper_rtf": round(piper_s / max(low.duration_s, 1e-6), 4),
                   "xtts_vs_piper": round(xtts_s / max(piper_s, 1e-6), 1)}
            out["lines"].append(row)
            print(json.dumps(row), flush=True)
        if xtts.device.startswith("cuda"):
            out["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["wav2lip"] = _bench_wav2lip(work, args.device)
        print(json.dumps({"wav2lip": out["wav2lip"]}), flush=True)
    total_x = sum(r["xtts_s"] for r in out["lines"])
    total_p = sum(r["piper_s"] for r in out["lines"])
    total_a = sum(r["audio_s"] for r in out["lines"])
    out["summary"] = {"lines": len(out["lines"]), "xtts_rtf": round(total_x / max(total_a, 1e-6), 3),
                      "xtts_vs_piper": round(total_x / max(total_p, 1e-6), 1)}
    print(json.dumps({k: v for k, v in out.items() if k != "lines"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return out


def _bench_wav2lip(work: Path, device: str | None) -> dict[str, Any]:
    import subprocess

    import cv2
    import numpy as np
    from skimage import data

    from dubbing_assets.core.ffmpeg import ffmpeg_exe, run_ffmpeg
    from dubbing_assets.core.lipsync import Wav2LipPlugin
    from dubbing_assets.core.random_models import build_random_wav2lip

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    clip, dub, n = work / "astronaut.mp4", work / "dub.wav", 100
    enc = subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
                            "-pix_fmt", "bgr24", "-s", "480x480", "-r", "25", "-i", "-", "-c:v", "libx264",
                            "-preset", "veryfast", "-pix_fmt", "yuv420p", str(clip)], stdin=subprocess.PIPE)
    for k in range(n):
        side, x0 = int(440 - 60 * k / n), int(20 + 30 * k / n)
        enc.stdin.write(cv2.resize(image[10:10 + side, x0:x0 + side], (480, 480)).tobytes())
    enc.stdin.close()
    enc.wait()
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=220:duration=4:sample_rate=16000", "-ac", "1", dub],
               what="the dub track")
    t0 = time.perf_counter()
    run_ffmpeg(["-i", clip, "-i", dub, "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast",
                "-crf", "16", "-c:a", "aac", work / "reencoded.mp4"], what="the plain re-encode")
    reencode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ckpt = build_random_wav2lip(work / "wav2lip", width=1.0)
    build_s = time.perf_counter() - t0
    plugin = Wav2LipPlugin(ckpt, device=device)
    t0 = time.perf_counter()
    plugin.model()
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = plugin.sync(clip, dub, work / "synced.mp4")
    sync_s = time.perf_counter() - t0
    params = sum(int(np.prod(v.shape)) for v in plugin.model().state_dict().values())
    return {"parameters": params, "device": plugin.device, "frames": result.frames,
            "face_frames": result.face_frames, "build_random_s": round(build_s, 2), "load_s": round(load_s, 2),
            "sync_s": round(sync_s, 2), "wav2lip_fps": round(result.frames / sync_s, 1),
            "reencode_s": round(reencode_s, 2), "wav2lip_vs_reencode": round(sync_s / max(reencode_s, 1e-6), 1)}


if __name__ == "__main__":
    main()
