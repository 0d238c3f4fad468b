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
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dubbing_assets.errors import EngineError, MediaError, ModelNotFoundError, ToolNotFoundError

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


def mouth_box(face: Box) -> Box:
    """The part of a face box that lip-sync re-renders: the lower half, less the outer sixths.

    Wav2Lip is given the upper half as reference and generates the lower
    half; its cheeks and jaw edges are where the generated face drifts from
    the source most, so they are left as they were.
    """
    x1, y1, x2, y2 = face
    inset = (x2 - x1) // 6
    return (x1 + inset, y1 + (y2 - y1) // 2, x2 - inset, y2)


def _feather(h: int, w: int, edge: int) -> np.ndarray:
    """An (h, w, 1) blend mask: 1 inside, ramping to 0 over `edge` pixels at every border."""
    edge = max(1, min(edge, h // 2, w // 2))
    ramp_y = np.minimum(np.arange(h), np.arange(h)[::-1]).clip(0, edge) / edge
    ramp_x = np.minimum(np.arange(w), np.arange(w)[::-1]).clip(0, edge) / edge
    return np.minimum(ramp_y[:, None], ramp_x[None, :])[..., None].astype(np.float32)


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


# --------------------------------------------------------------------------------------------
# discovery


def available_plugins() -> dict[str, Any]:
    """Entry points of the ``dubbing_assets.lipsync`` group, by name (nothing imported yet)."""
    from dubbing_assets.core import plugins

    return plugins.declared(plugins.LIPSYNC)


def get_plugin(name: str = "wav2lip", **kw: Any) -> LipSyncPlugin:
    """Build the plugin registered under `name` in the entry-point group (models still load lazily)."""
    from dubbing_assets.core import plugins

    return plugins.load(plugins.LIPSYNC, name, kind="lip-sync plugin")(**kw)


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


# --------------------------------------------------------------------------------------------
# Wav2Lip: audio features (the original hparams) and the generator


MEL_STEP = 16  # mel frames per video frame window (0.2 s)


def wav2lip_mel(audio16k: np.ndarray) -> np.ndarray:
    """(80, T) log-mel spectrogram exactly as Wav2Lip was trained on (16 kHz, hop 200, [-4, 4])."""
    import librosa
    from scipy.signal import lfilter

    wav = lfilter([1, -0.97], [1], np.asarray(audio16k, dtype=np.float32))
    spec = np.abs(librosa.stft(y=wav, n_fft=800, hop_length=200, win_length=800))
    basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    min_level = np.exp(-100 / 20 * np.log(10))
    db = 20 * np.log10(np.maximum(min_level, basis @ spec)) - 20
    return np.clip(8 * ((db + 100) / 100) - 4, -4, 4).astype(np.float32)


def mel_chunks_for(mel: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """One (80, 16) mel window per video frame (the original's 80/fps indexing), clamped at the end."""
    step = 80.0 / fps
    total = mel.shape[1]
    if total < MEL_STEP:
        mel = np.pad(mel, ((0, 0), (0, MEL_STEP - total)), constant_values=-4.0)
        total = MEL_STEP
    starts = np.minimum((np.arange(n_frames) * step).astype(int), total - MEL_STEP)
    return np.stack([mel[:, s: s + MEL_STEP] for s in starts]) if n_frames else np.zeros((0, 80, MEL_STEP))


def build_wav2lip(width: float = 1.0) -> Any:
    """The Wav2Lip generator; `width` scales every channel count (1.0 = the released model).

    Parameter names and layout are those of the original ``models/wav2lip.py``,
    so ``wav2lip.pth``/``wav2lip_gan.pth`` load unchanged; a small `width`
    gives the same graph with few weights (tests, CPU smoke runs).
    """
    import torch
    from torch import nn

    def c(n: int) -> int:
        return max(1, int(round(n * width)))

    class Conv2d(nn.Module):
        def __init__(self, cin: int, cout: int, kernel_size: Any, stride: Any, padding: Any,
                     residual: bool = False) -> None:
            super().__init__()
            self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding),
                                            nn.BatchNorm2d(cout))
            self.act = nn.ReLU()
            self.residual = residual

        def forward(self, x: Any) -> Any:
            out = self.conv_block(x)
            if self.residual:
                out = out + x
            return self.act(out)

    class Conv2dTranspose(nn.Module):
        def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, padding: int,
                     output_padding: int = 0) -> None:
            super().__init__()
            self.conv_block = nn.Sequential(
                nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding), nn.BatchNorm2d(cout))
            self.act = nn.ReLU()

        def forward(self, x: Any) -> Any:
            return self.act(self.conv_block(x))

    def res(n: int, k: int = 2) -> list[Any]:
        return [Conv2d(n, n, 3, 1, 1, residual=True) for _ in range(k)]

    e16, e32, e64, e128, e256, e512 = c(16), c(32), c(64), c(128), c(256), c(512)
    d384 = c(384)

    class Wav2Lip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.face_encoder_blocks = nn.ModuleList([
                nn.Sequential(Conv2d(6, e16, 7, 1, 3)),  # 96
                nn.Sequential(Conv2d(e16, e32, 3, 2, 1), *res(e32)),  # 48
                nn.Sequential(Conv2d(e32, e64, 3, 2, 1), *res(e64, 3)),  # 24
                nn.Sequential(Conv2d(e64, e128, 3, 2, 1), *res(e128)),  # 12
                nn.Sequential(Conv2d(e128, e256, 3, 2, 1), *res(e256)),  # 6
                nn.Sequential(Conv2d(e256, e512, 3, 2, 1), *res(e512, 1)),  # 3
                nn.Sequential(Conv2d(e512, e512, 3, 1, 0), Conv2d(e512, e512, 1, 1, 0)),  # 1
            ])
            self.audio_encoder = nn.Sequential(
                Conv2d(1, e32, 3, 1, 1), *res(e32),
                Conv2d(e32, e64, 3, (3, 1), 1), *res(e64),
                Conv2d(e64, e128, 3, 3, 1), *res(e128),
                Conv2d(e128, e256, 3, (3, 2), 1), *res(e256, 1),
                Conv2d(e256, e512, 3, 1, 0), Conv2d(e512, e512, 1, 1, 0),
            )
            self.face_decoder_blocks = nn.ModuleList([
                nn.Sequential(Conv2d(e512, e512, 1, 1, 0)),
                nn.Sequential(Conv2dTranspose(2 * e512, e512, 3, 1, 0), *res(e512, 1)),  # 3
                nn.Sequential(Conv2dTranspose(2 * e512, e512, 3, 2, 1, 1), *res(e512)),  # 6
                nn.Sequential(Conv2dTranspose(e512 + e256, d384, 3, 2, 1, 1), *res(d384)),  # 12
                nn.Sequential(Conv2dTranspose(d384 + e128, e256, 3, 2, 1, 1), *res(e256)),  # 24
                nn.Sequential(Conv2dTranspose(e256 + e64, e128, 3, 2, 1, 1), *res(e128)),  # 48
                nn.Sequential(Conv2dTranspose(e128 + e32, e64, 3, 2, 1, 1), *res(e64)),  # 96
            ])
            self.output_block = nn.Sequential(Conv2d(e64 + e16, e32, 3, 1, 1),
                                              nn.Conv2d(e32, 3, kernel_size=1, stride=1, padding=0),
                                              nn.Sigmoid())

        def forward(self, audio_sequences: Any, face_sequences: Any) -> Any:
            # audio (B, 1, 80, 16), faces (B, 6, 96, 96) -> (B, 3, 96, 96) in [0, 1]
            x = self.audio_encoder(audio_sequences)
            feats = []
            f = face_sequences
            for block in self.face_encoder_blocks:
                f = block(f)
                feats.append(f)
            for block in self.face_decoder_blocks:
                x = torch.cat((block(x), feats.pop()), dim=1)
            return self.output_block(x)

    return Wav2Lip()


