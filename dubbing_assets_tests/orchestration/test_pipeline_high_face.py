"""High mode on a real face: the `lip_sync` stage re-renders the astronaut's mouth and the delivery keeps the
picture's frames and timing.

The clip is scikit-image's astronaut portrait (drifting and zooming a little, so the detector has to track it)
under `ja_two_speakers.mkv`'s audio and subtitles; XTTS v2 and Wav2Lip are the tiny random checkpoints.
Runs in `.venv-high` (marker `highmode`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from dubbing_assets_tests.orchestration.pipeline_helpers import (
    materialization_metadata,
    prepare_episode,
    run_stages,
    step_failures,
)

pytestmark = [pytest.mark.slow, pytest.mark.highmode, pytest.mark.required]

MEDIA = Path(__file__).resolve().parents[1] / "data" / "media"


def _astronaut_episode(out: Path) -> Path:
    import cv2
    from skimage import data

    from dubbing_assets.core.ffmpeg import ffmpeg_exe
    from dubbing_assets.core.media import probe

    source = MEDIA / "ja_two_speakers.mkv"
    seconds = float(probe(source)["duration_s"])
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    n, size = int(seconds * 25), 320
    enc = subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                            "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{size}x{size}", "-r", "25", "-i", "-",
                            "-i", str(source), "-map", "0:v", "-map", "1:a", "-map", "1:s", "-c:v", "libx264",
                            "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "copy", "-c:s", "copy",
                            str(out)], stdin=subprocess.PIPE)
    for k in range(n):
        t = k / max(1, n - 1)
        side = int(440 - 60 * t)
        x0, y0 = int(20 + 30 * t), int(20 + 15 * np.sin(2 * np.pi * t))
        enc.stdin.write(cv2.resize(image[y0:y0 + side, x0:x0 + side], (size, size)).tobytes())
    enc.stdin.close()
    assert enc.wait() == 0
    return out


def test_astronaut_mouth_synced_and_delivered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dubbing_assets.core.mux import verify_delivery
    from dubbing_assets.core.random_models import write_tiny_models
    from dubbing_assets.core.settings import load_settings

    write_tiny_models(tmp_path / "models")
    monkeypatch.setenv("DUBBING_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("DUBBING_CLONE_MIN_SIMILARITY", "-1")
    monkeypatch.setenv("DUBBING_DEVICE", "cpu")
    monkeypatch.setenv("DUBBING_METADATA_DIALOGUE", "on")  # show the frames in the UI (off by default)
    clip = _astronaut_episode(tmp_path / "astronaut.mkv")
    instance, key = prepare_episode(tmp_path / "home", clip=clip, episode="e05", mode="high")
    result = run_stages(instance, key)
    assert result.success, step_failures(result)

    lip = materialization_metadata(result, "lip_sync")
    assert lip["synced"] is True and lip["reason"] == "", lip
    assert lip["face_frames"] / lip["frames"] >= 0.9, lip
    assert "data:image/png;base64," in str(lip["preview"])

    folder = load_settings().output / "alpha-series" / key
    assert (folder / "lipsync_preview.png").stat().st_size > 0 and (folder / "lipsync_preview.mp4").exists()
    delivered, source = verify_delivery(folder / f"{key}.mkv"), verify_delivery(clip)
    assert delivered["video_frames"] == source["video_frames"] == lip["frames"], (delivered, source)
    assert [a["language"] for a in delivered["audio"]] == ["eng", "jpn"], delivered["audio"]

    def video_to_original_audio(info: dict, original: int) -> float:
        video = next(s for s in info["streams"] if s["type"] == "video")
        return video["start_time_s"] - info["audio"][original]["start_time_s"]

    # the re-rendered picture sits where the source's did against the original audio
    assert abs(video_to_original_audio(delivered, 1) - video_to_original_audio(source, 0)) <= 0.001
