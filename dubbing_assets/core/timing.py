"""Timing fit: put each dubbed line where the source line was, without cutting speech.

Every line starts at its source start. Its *slot* runs from there to the
source line's end; the silence after it, up to the next line's start (or the
end of the media), may be borrowed. When the synthesized line is longer than
its slot, in this order:

1. ask the engine to speak faster (up to `max_rate`, default 1.15);
2. time-stretch with the pitch kept (Rubber Band through pedalboard), up to
   `max_stretch` (default 1.25) on top of the rate;
3. borrow the silence after the slot, up to the next line's start;
4. only then record an overflow (seconds past the next line's start).

Speech is never dropped or cut: an overflowing line is placed whole and the
overflow is reported (QA flags it). Leading and trailing silence of the
synthesized audio is trimmed first (speech itself never is), and the clip is
placed so that its audible onset sits on the source start: the onset is the
first sample within `ONSET_BELOW_RMS_DB` of the line's own RMS level (the
rule the fixtures' ground truth uses: -40 dBFS for a line at -20 dBFS RMS),
and the `lead_s` of silence kept before it starts that much earlier.

`LineCache` keeps synthesized lines by a hash of everything that shapes the
audio (text, voice, engine, engine version, rate): editing one line of a
transcript re-synthesizes that line only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dubbing_assets.core.audio_io import read_mono, write_wav_atomic
from dubbing_assets.core.contracts import TranslatedLine, Voice
from dubbing_assets.core.fsutil import atomic_path
from dubbing_assets.core.tts import SynthResult, TTSEngine, identity_of

#: A synthesizer callback: (rate, out_wav) -> SynthResult.
Synthesizer = Callable[[float, Path], SynthResult]

#: Silence kept at each end of a trimmed clip (seconds).
EDGE_PAD_S = 0.01
#: Level below which the edges of a synthesized clip count as silence (dBFS).
SILENCE_DB = -40.0
#: A line's audible onset: its first sample above its own RMS level minus this many dB.
ONSET_BELOW_RMS_DB = 20.0


@dataclass
class FitResult:
    """Where and how one dubbed line was placed (seconds on the media timeline)."""

    index: int
    start: float
    duration: float
    rate: float
    stretch: float
    borrowed_s: float
    overflow_s: float
    path: str
    slot_end: float = 0.0
    limit: float = 0.0
    natural_duration: float = 0.0
    sample_rate: int = 0
    cache_hits: int = 0
    #: Syntheses this line needed that were not cached (0: the line came wholly from the cache).
    cache_misses: int = 0
    #: Silence at the head of the placed clip, before its audible onset: `start + lead_s` is the source start.
    lead_s: float = 0.0

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def speed(self) -> float:
        """Total speed-up against the voice's natural pace (rate times stretch)."""
        return self.rate * self.stretch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


# --------------------------------------------------------------------------------------------
# audio helpers


def speech_bounds(
    audio: np.ndarray, sample_rate: int, *, threshold_db: float = SILENCE_DB, frame_s: float = 0.005
) -> tuple[int, int] | None:
    """First and last sample (end exclusive) of the frames whose peak is above `threshold_db` dBFS."""
    if audio.size == 0:
        return None
    frame = max(1, int(frame_s * sample_rate))
    count = int(np.ceil(audio.size / frame))
    padded = np.zeros(count * frame, dtype=np.float32)
    padded[: audio.size] = np.abs(audio)
    peaks = padded.reshape(count, frame).max(axis=1)
    loud = np.flatnonzero(peaks >= 10 ** (threshold_db / 20))
    if loud.size == 0:
        return None
    return int(loud[0] * frame), int(min(audio.size, (loud[-1] + 1) * frame))


def trim_silence(
    audio: np.ndarray, sample_rate: int, *, pad_s: float = EDGE_PAD_S, threshold_db: float = SILENCE_DB
) -> np.ndarray:
    """Drop leading and trailing silence (never anything above `threshold_db`), keeping `pad_s`."""
    bounds = speech_bounds(audio, sample_rate, threshold_db=threshold_db)
    if bounds is None:
        return audio
    pad = int(pad_s * sample_rate)
    return audio[max(0, bounds[0] - pad) : min(audio.size, bounds[1] + pad)]


