"""The Wav2Lip network: its mel front end, the architecture (reimplemented so a checkpoint in the
original layout loads as it is) and checkpoint resolution."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.lipsync.base import WAV2LIP_MODEL
from dubbing_assets.errors import ModelNotFoundError

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
