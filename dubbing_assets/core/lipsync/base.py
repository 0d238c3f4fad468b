"""What every lip-sync plugin shares: the result, the plugin protocol, face boxes and the reasons."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: Entry-point group that lip-sync plugins register under.
LIPSYNC_GROUP = "dubbing_assets.lipsync"  # = plugins.LIPSYNC, the group pyproject.toml declares
#: Model-registry name of the Wav2Lip checkpoint (a ``.pth`` file, or a folder holding one).
WAV2LIP_MODEL = "wav2lip"
#: What a result says when the detector found no face in any frame.
NO_FACE = "no face found"
#: What a result says (before the details) when no face detector can run here.
NO_DETECTOR = "face detector unavailable"

#: A face box: (x1, y1, x2, y2) in pixels of the full frame.
Box = tuple[int, int, int, int]
#: A detector: one BGR frame -> the face box to sync, or None.
Detector = Callable[[np.ndarray], Box | None]

@dataclass
class LipSyncResult:
    """What a plugin did to one video."""

    video_path: str  # the synced video, or the untouched input when nothing was synced
    synced: bool
    reason: str | None  # why not synced (None when synced)
    plugin: str
    frames: int = 0
    face_frames: int = 0
    fps: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class LipSyncPlugin(Protocol):
    """What the high-mode job needs from a lip-sync engine."""

    name: str

    @property
    def version(self) -> str:
        """Changes whenever the same inputs would give a different video (cache key)."""
        ...

    def sync(self, video: Path, audio: Path, out_video: Path) -> LipSyncResult:
        """Re-render the mouths of `video` to follow `audio` into `out_video` (never fails on no face)."""
        ...
