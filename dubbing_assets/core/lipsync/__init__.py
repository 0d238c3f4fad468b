"""Lip sync (high mode): make the mouths on screen follow the dub.

A lip-sync engine is a *plugin*: any installed distribution can add one by
declaring an entry point in the group ``dubbing_assets.lipsync`` whose object
is a factory (a class) of `LipSyncPlugin`::

    [project.entry-points."dubbing_assets.lipsync"]
    wav2lip = "dubbing_assets.core.lipsync:Wav2LipPlugin"

    plugin = get_plugin("wav2lip", registry=registry)      # loads nothing yet
    result = plugin.sync(Path("episode.mkv"), Path("dub_mix.wav"), Path("synced.mp4"))
    result.synced, result.reason, result.video_path         # False, "no face found", the input

The built-in plugin is Wav2Lip (the 96x96 lower-face generator of Prajwal et
al. 2020, architecture reimplemented below so a checkpoint in the original
layout loads as it is). Faces are found with OpenCV's Haar cascade shipped in
``cv2.data``; animation often has no face the cascade can see, and then the
plugin says so (``reason="no face found"``) and hands back the unsynced
video instead of failing the episode. Likewise when no detector can run
(OpenCV 5 dropped the Haar cascades: ``reason`` starts with "face detector
unavailable" and says to install ``opencv-python-headless<5``). `preview` writes a contact sheet PNG
(frames before/after) and a short (<= 10 s) clip for a person to judge.

Only the mouth changes: Wav2Lip is shown the upper half of the face and asked
for the lower half, so only that region of its output (`mouth_box`, the
lower half of the face box less its outer sixths) is pasted back, feathered
at the edges; the rest of every frame is the source's, through one H.264
encode at the source's frame rate (frame count and timestamps kept).

Frames stream from disk to disk (OpenCV reader, raw frames piped into one
ffmpeg encode that also muxes the dub); only face boxes and one batch of
crops are held in memory.

The package, by job: `base` (result, protocol, reasons), `faces` (detector, boxes, mouth
mask), `network` (Wav2Lip's mel front end, architecture, checkpoints), `video` (readers,
frames, frame rate), `wav2lip` (the plugin), `preview` (contact sheet and clip). Discovery
is here.
"""

from __future__ import annotations

from typing import Any

from dubbing_assets.core.lipsync.base import (
    LIPSYNC_GROUP,
    NO_DETECTOR,
    NO_FACE,
    WAV2LIP_MODEL,
    Box,
    Detector,
    LipSyncPlugin,
    LipSyncResult,
)
from dubbing_assets.core.lipsync.faces import haar_detector, mouth_box, smooth_boxes
from dubbing_assets.core.lipsync.network import (
    MEL_STEP,
    build_wav2lip,
    load_wav2lip,
    mel_chunks_for,
    resolve_wav2lip_checkpoint,
    wav2lip_mel,
)
from dubbing_assets.core.lipsync.preview import preview
from dubbing_assets.core.lipsync.wav2lip import Wav2LipPlugin

__all__ = ["LIPSYNC_GROUP", "MEL_STEP", "NO_DETECTOR", "NO_FACE", "WAV2LIP_MODEL", "Box", "Detector",
           "LipSyncPlugin", "LipSyncResult", "Wav2LipPlugin", "available_plugins", "build_wav2lip",
           "get_plugin", "haar_detector", "load_wav2lip", "mel_chunks_for", "mouth_box", "preview",
           "resolve_wav2lip_checkpoint", "smooth_boxes", "wav2lip_mel"]


def available_plugins() -> dict[str, Any]:
    """Entry points of the ``dubbing_assets.lipsync`` group, by name (nothing imported yet)."""
    from dubbing_assets.core import plugins

    return plugins.declared(plugins.LIPSYNC)


def get_plugin(name: str = "wav2lip", **kw: Any) -> LipSyncPlugin:
    """Build the plugin registered under `name` in the entry-point group (models still load lazily)."""
    from dubbing_assets.core import plugins

    return plugins.load(plugins.LIPSYNC, name, kind="lip-sync plugin")(**kw)
