"""The data that flows between stages, as small JSON-friendly dataclasses.

Stages exchange these as plain dicts (``to_dict``/``from_dict``) so the
encrypted IO manager can store them as JSON and the web UI can show them;
media itself travels as file handles (``MediaHandle``), never in memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class MediaHandle:
    """A file on disk that a stage produced or reads.

    The IO manager streams ``path`` through encryption into storage and hands
    downstream stages a temporary plaintext copy; ``meta`` is small JSON.
    """

    path: str
    kind: str = "file"  # "audio", "video", "file"
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MediaHandle:
        return cls(path=str(data["path"]), kind=data.get("kind", "file"), meta=dict(data.get("meta", {})))

    @property
    def p(self) -> Path:
        return Path(self.path)


@dataclass
class Word:
    start: float
    end: float
    text: str
    probability: float = 1.0


@dataclass
class Line:
    """One line of the script: who says what, when (seconds, file timeline)."""

    index: int
    start: float
    end: float
    speaker: str
    text: str
    words: list[Word] = field(default_factory=list)
    style: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Line:
        words = [Word(**w) for w in data.get("words", [])]
        return cls(index=int(data["index"]), start=float(data["start"]), end=float(data["end"]),
                   speaker=str(data["speaker"]), text=str(data["text"]), words=words,
                   style=data.get("style"))


@dataclass
class Script:
    """The episode's lines in the source language."""

    language: str
    source: str  # "subtitles" or "asr"
    lines: list[Line]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Script:
        return cls(language=data["language"], source=data["source"],
                   lines=[Line.from_dict(x) for x in data["lines"]], meta=dict(data.get("meta", {})))


@dataclass
class Speaker:
    """A speaker of this episode with its embedding (256 floats, L2-normalised)."""

    label: str  # "Aiko" (from subtitles) or "spk0" (from diarization)
    embedding: list[float]
    seconds: float
    lines: list[int]
    name: str | None = None
    #: Median fundamental frequency of the speaker's lines (Hz); a voice-range hint for casting.
    f0_hz: float | None = None


@dataclass
class Speakers:
    speakers: list[Speaker]
    line_speakers: dict[int, str]  # line index -> speaker label
    method: str  # "subtitles" or "diarization"
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["line_speakers"] = {str(k): v for k, v in self.line_speakers.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Speakers:
        return cls(speakers=[Speaker(**s) for s in data["speakers"]],
                   line_speakers={int(k): v for k, v in data["line_speakers"].items()},
                   method=data["method"], meta=dict(data.get("meta", {})))


@dataclass
class TranslatedLine:
    index: int
    start: float
    end: float
    speaker: str
    source_text: str
    text: str
    glossary_ok: bool = True
    glossary_missing: list[str] = field(default_factory=list)
    #: Other readings the engine offered ({text, logprob}, scored with seconds/fit/score once chosen
    #: from: `core.fit_choice`); empty when the engine gives one. A review edit may pick any of them.
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    #: The source line's slot (seconds) the reading was chosen against, and why it was chosen.
    slot_s: float | None = None
    chosen_by: str | None = None


@dataclass
class Translation:
    source_language: str
    target_language: str
    engine: str
    lines: list[TranslatedLine]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Translation:
        return cls(source_language=data["source_language"], target_language=data["target_language"],
                   engine=data["engine"], lines=[TranslatedLine(**x) for x in data["lines"]],
                   meta=dict(data.get("meta", {})))


@dataclass
class Voice:
    """How a character is voiced; stays the same across episodes."""

    engine: str  # "piper", "espeak", "xtts"
    voice: str  # model name / voice id
    speaker_id: int | None = None
    length_scale: float = 1.0
    pitch_semitones: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