def load_wav2lip(checkpoint: Path, device: str = "cpu") -> Any:
    """Load a Wav2Lip generator from a checkpoint in the original layout (``{"state_dict": ...}``).

    The channel width is read from the weights, so a reduced-width
    checkpoint (see `build_wav2lip`) loads through the same code.
    """
    import torch

    try:
        blob = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated/foreign file is the user's to fix
        raise ModelNotFoundError(f"Could not read the Wav2Lip checkpoint {checkpoint}: {exc}") from exc
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise ModelNotFoundError(f"{checkpoint} is not a Wav2Lip checkpoint (no state_dict).")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    first = state.get("face_encoder_blocks.0.0.conv_block.0.weight")
    if first is None:
        raise ModelNotFoundError(f"{checkpoint} is not a Wav2Lip generator checkpoint (expert/discriminator?).")
    model = build_wav2lip(width=int(first.shape[0]) / 16.0)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelNotFoundError(f"{checkpoint} does not match the Wav2Lip architecture: {exc}") from exc
    return model.to(device).eval()


def resolve_wav2lip_checkpoint(name_or_path: str | Path | None = None, registry: Any | None = None) -> Path:
    """The Wav2Lip ``.pth`` to load: an existing path, else the registry's `WAV2LIP_MODEL`.

    A folder (``DUBBING_MODELS_DIR/wav2lip/``) may hold ``wav2lip_gan.pth`` or
    ``wav2lip.pth`` (the GAN one is preferred: sharper mouths).
    """
    if name_or_path is not None and Path(name_or_path).expanduser().exists():
        path = Path(name_or_path).expanduser()
    else:
        if registry is None:
            from dubbing_assets.core.models import ModelRegistry

            registry = ModelRegistry(cache_dir=Path(tempfile.gettempdir()) / "dubbing-models")
        path = Path(registry.resolve(str(name_or_path or WAV2LIP_MODEL)))
    if path.is_dir():
        for candidate in ("wav2lip_gan.pth", "wav2lip.pth", *sorted(p.name for p in path.glob("*.pth"))):
            if (path / candidate).is_file():
                return path / candidate
        raise ModelNotFoundError(f"No Wav2Lip .pth checkpoint in {path}; put wav2lip_gan.pth there.")
    return path


