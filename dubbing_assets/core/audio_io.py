"""Audio in and out, once for the whole core: decoding any media to WAV, reading, resampling, the
mono 16 kHz that ASR, VAD and speaker embeddings take, and atomic WAV writes.

Channel layouts live here too (`LAYOUTS`, in WAV/ffmpeg order), because the
mixer, the stems and the mux must agree on what "5.1(side)" is.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.ffmpeg import run_ffmpeg
from dubbing_assets.core.fsutil import atomic_path
from dubbing_assets.errors import EngineError, MediaError

#: The rate of ASR, VAD and the speaker embedders.
RATE_16K = 16000
#: Channel names for the layouts this module knows, in WAV/ffmpeg order.
LAYOUTS: dict[str, tuple[str, ...]] = {
    "mono": ("FC",),
    "stereo": ("FL", "FR"),
    "2.1": ("FL", "FR", "LFE"),
    "3.0": ("FL", "FR", "FC"),
    "quad": ("FL", "FR", "BL", "BR"),
    "5.0": ("FL", "FR", "FC", "BL", "BR"),
    "5.0(side)": ("FL", "FR", "FC", "SL", "SR"),
    "5.1": ("FL", "FR", "FC", "LFE", "BL", "BR"),
    "5.1(side)": ("FL", "FR", "FC", "LFE", "SL", "SR"),
    "7.1": ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"),
}
_DEFAULT_LAYOUT = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


def default_layout(channels: int) -> tuple[str | None, list[str]]:
    """(name, channel names) ffmpeg assumes for `channels` when a file says nothing; (None, []) if none."""
    name = _DEFAULT_LAYOUT.get(channels)
    return (name, list(LAYOUTS[name])) if name else (None, [])


def layout_for(channels: int, layout: str | None = None) -> str:
    """A known layout name for `channels` (the given one if it fits)."""
    if layout and layout in LAYOUTS and len(LAYOUTS[layout]) == channels:
        return layout
    if channels in _DEFAULT_LAYOUT:
        return _DEFAULT_LAYOUT[channels]
    raise MediaError(
        f"Cannot mix {channels}-channel audio (layout {layout!r}); convert it to 5.1 or stereo first."
    )


def _is_soundfile(path: Path) -> bool:
    import soundfile as sf

    try:
        sf.info(str(path))
        return True
    except (RuntimeError, sf.LibsndfileError):
        return False


@contextmanager
def as_wav(path: Path, sample_rate: int | None = None) -> Iterator[Path]:
    """`path` itself when soundfile reads it at the wanted rate, else a temporary float WAV made by ffmpeg."""
    import soundfile as sf

    if _is_soundfile(path) and (sample_rate is None or sf.info(str(path)).samplerate == sample_rate):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=".decode-", dir=path.parent) as tmp:
        wav = Path(tmp) / "decoded.wav"
        args: list[str | Path] = ["-i", path, "-vn", "-sn", "-dn", "-map", "0:a:0", "-c:a", "pcm_f32le"]
        if sample_rate is not None:
            args += ["-af", f"aresample={int(sample_rate)}:resampler=soxr:precision=28"]
        try:
            run_ffmpeg([*args, "-f", "wav", wav], what=f"decoding audio from {path.name}")
        except Exception as exc:  # noqa: BLE001 - soxr may be missing from a build: plain resampler
            if sample_rate is None:
                raise MediaError(f"Could not read audio from {path.name}: {exc}") from exc
            args[-1] = f"aresample={int(sample_rate)}"
            run_ffmpeg([*args, "-f", "wav", wav], what=f"decoding audio from {path.name}")
        yield wav


def read_audio(path: Path | str) -> tuple[np.ndarray, int]:
    """Whole file as (samples, channels) float32 and its rate; for clips and tests, not for episodes."""
    import soundfile as sf

    with as_wav(Path(path)) as wav:
        audio, sample_rate = sf.read(str(wav), dtype="float32", always_2d=True)
    return audio, int(sample_rate)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling along axis 0 (exact rational ratio)."""
    if from_rate == to_rate or audio.shape[0] == 0:
        return audio
    from scipy.signal import resample_poly

    g = math.gcd(int(from_rate), int(to_rate))
    return resample_poly(audio, int(to_rate) // g, int(from_rate) // g, axis=0).astype(np.float32)


def read_mono(path: Path | str) -> tuple[np.ndarray, int]:
    """A WAV as float32 mono (the channels averaged) and its rate."""
    import soundfile as sf

    audio, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    return audio.mean(axis=1), int(sample_rate)


def load_audio_mono16k(path: str | Path) -> np.ndarray:
    """Audio of a media or WAV file as float32 mono at 16 kHz (what ASR, VAD and embeddings take)."""
    path = Path(path)
    try:
        import soundfile as sf

        info = sf.info(str(path))
        if info.samplerate == RATE_16K and info.channels == 1:
            data, _ = sf.read(str(path), dtype="float32", always_2d=False)
            return np.ascontiguousarray(data, dtype=np.float32)
    except Exception:  # noqa: BLE001 - not a plain WAV: let ffmpeg decode it
        pass
    # A private temp file in the project's own tmp folder, never next to the source (that may be the
    # watched inbox), named with the swept prefix so a killed process leaves nothing for long.
    from dubbing_assets.core.crypto.files import plaintext_tempfile
    from dubbing_assets.core.settings import private_tmp_dir

    tmp = plaintext_tempfile(private_tmp_dir(), suffix=".16k.wav")
    try:
        run_ffmpeg(["-i", path, "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(RATE_16K),
                    "-c:a", "pcm_f32le", "-f", "wav", tmp], what=f"decoding audio of {path.name}")
        import soundfile as sf

        data, _ = sf.read(str(tmp), dtype="float32", always_2d=False)
    except EngineError as exc:
        raise MediaError(f"Could not decode audio from {path.name}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return np.ascontiguousarray(data, dtype=np.float32)


def as_mono16k(wav: str | Path | np.ndarray) -> np.ndarray:
    """Mono 16 kHz float32 from a file (decoded) or from samples already at 16 kHz (channels averaged):
    the stages that take either a path or the array a previous step loaded."""
    if isinstance(wav, np.ndarray):
        audio = wav.astype(np.float32, copy=False)
        return audio.mean(axis=1) if audio.ndim == 2 else audio
    return load_audio_mono16k(wav)


@contextmanager
def wav_writer(path: Path, sample_rate: int, channels: int, *, subtype: str = "PCM_24") -> Iterator[Any]:
    """A WAV (24-bit by default) written to a temp file beside `path`, fsynced and renamed on success, so a
    reader never sees half a file and a failed write leaves the old one."""
    import soundfile as sf

    with atomic_path(path, ".tmp.wav") as tmp, sf.SoundFile(
            tmp, "w", samplerate=sample_rate, channels=channels, subtype=subtype, format="WAV") as fh:
        yield fh


def write_wav_atomic(path: Path | str, audio: np.ndarray, sample_rate: int, *, subtype: str = "PCM_16",
                     layout: str | None = None) -> Path:
    """Write float audio as a WAV atomically (see `wav_writer`), 16-bit unless `subtype` says otherwise.

    With more than two channels and a `layout`, the layout is stamped into the
    header (via ffmpeg, 24-bit) so a 5.1 source gives 5.1 files, not "6 unknown channels".
    """
    path = Path(path)
    audio = np.asarray(audio, dtype=np.float32)
    channels = 1 if audio.ndim == 1 else int(audio.shape[1])
    if not (layout and channels > 2):
        with wav_writer(path, sample_rate, channels, subtype=subtype) as fh:
            fh.write(audio)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path.parent) as tmp:
        raw = Path(tmp) / "float.wav"
        with wav_writer(raw, sample_rate, channels, subtype="FLOAT") as fh:
            fh.write(audio)
        with atomic_path(path, ".wav") as stamped:
            run_ffmpeg(["-ch_layout", layout, "-i", raw, "-c:a", "pcm_s24le", "-f", "wav", stamped],
                       what=f"writing the {layout} layout of {path.name}")
    return path