def speech_onset(audio: np.ndarray, sample_rate: int, *, below_rms_db: float = ONSET_BELOW_RMS_DB) -> int | None:
    """Sample index of the audible onset: the first sample within `below_rms_db` of the speech's RMS.

    The RMS is taken over the clip between its -40 dBFS edges, so the
    threshold follows the line's own level, not the engine's output gain.
    """
    bounds = speech_bounds(audio, sample_rate)
    if bounds is None:
        return None
    speech = np.asarray(audio[bounds[0] : bounds[1]], dtype=np.float64)
    rms = float(np.sqrt(np.mean(np.square(speech)))) if speech.size else 0.0
    amp = max(rms * 10 ** (-below_rms_db / 20), 1e-3)
    loud = np.flatnonzero(np.abs(audio) >= amp)
    return int(loud[0]) if loud.size else bounds[0]


def trim_to_onset(
    audio: np.ndarray, sample_rate: int, *, pad_s: float = EDGE_PAD_S, max_lead_s: float | None = None
) -> tuple[np.ndarray, int]:
    """Trimmed clip and its lead (samples of silence kept before the audible onset).

    The tail is trimmed as `trim_silence` does; the head keeps `pad_s`
    (at most `max_lead_s`) before the onset.
    """
    bounds = speech_bounds(audio, sample_rate)
    onset = speech_onset(audio, sample_rate)
    if bounds is None or onset is None:
        return audio, 0
    pad = int(pad_s * sample_rate)
    lead = min(pad, onset) if max_lead_s is None else min(pad, onset, int(max_lead_s * sample_rate))
    end = min(audio.size, bounds[1] + pad)
    return audio[onset - lead : end], lead