def _default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a base dependency
        return "cpu"


def _video_info(cap: Any) -> tuple[float, int, int, int]:
    import cv2

    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    return fps, count, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))


def _open_video(path: Path) -> Any:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MediaError(f"OpenCV cannot read the video {path.name}; check the file (or its codec).")
    return cap


def _frames(path: Path) -> Any:
    cap = _open_video(path)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()


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
        self.device = device or _default_device()
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
        cap = _open_video(video)
        fps, _, w, h = _video_info(cap)
        cap.release()
        boxes: list[Box | None] = []
        last: Box | None = None
        for i, frame in enumerate(_frames(video)):
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
        rate = _frame_rate(video) or f"{fps:.6f}"
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
                        alpha = _feather(*region.shape[:2], edge=max(2, (mx2 - mx1) // 10))
                        src = f[my1:my2, mx1:mx2].astype(np.float32)
                        f[my1:my2, mx1:mx2] = (alpha * region + (1.0 - alpha) * src).round().astype(np.uint8)
                for f, _, _ in pending:
                    encoder.stdin.write(np.ascontiguousarray(f).tobytes())
                pending.clear()

            try:
                for i, frame in enumerate(_frames(video)):
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


def _frame_rate(video: Path) -> str | None:
    """The video stream's exact frame rate as ffmpeg writes it (``"30000/1001"``), or None."""
    try:
        import av

        with av.open(str(video)) as container:
            rate = container.streams.video[0].average_rate or container.streams.video[0].base_rate
        return f"{rate.numerator}/{rate.denominator}" if rate else None
    except Exception:  # noqa: BLE001 - the float fps from OpenCV is the fallback
        return None


# --------------------------------------------------------------------------------------------
# preview


def _frame_at(path: Path, t: float) -> np.ndarray | None:
    import cv2

    cap = _open_video(path)
    try:
        cap.set(cv2.CAP_PROP_POS_MSEC, max(0.0, t) * 1000.0)
        ok, frame = cap.read()
        return frame if ok else None
    finally:
        cap.release()


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
    cap = _open_video(Path(before))
    fps, count, _, _ = _video_info(cap)
    cap.release()
    duration = count / fps if count > 0 else clip_seconds
    times = [duration * (k + 0.5) / frames for k in range(max(1, frames))]
    rows = []
    for t in times:
        pair = []
        for src in (before, after):
            frame = _frame_at(Path(src), t)
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
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp_png = out_png.with_name(f".{out_png.name}.tmp.png")
    if not cv2.imwrite(str(tmp_png), sheet):
        raise EngineError(f"Could not write the contact sheet {out_png}.")
    os.replace(tmp_png, out_png)
    result: dict[str, Any] = {"contact_sheet": str(out_png), "times": times, "clip": None}
    if clip_out is not None:
        from dubbing_assets.core.ffmpeg import run_ffmpeg

        clip_out = Path(clip_out)
        tmp_clip = clip_out.with_name(f".{clip_out.stem}.tmp{clip_out.suffix or '.mp4'}")
        run_ffmpeg(["-ss", f"{max(0.0, clip_start_s):.3f}", "-i", after, "-t", f"{clip_seconds:.3f}",
                    "-map", "0:v:0", "-map", "0:a:0?", "-c:v", "libx264", "-preset", "veryfast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", tmp_clip], what="cutting the lip-sync preview clip")
        os.replace(tmp_clip, clip_out)
        result["clip"] = str(clip_out)
    return result
