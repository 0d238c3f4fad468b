"""Casting: which known character is each speaker of this episode, and which voice they get.

Pure logic, no I/O. Speakers (from subtitles or diarization) are matched to
the series' characters one-to-one:

1. a speaker whose name hint (the subtitle Actor/Name field) equals a
   character's name (case and spacing ignored) is that character;
2. the rest are paired by the cosine similarity of their embeddings with the
   Hungarian algorithm (maximum total similarity); a pair counts only at or
   above `threshold`;
3. speakers left over are new characters (`is_new`).

With a voice bank (`core.voicebank`), a new character gets the bank voice
nearest to its speaker's embedding among the voices of its gender that no
other character of the episode holds (`pick_bank_voice`); only when the bank
has no unused voice of that gender is a held voice reused with a pitch and
formant shift, and the casting row says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dubbing_assets.core.contracts import Voice
from dubbing_assets.core.tts import assign_voice

SpeakerIn = tuple[str, Sequence[float] | None, str | None]  # (label, embedding, name hint)
CharacterIn = tuple[str, str | None, Sequence[float] | None]  # (id, name, embedding)


@dataclass
class Match:
    label: str
    character_id: str | None
    similarity: float
    is_new: bool
    by: str = "none"  # "name", "embedding" or "none"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _norm_name(name: str | None) -> str:
    return re.sub(r"\s+", " ", (name or "").strip()).casefold()


def cosine(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    """Cosine similarity; 0.0 when either side is missing, empty, zero or of another length."""
    if a is None or b is None:
        return 0.0
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size == 0 or x.shape != y.shape:
        return 0.0
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0 or ny == 0 or not math.isfinite(nx * ny):
        return 0.0
    return float(np.dot(x, y) / (nx * ny))


def match_speakers(
    speakers: Sequence[SpeakerIn], characters: Sequence[CharacterIn], threshold: float = 0.75
) -> list[Match]:
    """One `Match` per speaker, in the speakers' order (see the module docstring)."""
    from scipy.optimize import linear_sum_assignment

    results: dict[int, Match] = {}
    taken: set[int] = set()
    by_name: dict[str, int] = {}
    for j, (_cid, name, _emb) in enumerate(characters):
        key = _norm_name(name)
        if key and key not in by_name:
            by_name[key] = j
    for i, (label, embedding, hint) in enumerate(speakers):
        j = by_name.get(_norm_name(hint)) if _norm_name(hint) else None
        if j is not None and j not in taken:
            taken.add(j)
            results[i] = Match(
                label, characters[j][0], round(cosine(embedding, characters[j][2]), 4), False, "name"
            )
    rows = [i for i in range(len(speakers)) if i not in results]
    cols = [j for j in range(len(characters)) if j not in taken]
    if rows and cols:
        sim = np.array([[cosine(speakers[i][1], characters[j][2]) for j in cols] for i in rows])
        r_idx, c_idx = linear_sum_assignment(-sim)
        for r, c in zip(r_idx, c_idx, strict=True):
            if sim[r, c] >= threshold:
                i, j = rows[r], cols[c]
                results[i] = Match(
                    speakers[i][0], characters[j][0], round(float(sim[r, c]), 4), False, "embedding"
                )
    out: list[Match] = []
    for i, (label, embedding, _hint) in enumerate(speakers):
        if i in results:
            out.append(results[i])
            continue
        best = max((cosine(embedding, c[2]) for c in characters), default=0.0)
        out.append(Match(label, None, round(best, 4), True, "none"))
    return out


def next_character_ids(existing: Iterable[str], count: int, prefix: str = "c") -> list[str]:
    """`count` fresh ids after the highest existing `c0001`-style id."""
    highest = 0
    for cid in existing:
        m = re.fullmatch(rf"{re.escape(prefix)}(\d+)", cid)
        if m:
            highest = max(highest, int(m.group(1)))
    return [f"{prefix}{highest + k:04d}" for k in range(1, count + 1)]