def stretch_audio(audio: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Make `audio` `factor` times faster (shorter), pitch and formants kept (Rubber Band)."""
    if abs(factor - 1.0) < 1e-4 or audio.size == 0:
        return audio
    import pedalboard

    out = pedalboard.time_stretch(
        np.asarray(audio, dtype=np.float32).reshape(1, -1),
        float(sample_rate),
        stretch_factor=float(factor),
        pitch_shift_in_semitones=0.0,
    )
    return np.asarray(out[0], dtype=np.float32)


# --------------------------------------------------------------------------------------------
# the fit


def line_slots(
    starts_ends: Sequence[tuple[float, float]], media_end: float
) -> list[tuple[float, float, float]]:
    """(start, slot_end, limit) per line: its source span and the next line's start (or media end)."""
    order = sorted(range(len(starts_ends)), key=lambda i: starts_ends[i][0])
    out: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * len(starts_ends)
    for pos, i in enumerate(order):
        start, end = starts_ends[i]
        limit = starts_ends[order[pos + 1]][0] if pos + 1 < len(order) else max(media_end, end)
        limit = max(limit, start)
        out[i] = (start, min(max(end, start), limit), limit)
    return out


def fit_line(
    index: int,
    start: float,
    slot_end: float,
    limit: float,
    synthesize: Synthesizer,
    out_wav: Path,
    *,
    max_rate: float = 1.15,
    max_stretch: float = 1.25,
    work_dir: Path | None = None,
) -> FitResult:
    """Synthesize one line and fit it into [start, slot_end], borrowing up to `limit`.

    `synthesize(rate, wav)` makes the raw line at a speaking rate (cache it:
    see `cached_synthesizer`). The placed clip (trimmed, maybe stretched) is
    written to `out_wav`; the returned `FitResult` says what was needed.
    """
    out_wav = Path(out_wav)
    slot = max(0.0, slot_end - start)
    room = max(slot, limit - start)
    tmp_root = Path(work_dir) if work_dir is not None else out_wav.parent
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fit-", dir=tmp_root) as tmp:

        def render(rate: float) -> tuple[np.ndarray, int, int]:
            """Trimmed clip, its rate and its lead (silence before the onset, never before t = 0)."""
            result = synthesize(rate, Path(tmp) / f"raw-{rate:.3f}.wav")
            audio, sample_rate = read_mono(result.path)
            trimmed, lead = trim_to_onset(audio, sample_rate, max_lead_s=max(0.0, float(start)))
            return trimmed, sample_rate, lead

        rate = 1.0
        audio, sample_rate, lead = render(rate)
        # from the onset on, the clip is what has to fit the slot; its lead sits before the source start
        natural = (audio.size - lead) / sample_rate
        duration = natural
        # 1. speak faster (two tries: the engine's duration is not exactly proportional to rate)
        for _ in range(2):
            if duration <= slot + 1e-3 or rate >= max_rate - 1e-6 or slot <= 0:
                break
            rate = round(min(max_rate, rate * duration / slot + 0.005), 3)
            audio, sample_rate, lead = render(rate)
            duration = (audio.size - lead) / sample_rate
        # Lengths from here on are whole samples; seconds are derived (and rounded) once, at the end,
        # so no rounding step can leave a clip a fraction of a millisecond longer than its room.
        slot_n = int(np.floor(slot * sample_rate + 1e-6))
        room_n = int(np.floor(room * sample_rate + 1e-6))
        tolerance_n = int(1e-3 * sample_rate)
        # 2. stretch, pitch kept: to the slot's exact length (unless up to 1 ms over fits in the room)
        stretch = 1.0
        body = audio.size - lead
        if body > slot_n + tolerance_n or body > room_n:
            if slot_n > 0:
                stretch = min(max_stretch, body / slot_n)
            else:  # a zero-length slot: squeeze as much as allowed
                stretch = max_stretch
            lead = int(round(lead / stretch))
            target = lead + int(np.ceil(body / stretch))
            audio = stretch_audio(audio, sample_rate, stretch)
            if audio.size > target:  # Rubber Band may give a sample or two more: trailing pad, not speech
                audio = audio[: target + max(0, audio.size - target - tolerance_n)]
        n = int(audio.size) - lead
        # 3. borrow the silence after the slot; 4. what is left is overflow
        borrowed_n = min(max(0, n - slot_n), max(0, room_n - slot_n))
        overflow_n = max(0, n - room_n)
        write_wav_atomic(out_wav, audio, sample_rate)
    return FitResult(
        index=index,
        start=round(float(start) - lead / sample_rate, 6),
        duration=round(audio.size / sample_rate, 6),
        rate=rate,
        stretch=round(stretch, 4),
        borrowed_s=round(borrowed_n / sample_rate, 4),
        overflow_s=round(overflow_n / sample_rate, 4),
        path=str(out_wav),
        slot_end=float(slot_end),
        limit=float(limit),
        natural_duration=round(natural, 4),
        sample_rate=sample_rate,
        lead_s=round(lead / sample_rate, 6),
    )


# --------------------------------------------------------------------------------------------
# the per-line cache


def line_key(text: str, voice: Voice, engine: str, engine_version: str, rate: float) -> str:
    """sha256 of everything that shapes one synthesized line."""
    payload = {
        "text": text,
        "voice": asdict(voice),
        "engine": engine,
        "engine_version": engine_version,
        "rate": round(float(rate), 3),
    }
    return hashlib.sha256(
        json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode()
    ).hexdigest()


@dataclass
class LineCache:
    """Synthesized lines on disk, by `line_key`; counts hits and misses.

    The cache only saves time, so an entry that cannot be read (a torn write from an older release, a disk
    error, an entry encrypted under a key the ring no longer holds) is discarded and the line synthesized
    again: a bad entry must not fail the episode. `repaired` counts them.
    """

    folder: Path
    hits: int = 0
    misses: int = 0
    repaired: int = 0
    keys_used: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"not a line key: {key!r}")
        return self.folder / key[:2] / f"{key}.wav"

    def get(self, key: str) -> Path | None:
        path = self.path_for(key)
        return path if path.is_file() else None

    def fetch(
        self, key: str, produce: Callable[[Path], SynthResult], out_wav: Path | None = None
    ) -> SynthResult:
        """The cached line for `key`, made with `produce(path)` on a miss; copied to `out_wav` if given."""
        import soundfile as sf

        self.keys_used.append(key)
        path = self.get(key)
        info = None
        if path is not None:
            try:
                info = sf.info(str(path))
            except (RuntimeError, OSError) as exc:  # soundfile raises RuntimeError on a damaged file
                self._discard(key, f"not a readable WAV ({exc})")
        if info is not None:
            self.hits += 1
        else:
            self.misses += 1
            path = self._store(key, produce)
            info = sf.info(str(path))
        assert path is not None
        target = path
        if out_wav is not None and Path(out_wav) != path:
            Path(out_wav).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out_wav)
            target = Path(out_wav)
        return SynthResult(target, info.frames / info.samplerate, int(info.samplerate))

    def _store(self, key: str, produce: Callable[[Path], SynthResult]) -> Path:
        """Make the line with `produce` and keep it; return a readable WAV's path (subclasses override)."""
        path = self.path_for(key)
        with atomic_path(path, ".wav") as tmp:
            produce(tmp)
        return path

    def _discard(self, key: str, why: str) -> None:
        """Drop an unreadable entry (it is made again); logged, since it may mean a failing disk."""
        self.repaired += 1
        logging.getLogger(__name__).warning(f"TTS cache entry {key[:12]} is damaged ({why}); synthesizing "
                                            "the line again")
        for path in (self.path_for(key), *self._copies(key)):
            path.unlink(missing_ok=True)

    def _copies(self, key: str) -> tuple[Path, ...]:
        """Readable copies of an entry that a subclass keeps besides `path_for` (none here)."""
        return ()

    @property
    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "repaired": self.repaired}


