"""Faces and mouths: the Haar-cascade detector, box smoothing, the mouth region and its feathered paste mask."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dubbing_assets.core.lipsync.base import Box, Detector
from dubbing_assets.errors import ModelNotFoundError, ToolNotFoundError


def mouth_box(face: Box) -> Box:
    """The part of a face box that lip-sync re-renders: the lower half, less the outer sixths.

    Wav2Lip is given the upper half as reference and generates the lower
    half; its cheeks and jaw edges are where the generated face drifts from
    the source most, so they are left as they were.
    """
    x1, y1, x2, y2 = face
    inset = (x2 - x1) // 6
    return (x1 + inset, y1 + (y2 - y1) // 2, x2 - inset, y2)


def feather(h: int, w: int, edge: int) -> np.ndarray:
    """An (h, w, 1) blend mask: 1 inside, ramping to 0 over `edge` pixels at every border."""
    edge = max(1, min(edge, h // 2, w // 2))
    ramp_y = np.minimum(np.arange(h), np.arange(h)[::-1]).clip(0, edge) / edge
    ramp_x = np.minimum(np.arange(w), np.arange(w)[::-1]).clip(0, edge) / edge
    return np.minimum(ramp_y[:, None], ramp_x[None, :])[..., None].astype(np.float32)

# --------------------------------------------------------------------------------------------
# face detection


def haar_detector(*, max_side: int = 480, min_size_frac: float = 0.08) -> Detector:
    """OpenCV's frontal-face Haar cascade (shipped in ``cv2.data``): the largest face, or None.

    Frames are scaled so their longer side is at most `max_side` for speed;
    faces smaller than `min_size_frac` of the shorter side are ignored.
    """
    import cv2

    data = getattr(getattr(cv2, "data", None), "haarcascades", "")
    cascade_path = Path(data) / "haarcascade_frontalface_default.xml"
    if not hasattr(cv2, "CascadeClassifier") or not cascade_path.is_file():
        raise ToolNotFoundError(
            f"OpenCV {cv2.__version__} has no Haar face cascade (OpenCV 5 dropped CascadeClassifier and "
            "cv2.data's XML files); install opencv-python-headless<5 for lip sync."
        )
    cascade = cv2.CascadeClassifier(str(cascade_path))
    if cascade.empty():
        raise ModelNotFoundError(f"OpenCV's Haar cascade at {cascade_path} does not load; reinstall opencv.")

    def detect(frame: np.ndarray) -> Box | None:
        h, w = frame.shape[:2]
        scale = min(1.0, max_side / max(h, w))
        small = cv2.resize(frame, (int(w * scale), int(h * scale))) if scale < 1.0 else frame
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))
        min_px = max(16, int(min(small.shape[:2]) * min_size_frac))
        faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_px, min_px))
        if len(faces) == 0:
            return None
        x, y, fw, fh = max(faces, key=lambda f: int(f[2]) * int(f[3]))
        return (int(x / scale), int(y / scale), int((x + fw) / scale), int((y + fh) / scale))

    return detect


def smooth_boxes(boxes: Sequence[Box | None], window: int = 5) -> list[Box | None]:
    """Average each present box with the present boxes in a `window` around it (less jitter)."""
    out: list[Box | None] = []
    for i, box in enumerate(boxes):
        if box is None:
            out.append(None)
            continue
        near = [b for b in boxes[max(0, i - window // 2): i + window // 2 + 1] if b is not None]
        out.append(tuple(int(round(v)) for v in np.mean(np.asarray(near, dtype=np.float64), axis=0)))  # type: ignore[misc]
    return out