def choose_voice(
    character_id: str,
    character_index: int,
    pinned: Mapping[str, Voice],
    available_voices: Sequence[str],
    gender_hint: str | None = None,
    *,
    engine: str = "piper",
    speaker_counts: Mapping[str, int] | None = None,
) -> Voice:
    """The voice pinned in the cast file for `character_id`, else the deterministic `assign_voice`."""
    if character_id in pinned:
        return pinned[character_id]
    return assign_voice(
        character_index, gender_hint, available_voices, engine=engine, speaker_counts=speaker_counts
    )


def voice_for(character: Any, pinned: Mapping[str, Voice], available: Sequence[str]) -> Voice:
    """Cast file pin, else the voice the store already gave this character, else a new deterministic one.

    Reusing the stored voice keeps a character's voice the same in every episode, even if the
    set of installed voices changes later. New characters get a variant in their voice range
    (median F0 kept in ``character.extra["f0_hz"]``).
    """
    from dubbing_assets.core.voicerange import range_hint

    if character.id in pinned:
        return pinned[character.id]
    if "engine" in character.voice and "voice" in character.voice:
        return Voice.from_dict(character.voice)
    index = int(character.id[1:]) - 1 if character.id[1:].isdigit() else 0
    return choose_voice(character.id, index, {}, available, range_hint(character.extra.get("f0_hz")))


#: Pitch (and formant) shifts, in semitones, for the 1st, 2nd, ... reuse of a held bank voice.
REUSE_SHIFTS: tuple[float, ...] = (3.0, -3.0, 5.0, -5.0, 7.0, -7.0)


def _key(voice: Voice) -> str:
    from dubbing_assets.core.voicebank import voice_key

    return voice_key(voice.engine, voice.voice, voice.speaker_id)


#: How much a candidate voice's likeness to a voice already cast in the episode (same gender) counts against
#: it: two characters of one episode should sound apart before each sounds like its original. With the
#: offline bank, the second woman gets jf_gongitsune (0.678 from jf_alpha) instead of jf_nezumi (0.716).
DISTINCT_WEIGHT = 1.0


def pick_bank_voice(embedding: Sequence[float] | None, gender: str | None, bank: Sequence[Any],
                    held: Mapping[str, int]) -> tuple[Voice, dict[str, Any]]:
    """The bank voice for a new character, and how it was chosen.

    `bank` holds `voicebank.BankVoice`s; `held` counts, per bank key, the characters of this
    episode already speaking with it. Nearest (cosine) unused voice of `gender` (any gender when
    unknown or when the bank has none of it); when all of them are held, the least-held one with
    the next `REUSE_SHIFTS` shift, recorded as ``shifted``.
    """
    if not bank:
        raise ValueError("the voice bank is empty")
    pool = [v for v in bank if gender is None or v.gender == gender] or list(bank)
    unused = [v for v in pool if held.get(v.key, 0) == 0]
    taken = [v for v in pool if held.get(v.key, 0) > 0]

    def likeness(v: Any) -> float:
        """Nearness to the speaker, less nearness to the voices this episode already gave its gender."""
        crowd = max((cosine(v.embedding, t.embedding) for t in taken), default=0.0)
        return cosine(embedding, v.embedding) - DISTINCT_WEIGHT * max(0.0, crowd)

    if unused:
        best = max(unused, key=likeness)
        shift, why = 0.0, ("nearest unused bank voice" if not taken else
                           "nearest unused bank voice, apart from this episode's other voices of that gender")
    else:
        best = min(pool, key=lambda v: (held.get(v.key, 0), -cosine(embedding, v.embedding)))
        shift = REUSE_SHIFTS[(held.get(best.key, 0) - 1) % len(REUSE_SHIFTS)]
        why = f"bank exhausted for {gender or 'this'} voices: {best.key} reused, shifted {shift:+.0f} semitones"
    note = {"bank_voice": best.key, "gender": gender, "voice_gender": best.gender,
            "voice_similarity": round(cosine(embedding, best.embedding), 4), "shifted": bool(shift), "why": why}
    return best.as_voice(shift), note


