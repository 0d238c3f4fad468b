"""A before/after contact sheet and a short clip, for a person to judge the sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.fsutil import atomic_path
from dubbing_assets.core.lipsync.video import frame_at, open_video, video_info
from dubbing_assets.errors import EngineError


def preview(
    before: Path,
    after: Path,
    out_png: Path,
    *,
    frames: int = 4,
    clip_out: Path | None = None,
    clip_start_s: float = 0.0,
    clip_seconds: float = 10.0,
    thumb_width: int = 320,
) -> dict[str, Any]:
    """A contact sheet PNG (rows of before | after at evenly spaced times) and an optional clip.

    The clip is `after` from `clip_start_s`, at most `clip_seconds` (capped at
    10 s), re-encoded H.264/AAC so a browser plays it. Returns the paths and
    the sampled times.
    """
    import cv2

    clip_seconds = min(float(clip_seconds), 10.0)
    cap = open_video(Path(before))
    fps, count, _, _ = video_info(cap)
    cap.release()
    duration = count / fps if count > 0 else clip_seconds
    times = [duration * (k + 0.5) / frames for k in range(max(1, frames))]
    rows = []
    for t in times:
        pair = []
        for src in (before, after):
            frame = frame_at(Path(src), t)
            if frame is None:
                frame = np.zeros((180, 320, 3), dtype=np.uint8)
            scale = thumb_width / frame.shape[1]
            thumb = cv2.resize(frame, (thumb_width, max(1, int(frame.shape[0] * scale))))
            pair.append(thumb)
        height = max(p.shape[0] for p in pair)
        pair = [cv2.copyMakeBorder(p, 0, height - p.shape[0], 0, 4, cv2.BORDER_CONSTANT) for p in pair]
        row = np.hstack(pair)
        cv2.putText(row, f"{t:6.2f}s  before | after", (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(row)
    sheet = np.vstack(rows)
    out_png = Path(out_png)
    with atomic_path(out_png, ".png") as tmp_png:
        if not cv2.imwrite(str(tmp_png), sheet):
            raise EngineError(f"Could not write the contact sheet {out_png}.")
    result: dict[str, Any] = {"contact_sheet": str(out_png), "times": times, "clip": None}
    if clip_out is not None:
        from dubbing_assets.core.ffmpeg import run_ffmpeg

        clip_out = Path(clip_out)
        with atomic_path(clip_out, clip_out.suffix or ".mp4") as tmp_clip:
            run_ffmpeg(["-ss", f"{max(0.0, clip_start_s):.3f}", "-i", after, "-t", f"{clip_seconds:.3f}",
                        "-map", "0:v:0", "-map", "0:a:0?", "-c:v", "libx264", "-preset", "veryfast",
                        "-pix_fmt", "yuv420p", "-c:a", "aac", tmp_clip], what="cutting the lip-sync preview clip")
        result["clip"] = str(clip_out)
    return result
