"""Which device a model runs on: one answer for every engine.

`DUBBING_DEVICE` is ``auto``, ``cpu`` or ``cuda`` (``cuda:N`` for torch). ``auto`` takes CUDA when
the runtime that will run the model sees a GPU: torch for torch models (XTTS, Demucs, Wav2Lip),
torch *and* CTranslate2 for whisper and CTranslate2 translators (a CPU-only CTranslate2 wheel
beside a CUDA torch must not be sent CUDA work).
"""

from __future__ import annotations

from dubbing_assets.errors import ConfigError


def _check(device: str | None) -> str:
    device = (device or "auto").strip().lower()
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ConfigError(f"DUBBING_DEVICE={device!r} is not valid; use 'auto', 'cpu' or 'cuda'.")
    return device


def torch_device(requested: str | None = "auto") -> str:
    """The torch device for `requested`: itself unless ``auto``, then CUDA when torch sees one."""
    device = _check(requested)
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a base dependency
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def ctranslate2_device(requested: str | None = "auto", compute_type: str | None = None) -> tuple[str, str]:
    """(device, compute_type) for CTranslate2: CUDA when both torch and CTranslate2 see a GPU.

    int8 on CPU (fast, small, the accuracy measured in the fixtures), float16 on CUDA.
    """
    device = _check(requested)
    if device.startswith("cuda:"):
        raise ConfigError(f"DUBBING_DEVICE={device!r}: CTranslate2 models take 'cuda' (device 0) or 'cpu'.")
    if device == "auto":
        device = "cpu"
        try:
            import ctranslate2
            import torch

            if torch.cuda.is_available() and ctranslate2.get_cuda_device_count() > 0:
                device = "cuda"
        except Exception:  # noqa: BLE001 - no torch / no CUDA build: CPU
            device = "cpu"
    return device, compute_type or ("float16" if device == "cuda" else "int8")