def remember_dvector(character: Any, dvector: Sequence[float] | None, seconds: float) -> None:
    """Fold this episode's d-vector of the character into the store's (weighted by seconds of speech), so
    the diarization of later episodes knows the voice (`diarize.guide_by_known`)."""
    if not dvector:
        return
    new = np.asarray(dvector, dtype=np.float64)
    old, old_s = character.extra.get("dvector"), float(character.extra.get("dvector_s") or 0.0)
    weight = max(seconds, 1e-3)
    mean = new * weight + (np.asarray(old, dtype=np.float64) * old_s if old and old_s > 0 else 0.0)
    norm = float(np.linalg.norm(mean))
    if norm > 0:
        character.extra["dvector"] = [round(float(x), 6) for x in mean / norm]
        character.extra["dvector_s"] = round(old_s + weight, 3)


def known_voices(store: Any) -> list[tuple[str, list[float]]]:
    """(character id, d-vector) of the store's characters whose voice it knows."""
    return [(c.id, list(c.extra["dvector"])) for c in store.characters if c.extra.get("dvector")]


def cast_episode(store: Any, speakers: Sequence[Any], episode: str, pinned: Mapping[str, Voice],
                 available: Sequence[str], *, cloner: Callable[[Any, str, Voice], Voice] | None = None,
                 threshold: float = 0.75, bank: Sequence[Any] | None = None
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Match this episode's speakers to the store's characters (adding new ones) and give each a voice.

    `store` is an open `CharacterStore` (the caller holds its transaction); `speakers` are
    `model.Speaker`s. `cloner(character, label, low_mode_voice)` may return a cloning voice
    (high mode). With `bank` (voice bank entries), new characters are cast by voice
    (`pick_bank_voice`) after the characters that already have one (pinned or stored).
    Returns (voice per speaker label as dicts, assignment per speaker label).
    """
    from dubbing_assets.core.voicebank import gender_of

    chars = [(c.id, c.name, c.embedding) for c in store.characters]
    matches = match_speakers([(s.label, s.embedding, s.name) for s in speakers], chars, threshold)
    voices: dict[str, dict[str, Any]] = {}
    assigned: dict[str, dict[str, Any]] = {}
    rows: list[tuple[Any, Match, Any]] = []
    for sp, match in zip(speakers, matches, strict=True):
        if match.is_new:
            ch = store.add_character(sp.name or sp.label, sp.embedding, episodes=[episode])
        else:
            ch = store.find(match.character_id)
            if episode not in ch.episodes:
                ch.episodes.append(episode)
        if getattr(sp, "f0_hz", None) and "f0_hz" not in ch.extra:
            ch.extra["f0_hz"] = sp.f0_hz
        remember_dvector(ch, getattr(sp, "dvector", None), float(getattr(sp, "seconds", 0.0) or 0.0))
        rows.append((sp, match, ch))
    chosen: dict[str, Voice] = {}
    notes: dict[str, dict[str, Any]] = {}
    has_voice = {ch.id for _, _, ch in rows
                 if ch.id in pinned or ("engine" in ch.voice and "voice" in ch.voice)}
    held: dict[str, int] = {}
    for _sp, _match, ch in rows:
        if ch.id in has_voice or not bank:
            chosen[ch.id] = voice_for(ch, pinned, available)
            held[_key(chosen[ch.id])] = held.get(_key(chosen[ch.id]), 0) + 1
    for _sp, _match, ch in rows:
        if ch.id in chosen:
            continue
        gender = gender_of(ch.extra.get("f0_hz"), ch.embedding, bank)
        chosen[ch.id], notes[ch.id] = pick_bank_voice(ch.embedding, gender, bank, held)
        held[_key(chosen[ch.id])] = held.get(_key(chosen[ch.id]), 0) + 1
        ch.extra["casting"] = notes[ch.id]
    for sp, match, ch in rows:
        voice = chosen[ch.id]
        ch.voice = {**ch.voice, **asdict(voice)}
        if cloner is not None:
            voice = cloner(ch, sp.label, voice)
        voices[sp.label] = asdict(voice)
        assigned[sp.label] = {"character_id": ch.id, "name": ch.name, "similarity": match.similarity,
                              "new": match.is_new, "by": match.by,
                              "casting": notes.get(ch.id) or ch.extra.get("casting")
                              or {"why": "pinned in the cast file" if ch.id in pinned else "kept from the store"}}
    return voices, assigned
