"""Dialogue/background separation and voice activity detection.

The dub replaces the dialogue but must keep the music and effects, so the
source audio is split into two stems. Two engines share one protocol:

* `SignalSeparator` (low mode, CPU, no model): uses where mixers put dialogue.
  See its docstring for the method and its limits.
* `DemucsSeparator` (high mode): the Demucs neural separator, "vocals" as
  dialogue and the other stems summed as background.

`vad_segments` (Silero VAD, shipped in the silero-vad package) finds speech;
the separators, ASR refinement and diarization all use it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dubbing_assets.core.audio_io import as_mono16k, default_layout, resample, write_wav_atomic
from dubbing_assets.errors import EngineError, MediaError, ModelNotFoundError

VAD_RATE = 16000


@runtime_checkable
class Separator(Protocol):
    """Splits a WAV into (dialogue, background) WAVs in ``out_dir``."""

    def separate(self, in_wav: str | Path, out_dir: str | Path) -> tuple[Path, Path]: ...


# -- VAD --------------------------------------------------------------------

@lru_cache(maxsize=1)
def _silero() -> Any:
    """Load the Silero VAD model once per process (it ships inside the package)."""
    try:
        from silero_vad import load_silero_vad
    except ImportError as exc:
        raise ModelNotFoundError("Silero VAD is not installed; `pip install silero-vad`.") from exc
    return load_silero_vad()


def vad_segments(wav: str | Path | np.ndarray, *, threshold: float = 0.5, min_speech_s: float = 0.25,
                 min_silence_s: float = 0.1, pad_s: float = 0.03,
                 backend: str = "auto") -> list[tuple[float, float]]:
    """Speech regions ``[(start_s, end_s), ...]`` found by Silero VAD.

    ``wav`` is a media/WAV path (decoded to 16 kHz mono) or a float array
    already at 16 kHz. The defaults are Silero's own; callers that need
    whole phrases (not syllables) raise ``min_silence_s``. ``backend``:
    "onnx" runs the Silero ONNX model that faster-whisper ships (about 50x
    faster on CPU than the TorchScript one, no torch needed), "torch" the
    silero-vad package; "auto" takes onnx when faster-whisper is installed.
    With ``pad_s=0`` (edges wanted as they are, e.g. to place lines) the
    starts are sharpened to the audible onset (`sharpen_starts`).
    """
    audio = as_mono16k(wav)
    if audio.size == 0:
        return []
    if backend == "auto":
        from importlib.util import find_spec

        backend = "onnx" if find_spec("faster_whisper") is not None else "torch"
    if backend == "onnx":
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        stamps = get_speech_timestamps(np.ascontiguousarray(audio), VadOptions(
            threshold=threshold, min_speech_duration_ms=int(min_speech_s * 1000),
            min_silence_duration_ms=int(min_silence_s * 1000), speech_pad_ms=int(pad_s * 1000)))
    elif backend == "torch":
        import torch
        from silero_vad import get_speech_timestamps as silero_timestamps

        with torch.no_grad():
            stamps = silero_timestamps(
                torch.from_numpy(np.ascontiguousarray(audio)), _silero(), threshold=threshold,
                sampling_rate=VAD_RATE, min_speech_duration_ms=int(min_speech_s * 1000),
                min_silence_duration_ms=int(min_silence_s * 1000), speech_pad_ms=int(pad_s * 1000),
            )
    else:
        raise ValueError(f"Unknown VAD backend {backend!r}; use 'auto', 'onnx' or 'torch'.")
    segments = [(s["start"] / VAD_RATE, s["end"] / VAD_RATE) for s in stamps]
    return sharpen_starts(audio, segments) if pad_s == 0.0 else segments


#: Where a speech start is looked for around Silero's (its 32 ms windows put it up to ~70 ms late).
_SHARPEN_BEFORE_S, _SHARPEN_AFTER_S = 0.08, 0.04


def sharpen_starts(audio: np.ndarray, segments: list[tuple[float, float]], *,
                   below_rms_db: float = 20.0, floor_margin_db: float = 10.0) -> list[tuple[float, float]]:
    """Move each segment's start to the audible onset near it (16 kHz mono `audio`).

    Silero decides per 32 ms window and only once speech is likely, so its
    starts run late. The onset is the first sample within `below_rms_db` of
    the segment's speech RMS (the fixtures' ground-truth rule) and at least
    `floor_margin_db` above the level at the head of the search window (music
    under the voice must not pull the start early). Ends are kept.
    """
    out: list[tuple[float, float]] = []
    frame = int(0.005 * VAD_RATE)
    for i, (start, end) in enumerate(segments):
        prev_end = out[-1][1] if out else 0.0
        lo = max(int((start - _SHARPEN_BEFORE_S) * VAD_RATE), int(prev_end * VAD_RATE), 0)
        hi = min(int((start + _SHARPEN_AFTER_S) * VAD_RATE), audio.size)
        speech = audio[int(start * VAD_RATE) : int(min(end, start + 1.0) * VAD_RATE)].astype(np.float64)
        if hi - lo < frame or speech.size == 0:
            out.append((start, end))
            continue
        rms = float(np.sqrt(np.mean(np.square(speech))))
        window = np.abs(audio[lo:hi]).astype(np.float64)
        n = window.size // frame
        levels = np.sqrt(np.mean(np.square(window[: n * frame].reshape(n, frame)), axis=1))
        floor = float(levels[:4].min()) if n else 0.0  # the head of the window is before the voice
        amp = max(rms * 10 ** (-below_rms_db / 20), floor * 10 ** (floor_margin_db / 20), 1e-4)
        # the first frame whose RMS reaches the level, then the first sample above it from a frame before
        loud = np.flatnonzero(levels >= amp)
        if loud.size == 0:
            out.append((start, end))
            continue
        first = max(0, int(loud[0]) - 1) * frame
        above = np.flatnonzero(window[first : first + 2 * frame] >= amp)
        onset = (lo + first + (int(above[0]) if above.size else frame)) / VAD_RATE
        out.append((min(onset, end), end) if i == 0 or onset >= prev_end else (start, end))
    return out


def speech_gate(segments: list[tuple[float, float]], n_samples: int, sample_rate: int, *,
                pad_s: float = 0.08, ramp_s: float = 0.03) -> np.ndarray:
    """A 0..1 gain curve: 1 inside (padded) speech, 0 outside, raised-cosine ramps between.

    Smooth ramps avoid clicks where the stems switch; the padding keeps word
    onsets and tails that the VAD trims.
    """
    gate = np.zeros(n_samples, dtype=np.float32)
    for start, end in segments:
        a = max(0, int((start - pad_s) * sample_rate))
        b = min(n_samples, int(np.ceil((end + pad_s) * sample_rate)))
        if b > a:
            gate[a:b] = 1.0
    ramp = int(ramp_s * sample_rate)
    if ramp > 1 and gate.any():
        kernel = np.hanning(2 * ramp + 1).astype(np.float32)
        kernel /= kernel.sum()
        gate = np.convolve(gate, kernel, mode="same").astype(np.float32)
        np.clip(gate, 0.0, 1.0, out=gate)
    return gate


# -- low mode ---------------------------------------------------------------

def _read(in_wav: Path) -> tuple[np.ndarray, int, str | None, list[str]]:
    """(samples [n, channels], rate, layout name, channel names) of a WAV.

    A WAV without a channel mask (libsndfile writes none) gets the usual
    layout for its channel count, as ffmpeg assumes too.
    """
    import soundfile as sf

    try:
        data, rate = sf.read(str(in_wav), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile raises its own types
        raise MediaError(f"{in_wav.name} is not a readable WAV file ({exc}); "
                         "extract the audio first.") from exc
    layout_name: str | None = None
    names: list[str] = []
    try:
        import av

        with av.open(str(in_wav)) as container:
            layout = container.streams.audio[0].codec_context.layout
            if layout is not None:
                layout_name, names = layout.name, [ch.name for ch in layout.channels]
    except Exception:  # noqa: BLE001 - fall back on the channel count
        names = []
    known = len(names) == data.shape[1] and all(n and n.upper() not in ("NONE", "UNK") and not
                                                n.upper().startswith("USR") for n in names)
    if not known:
        layout_name, names = default_layout(data.shape[1])
    return data, rate, layout_name, list(names)


def _write(path: Path, data: np.ndarray, rate: int, layout: str | None = None) -> Path:
    """A 24-bit stem, atomically, with the source's layout stamped in (a 5.1 source gives 5.1 stems)."""
    return write_wav_atomic(path, data, rate, subtype="PCM_24", layout=layout)


