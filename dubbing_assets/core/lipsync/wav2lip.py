"""The built-in plugin: Wav2Lip over Haar-cascade faces, frames streamed from disk through one ffmpeg encode."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.device import torch_device
from dubbing_assets.core.lipsync.base import NO_DETECTOR, NO_FACE, Box, Detector, LipSyncResult
from dubbing_assets.core.lipsync.faces import feather, haar_detector, mouth_box, smooth_boxes
from dubbing_assets.core.lipsync.network import load_wav2lip, mel_chunks_for, resolve_wav2lip_checkpoint, wav2lip_mel
from dubbing_assets.core.lipsync.video import frame_rate, frames, open_video, video_info
from dubbing_assets.errors import EngineError, ToolNotFoundError


class Wav2LipPlugin:
    """The built-in lip-sync plugin: Wav2Lip over Haar-cascade faces.

    `checkpoint` is a ``.pth`` path or a registry name (default ``wav2lip``);
    the model loads once per instance, on the first frame that has a face.
    `detector` replaces the Haar cascade (any `Detector`); `pads` widens the
    box (top, bottom, left, right, pixels) as the original's ``--pads``,
    bottom first so the chin is included.
    """

    name = "wav2lip"

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        registry: Any | None = None,
        device: str | None = None,
        batch_size: int = 32,
        detector: Detector | None = None,
        detect_every: int = 1,
        pads: tuple[int, int, int, int] = (0, 10, 0, 0),
        smooth_window: int = 5,
    ) -> None:
        self._checkpoint_arg = checkpoint
        self._registry = registry
        self.device = device or torch_device()
        self.batch_size = max(1, int(batch_size))
        self.detector = detector
        self.detect_every = max(1, int(detect_every))
        self.pads = pads
        self.smooth_window = smooth_window
        self._model: Any = None
        self._checkpoint: Path | None = None
        self._lock = threading.Lock()

    @property
    def checkpoint(self) -> Path:
        if self._checkpoint is None:
            self._checkpoint = resolve_wav2lip_checkpoint(self._checkpoint_arg, self._registry)
        return self._checkpoint

    @property
    def version(self) -> str:
        path = self.checkpoint
        digest = hashlib.sha256(f"{path.name}:{path.stat().st_size}".encode()).hexdigest()[:12]
        return f"wav2lip {digest}; pads {self.pads}; smooth {self.smooth_window}"

    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = load_wav2lip(self.checkpoint, self.device)
            return self._model

    # -- steps ---------------------------------------------------------------
    def detect(self, video: Path) -> tuple[list[Box | None], float, tuple[int, int]]:
        """Pass 1: one (smoothed, padded) face box per frame, the fps and the frame size."""
        detector = self.detector or haar_detector()
        cap = open_video(video)
        fps, _, w, h = video_info(cap)
        cap.release()
        boxes: list[Box | None] = []
        last: Box | None = None
        for i, frame in enumerate(frames(video)):
            if i % self.detect_every == 0:
                last = detector(frame)
            boxes.append(last)
        top, bottom, left, right = self.pads
        padded: list[Box | None] = [
            None if b is None else (max(0, b[0] - left), max(0, b[1] - top), min(w, b[2] + right),
                                    min(h, b[3] + bottom))
            for b in smooth_boxes(boxes, self.smooth_window)
        ]
        return padded, fps, (w, h)

    def _infer(self, crops: list[np.ndarray], mels: np.ndarray) -> np.ndarray:
        import torch

        faces = np.stack(crops).astype(np.float32)  # (B, 96, 96, 3) BGR
        masked = faces.copy()
        masked[:, 48:] = 0.0
        x = np.concatenate([masked, faces], axis=3) / 255.0
        face_t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(self.device)
        mel_t = torch.from_numpy(np.ascontiguousarray(mels[:, None])).to(self.device)
        with torch.inference_mode():
            out = self.model()(mel_t, face_t)
        return (out.float().cpu().numpy().transpose(0, 2, 3, 1) * 255.0).clip(0, 255).astype(np.uint8)

    def sync(self, video: Path, audio: Path, out_video: Path) -> LipSyncResult:
        import cv2

        from dubbing_assets.core.audio_io import load_audio_mono16k
        from dubbing_assets.core.ffmpeg import ffmpeg_exe

        video, audio, out_video = Path(video), Path(audio), Path(out_video)
        try:
            boxes, fps, (w, h) = self.detect(video)
        except ToolNotFoundError as exc:  # no detector here: keep the dub, say why
            return LipSyncResult(str(video), False, f"{NO_DETECTOR}: {exc}", self.name)
        face_frames = sum(b is not None for b in boxes)
        if face_frames == 0:
            return LipSyncResult(str(video), False, NO_FACE, self.name, frames=len(boxes), fps=fps)
        mels = mel_chunks_for(wav2lip_mel(load_audio_mono16k(audio)), len(boxes), fps)
        rate = frame_rate(video) or f"{fps:.6f}"
        out_video.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".lipsync-", dir=out_video.parent))
        tmp_out = work / f"synced{out_video.suffix or '.mp4'}"
        # One encode: raw BGR frames in, H.264 out at the source's exact frame rate, muxed with the dub.
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
               "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}", "-r", rate, "-i", "-",
               "-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "libx264", "-preset", "veryfast",
               "-crf", "16", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", "-shortest", str(tmp_out)]
        mouths: list[Box | None] = []
        try:
            encoder = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
            pending: list[tuple[np.ndarray, Box | None, int]] = []

            def flush() -> None:
                todo = [(f, b, i) for f, b, i in pending if b is not None]
                if todo:
                    crops = [cv2.resize(f[b[1]:b[3], b[0]:b[2]], (96, 96)) for f, b, _ in todo]
                    preds = self._infer(crops, mels[[i for *_, i in todo]])
                    for (f, b, _), pred in zip(todo, preds, strict=True):
                        face = cv2.resize(pred, (b[2] - b[0], b[3] - b[1])).astype(np.float32)
                        mx1, my1, mx2, my2 = mouth_box(b)
                        region = face[my1 - b[1]:my2 - b[1], mx1 - b[0]:mx2 - b[0]]
                        alpha = feather(*region.shape[:2], edge=max(2, (mx2 - mx1) // 10))
                        src = f[my1:my2, mx1:mx2].astype(np.float32)
                        f[my1:my2, mx1:mx2] = (alpha * region + (1.0 - alpha) * src).round().astype(np.uint8)
                for f, _, _ in pending:
                    encoder.stdin.write(np.ascontiguousarray(f).tobytes())
                pending.clear()

            try:
                for i, frame in enumerate(frames(video)):
                    box = boxes[i] if i < len(boxes) else None
                    if box is not None and (box[2] - box[0] < 8 or box[3] - box[1] < 8):
                        box = None
                    mouths.append(None if box is None else mouth_box(box))
                    pending.append((frame, box, min(i, len(mels) - 1)))
                    if len(pending) >= self.batch_size:
                        flush()
                flush()
            except BrokenPipeError:
                pass  # the encoder died; its stderr says why, below
            finally:
                encoder.stdin.close()
                err = encoder.stderr.read().decode(errors="replace")
                encoder.wait()
            if encoder.returncode != 0 or not tmp_out.exists():
                raise EngineError(f"ffmpeg could not encode the lip-synced frames: {err.strip()[-800:]}")
            with open(tmp_out, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_out, out_video)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return LipSyncResult(str(out_video), True, None, self.name, frames=len(boxes), face_frames=face_frames,
                             fps=fps, meta={"checkpoint": self.checkpoint.name, "device": self.device,
                                            "mouth_boxes": mouths})