def cached_synthesizer(engine: TTSEngine, text: str, voice: Voice, cache: LineCache | None) -> Synthesizer:
    """A `Synthesizer` for one line that goes through `cache` (when given)."""

    def synthesize(rate: float, out_wav: Path) -> SynthResult:
        if cache is None:
            return engine.synthesize(text, voice, out_wav, rate=rate)
        key = line_key(text, voice, *identity_of(engine, voice), rate)
        return cache.fetch(key, lambda p: engine.synthesize(text, voice, p, rate=rate))

    return synthesize


def fit_lines(
    lines: Sequence[TranslatedLine],
    voices: Mapping[str, Voice],
    engine: TTSEngine,
    out_dir: Path,
    *,
    media_end: float,
    cache: LineCache | None = None,
    max_rate: float = 1.15,
    max_stretch: float = 1.25,
    default_voice: Voice | None = None,
) -> list[FitResult]:
    """Synthesize and fit every translated line; clips go to `out_dir/line-<index>.wav`.

    `voices` maps a speaker label to its `Voice` (`default_voice` for the rest).
    Lines with empty text are skipped.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    slots = line_slots([(ln.start, ln.end) for ln in lines], media_end)
    results: list[FitResult] = []
    for line, (start, slot_end, limit) in zip(lines, slots, strict=True):
        if not line.text.strip():
            continue
        voice = voices.get(line.speaker, default_voice)
        if voice is None:
            raise KeyError(f"No voice for speaker {line.speaker!r} (line {line.index}) and no default voice.")
        hits_before = cache.hits if cache is not None else 0
        misses_before = cache.misses if cache is not None else 0
        result = fit_line(
            line.index,
            start,
            slot_end,
            limit,
            cached_synthesizer(engine, line.text, voice, cache),
            out_dir / f"line-{line.index:05d}.wav",
            max_rate=max_rate,
            max_stretch=max_stretch,
        )
        result.cache_hits = (cache.hits - hits_before) if cache is not None else 0
        result.cache_misses = (cache.misses - misses_before) if cache is not None else 0
        results.append(result)
    return results