class SignalSeparator:
    """Low-mode separation by channel position and voice activity; no model, fast on CPU.

    What it does, by layout:

    * **5.1/7.1** (a layout with an FC channel): the centre channel is where
      film and TV mixes put dialogue. Dialogue = FC gated by VAD (in the FC
      slot, other channels silent); background = every other channel as is,
      plus FC outside speech at ``centre_keep_db``.
    * **stereo**: dialogue is usually panned centre, i.e. in mid = (L+R)/2.
      Dialogue = mid gated by VAD (same in L and R); background = side
      (L-R)/2 as it was, plus mid outside speech at ``centre_keep_db`` and
      inside speech at ``speech_duck_db``.
    * **mono**: nothing spatial to use. Dialogue = signal gated by VAD;
      background = signal outside speech, ducked by ``speech_duck_db`` inside.

    Limits, stated plainly: music or effects that are centred (or mono)
    and play *during* speech stay in the dialogue stem and are ducked out of
    the background; off-centre or reverberant dialogue leaks into the side
    signal and so into the background; shouts the VAD misses stay in the
    background. When that matters, use `DemucsSeparator`.

    Outputs keep the input's sample rate, channel count and channel order.
    """

    name = "signal"

    def __init__(self, *, speech_duck_db: float = -30.0, centre_keep_db: float = -3.0,
                 vad_threshold: float = 0.5, pad_s: float = 0.08, ramp_s: float = 0.03) -> None:
        self.speech_duck = float(10 ** (speech_duck_db / 20))
        self.centre_keep = float(10 ** (centre_keep_db / 20))
        self.vad_threshold = vad_threshold
        self.pad_s = pad_s
        self.ramp_s = ramp_s
        self.last_info: dict[str, Any] = {}

    def _gate(self, mono: np.ndarray, rate: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
        segments = vad_segments(resample(mono, rate, VAD_RATE), threshold=self.vad_threshold,
                                min_silence_s=0.2)
        return speech_gate(segments, mono.shape[0], rate, pad_s=self.pad_s, ramp_s=self.ramp_s), segments

    def separate(self, in_wav: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``dialogue.wav`` and ``background.wav`` into ``out_dir``; return their paths."""
        in_wav, out_dir = Path(in_wav), Path(out_dir)
        data, rate, layout, names = _read(in_wav)
        n, ch = data.shape
        dialogue = np.zeros_like(data)
        background = np.zeros_like(data)
        if "FC" in names and ch > 2:
            mode = "centre"
            fc = names.index("FC")
            centre = data[:, fc]
            gate, segments = self._gate(centre, rate)
            dialogue[:, fc] = centre * gate
            background[:] = data
            background[:, fc] = centre * (self.centre_keep * (1.0 - gate) + self.speech_duck * gate)
        elif ch == 2:
            mode = "mid-side"
            mid = 0.5 * (data[:, 0] + data[:, 1])
            side = 0.5 * (data[:, 0] - data[:, 1])
            gate, segments = self._gate(mid, rate)
            voiced = mid * gate
            dialogue[:, 0] = voiced
            dialogue[:, 1] = voiced
            mid_bg = mid * (self.centre_keep * (1.0 - gate) + self.speech_duck * gate)
            background[:, 0] = mid_bg + side
            background[:, 1] = mid_bg - side
        else:
            mode = "vad-gate"
            mono = data.mean(axis=1)
            gate, segments = self._gate(mono, rate)
            dialogue = data * gate[:, None]
            background = data * ((1.0 - gate) + self.speech_duck * gate)[:, None]
        self.last_info = {"mode": mode, "sample_rate": rate, "channels": ch, "layout": layout,
                          "channel_names": names,
                          "speech_segments": [(round(a, 3), round(b, 3)) for a, b in segments],
                          "speech_s": round(sum(b - a for a, b in segments), 3)}
        return (_write(out_dir / "dialogue.wav", dialogue, rate, layout),
                _write(out_dir / "background.wav", background, rate, layout))


# -- high mode --------------------------------------------------------------

class DemucsSeparator:
    """Neural separation with Demucs: "vocals" becomes dialogue, the rest background.

    Loading: ``model`` is a pretrained name (``htdemucs``...) or an already
    built ``torch.nn.Module``. Weights come from ``repo`` (a local folder of
    Demucs checkpoints; ``<DUBBING_MODELS_DIR>/demucs`` works) or, only when
    ``allow_download``, from Demucs' own download (torch hub cache). The
    model runs at its own rate (44.1 kHz stereo); outputs are converted back
    to the source's rate and layout (dialogue in FC for 5.1, like the input).
    """

    name = "demucs"

    def __init__(self, model: str | Any = "htdemucs", *, repo: str | Path | None = None,
                 allow_download: bool = False, device: str = "auto", shifts: int = 0,
                 segment: float | None = None) -> None:
        self.model_spec = model
        self.repo = Path(repo) if repo else None
        self.allow_download = allow_download
        self.device = device
        self.shifts = shifts
        self.segment = segment
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        try:
            import demucs.apply  # noqa: F401 - checked here so the error names the package
            from demucs.pretrained import get_model
        except ImportError as exc:
            raise ModelNotFoundError(
                "The Demucs separator needs the demucs package: `pip install demucs`, "
                "or use the low-mode 'signal' separator."
            ) from exc
        if not isinstance(self.model_spec, str):
            model = self.model_spec
        else:
            if self.repo is None and not self.allow_download:
                raise ModelNotFoundError(
                    f"Demucs weights for {self.model_spec!r} are not available offline: put the checkpoint "
                    "folder in DUBBING_MODELS_DIR/demucs/ (pass it as repo=) or allow downloads."
                )
            try:
                model = get_model(name=self.model_spec, repo=self.repo)
            except Exception as exc:  # noqa: BLE001 - demucs raises several kinds
                raise ModelNotFoundError(f"Demucs model {self.model_spec!r} could not be loaded ({exc}); "
                                         "check the checkpoint folder or allow downloads.") from exc
        model.eval()
        self._model = model
        return model

    def _device(self) -> str:
        from dubbing_assets.core.device import torch_device

        return torch_device(self.device)

    def separate(self, in_wav: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``dialogue.wav`` and ``background.wav`` into ``out_dir``; return their paths."""
        model = self._load()  # first: its error names the package when demucs is missing
        import torch
        from demucs.apply import apply_model
        from scipy.signal import resample_poly

        in_wav, out_dir = Path(in_wav), Path(out_dir)
        data, rate, layout, names = _read(in_wav)
        n, ch = data.shape
        if "FC" in names and ch > 2:
            stereo = data[:, [names.index("FL"), names.index("FR")]] + data[:, [names.index("FC")]] * 0.7071
        elif ch == 1:
            stereo = np.repeat(data, 2, axis=1)
        else:
            stereo = data[:, :2]
        model_rate = int(getattr(model, "samplerate", 44100))
        from math import gcd

        g = gcd(rate, model_rate)
        x = resample_poly(stereo, model_rate // g, rate // g, axis=0) if rate != model_rate else stereo
        mix = torch.from_numpy(np.ascontiguousarray(x.T, dtype=np.float32))[None]
        ref = mix.mean(dim=1, keepdim=True)
        scale = float(ref.std()) or 1.0
        try:
            with torch.no_grad():
                out = apply_model(model, (mix - ref.mean()) / scale, shifts=self.shifts, split=True,
                                  overlap=0.25, device=self._device(), segment=self.segment)[0]
        except Exception as exc:  # noqa: BLE001 - inference failures are engine errors
            raise EngineError(f"Demucs separation of {in_wav.name} failed: {exc}") from exc
        out = out * scale + ref.mean()
        sources = list(getattr(model, "sources", []))
        vi = sources.index("vocals") if "vocals" in sources else len(sources) - 1
        vocals = out[vi].cpu().numpy().T
        rest = (out.sum(dim=0) - out[vi]).cpu().numpy().T
        if rate != model_rate:
            vocals = resample_poly(vocals, rate // g, model_rate // g, axis=0)
            rest = resample_poly(rest, rate // g, model_rate // g, axis=0)
        vocals, rest = vocals[:n], rest[:n]
        if vocals.shape[0] < n:
            pad = ((0, n - vocals.shape[0]), (0, 0))
            vocals, rest = np.pad(vocals, pad), np.pad(rest, pad)
        dialogue = np.zeros_like(data)
        background = np.zeros_like(data)
        if "FC" in names and ch > 2:
            dialogue[:, names.index("FC")] = vocals.mean(axis=1)
            background[:] = data
            background[:, names.index("FC")] = 0.0
            background[:, names.index("FL")] = rest[:, 0]
            background[:, names.index("FR")] = rest[:, 1]
        elif ch == 1:
            dialogue[:, 0] = vocals.mean(axis=1)
            background[:, 0] = rest.mean(axis=1)
        else:
            dialogue[:, :2] = vocals
            background[:, :2] = rest
        return (_write(out_dir / "dialogue.wav", dialogue.astype(np.float32), rate, layout),
                _write(out_dir / "background.wav", background.astype(np.float32), rate, layout))


def get_separator(name: str = "signal", **kwargs: Any) -> Separator:
    """Build a separator by its name in the `dubbing_assets.separator` entry-point group (core/plugins.py)."""
    from dubbing_assets.core import plugins

    cls = plugins.load(plugins.SEPARATOR, name, kind="separator", error=ModelNotFoundError)
    return cls(**kwargs)
