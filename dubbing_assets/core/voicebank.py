"""The voice bank: every real voice the installed engines offer, each embedded once (cached).

Casting (`core.cast`) gives a new character the unused bank voice nearest to its
speaker. A bank voice is one (engine, voice, speaker id): the Kokoro voices,
the installed Piper voices, and the speakers of multi-speaker Piper models (up
to `MAX_SPEAKERS_PER_MODEL` each). Each is spoken once on `SAMPLE_TEXT`; its
speaker embedding (the diarization encoder, so it compares with characters'
embeddings), median F0 and gender are kept in ``<cache>/voicebank/<key>.json``,
keyed by the engine version and the voice, so the next run reads them; the
same entries go to the per-user cache (`user_cache_dir`), so a fresh
DUBBING_HOME does not embed the same voices again.

Gender comes from the voice's name where the engine says it (Kokoro's `jf_`/`jm_`),
else from its median F0 (`voicerange.range_hint`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dubbing_assets.core.contracts import Voice
from dubbing_assets.core.fsutil import cached_json
from dubbing_assets.core.tts import identity_of

SAMPLE_TEXT = ("The morning train was late again, so I walked to the office. "
               "On the way, I found a small bookshop and bought an old map of the city.")
MAX_SPEAKERS_PER_MODEL = 8
BANK_VERSION = "1"


@dataclass(frozen=True)
class BankVoice:
    engine: str
    voice: str
    speaker_id: int | None
    gender: str | None
    f0_hz: float | None
    embedding: tuple[float, ...]

    @property
    def key(self) -> str:
        return voice_key(self.engine, self.voice, self.speaker_id)

    def as_voice(self, pitch_semitones: float = 0.0) -> Voice:
        return Voice(engine=self.engine, voice=self.voice, speaker_id=self.speaker_id, length_scale=1.0,
                     pitch_semitones=float(pitch_semitones), settings={})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["embedding"] = list(self.embedding)
        return d


def voice_key(engine: str, voice: str, speaker_id: int | None = None) -> str:
    """`kokoro/jf_alpha`, `piper/en_US-libritts_r-medium#3`: one bank voice."""
    return f"{engine}/{voice}" + (f"#{speaker_id}" if speaker_id is not None else "")


def _entries(engine: Any) -> list[tuple[str, int | None]]:
    counts = engine.speaker_counts() if hasattr(engine, "speaker_counts") else {}
    out: list[tuple[str, int | None]] = []
    for name in engine.voices():
        n = int(counts.get(name, 1))
        out += [(name, None)] if n <= 1 else [(name, i) for i in range(min(n, MAX_SPEAKERS_PER_MODEL))]
    return out


def _name_gender(engine: Any, voice: str) -> str | None:
    if getattr(engine, "name", "") == "kokoro":
        from dubbing_assets.core.engines.kokoro import voice_gender

        return voice_gender(voice)
    return None


def user_cache_dir() -> Path:
    """The per-user cache of bank entries (``$XDG_CACHE_HOME/dubbing_assets``, else ``~/.cache/...``).

    An entry depends only on the installed engine, voice and encoder (all in its key), not on any
    DUBBING_HOME, so every instance of one user shares it and a fresh instance does not spend a
    minute re-embedding the same voices.
    """
    root = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(root) / "dubbing_assets"


_ENTRY_KEYS = {"engine", "voice", "speaker_id", "gender", "f0_hz", "embedding"}


def build_bank(engines: Sequence[Any], cache_dir: Path | Sequence[Path] | None, *,
               embed: Callable[[Any], Sequence[float]] | None = None,
               log: Callable[[str], None] | None = None) -> list[BankVoice]:
    """The bank of `engines` (built `TTSEngine`s), reading the first cache of `cache_dir` (one folder or
    several, in order) that has an entry and writing new entries to all of them."""
    from dubbing_assets.core import diarize
    from dubbing_assets.core.audio_io import load_audio_mono16k
    from dubbing_assets.core.voicerange import median_f0, range_hint

    if embed is None:
        def embed(audio: Any) -> Sequence[float]:
            return diarize.embed_span(audio, 0.0, len(audio) / diarize.SAMPLE_RATE)
    bank: list[BankVoice] = []
    dirs = [] if cache_dir is None else [cache_dir] if isinstance(cache_dir, str | Path) else list(cache_dir)
    folders = [Path(d) / "voicebank" for d in dirs]
    for engine in engines:
        for name, speaker_id in _entries(engine):
            plain = Voice(engine=engine.name, voice=name, speaker_id=speaker_id, length_scale=1.0,
                          pitch_semitones=0.0, settings={})
            digest = hashlib.sha256(json.dumps([BANK_VERSION, *identity_of(engine, plain), name, speaker_id,
                                                SAMPLE_TEXT, diarize.ENCODER]).encode()).hexdigest()[:24]
            def build(engine: Any = engine, name: str = name, speaker_id: int | None = speaker_id,
                      voice: Voice = plain) -> dict[str, Any]:
                with tempfile.TemporaryDirectory() as tmp:
                    result = engine.synthesize(SAMPLE_TEXT, voice, Path(tmp) / "sample.wav")
                    audio = load_audio_mono16k(result.path)
                f0 = median_f0(audio, [(0.0, len(audio) / 16000)])
                gender = _name_gender(engine, name) or range_hint(f0)
                entry = BankVoice(engine.name, name, speaker_id, gender, None if f0 is None else round(f0, 1),
                                  tuple(round(float(x), 6) for x in embed(audio)))
                if log is not None:
                    log(f"voice bank: embedded {entry.key} ({gender or 'unknown gender'}, F0 {entry.f0_hz})")
                return entry.to_dict()

            d, _ = cached_json([f / f"{digest}.json" for f in folders], build, valid=lambda d: _ENTRY_KEYS <= set(d))
            bank.append(BankVoice(d["engine"], d["voice"], d["speaker_id"], d["gender"], d["f0_hz"],
                                  tuple(d["embedding"])))
    return bank


def bank_engines(build: Callable[[str], Any], names: Sequence[str] = ("kokoro", "piper"),
                 log: Callable[[str], None] | None = None) -> list[Any]:
    """The engines of `names` that load here (`build(name)` -> engine); the others are skipped with a note."""
    out = []
    for name in names:
        try:
            out.append(build(name))
        except Exception as exc:  # noqa: BLE001 - an engine that is not installed is not in the bank
            if log is not None:
                log(f"voice bank: engine {name!r} left out ({exc})")
    return out


def bank_listing(bank: Sequence[BankVoice]) -> list[dict[str, Any]]:
    """The bank as the cast file lists it (no embeddings)."""
    return [{"engine": v.engine, "voice": v.voice, "speaker_id": v.speaker_id, "gender": v.gender,
             "f0_hz": v.f0_hz} for v in bank]


def gender_of(f0_hz: float | None, embedding: Sequence[float] | None, bank: Sequence[BankVoice]
              ) -> str | None:
    """A speaker's gender: from F0 when it is clearly high or low, else the nearer bank gender by embedding."""
    from dubbing_assets.core.cast import cosine
    from dubbing_assets.core.voicerange import range_hint

    hint = range_hint(f0_hz)
    if hint is not None or embedding is None:
        return hint
    scores: Mapping[str, list[float]] = {"female": [], "male": []}
    for v in bank:
        if v.gender in scores:
            scores[v.gender].append(cosine(embedding, v.embedding))
    means = {g: sum(s) / len(s) for g, s in scores.items() if s}
    return max(means, key=lambda g: means[g]) if means else None
