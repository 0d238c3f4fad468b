"""Locating and running ffmpeg.

Order: `DUBBING_FFMPEG`, then `ffmpeg` on PATH, then the static binary that
`imageio-ffmpeg` ships (so a pip-only machine has one). There may be no
ffprobe: probing goes through PyAV (`core.media`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from dubbing_assets.errors import EngineError, ToolNotFoundError


@lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary to use; raises ToolNotFoundError with a fix."""
    explicit = os.environ.get("DUBBING_FFMPEG", "").strip()
    if explicit:
        if Path(explicit).is_file():
            return explicit
        raise ToolNotFoundError(f"DUBBING_FFMPEG={explicit!r} does not exist; point it at an ffmpeg binary.")
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        raise ToolNotFoundError(
            "ffmpeg not available; install ffmpeg (apt-get install ffmpeg) or `pip install imageio-ffmpeg`."
        ) from exc


def run_ffmpeg(args: Sequence[str | Path], *, what: str, timeout: float | None = 3600) -> str:
    """Run ffmpeg with `args` (no shell); return stderr; raise EngineError with its tail on failure.

    `what` says in words what the call was for, so an error reads
    "ffmpeg failed while <what>: ..." rather than a bare exit code.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *[str(a) for a in args]]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"ffmpeg timed out after {timeout}s while {what}.") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise EngineError(f"ffmpeg failed while {what} (exit {proc.returncode}):\n{tail}")
    return proc.stderr
