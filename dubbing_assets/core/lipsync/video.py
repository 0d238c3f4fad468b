"""Video I/O for lip sync: OpenCV readers, frame streams, one frame at a time, the exact frame rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.errors import MediaError


def video_info(cap: Any) -> tuple[float, int, int, int]:
    import cv2

    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    return fps, count, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))


def open_video(path: Path) -> Any:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MediaError(f"OpenCV cannot read the video {path.name}; check the file (or its codec).")
    return cap


def frames(path: Path) -> Any:
    cap = open_video(path)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()

def frame_rate(video: Path) -> str | None:
    """The video stream's exact frame rate as ffmpeg writes it (``"30000/1001"``), or None."""
    try:
        import av

        with av.open(str(video)) as container:
            rate = container.streams.video[0].average_rate or container.streams.video[0].base_rate
        return f"{rate.numerator}/{rate.denominator}" if rate else None
    except Exception:  # noqa: BLE001 - the float fps from OpenCV is the fallback
        return None

def frame_at(path: Path, t: float) -> np.ndarray | None:
    import cv2

    cap = open_video(path)
    try:
        cap.set(cv2.CAP_PROP_POS_MSEC, max(0.0, t) * 1000.0)
        ok, frame = cap.read()
        return frame if ok else None
    finally:
        cap.release()
