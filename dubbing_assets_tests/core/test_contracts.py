"""The stage contracts: typed, frozen records with one (de)serialisation each and their defaults in one place."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dubbing_assets.core.contracts import (
    BY_STAGE,
    QA,
    RECORDS,
    Cast,
    EpisodeRecord,
    LibraryEntry,
    MediaHandle,
    Script,
    SourceMedia,
    Speech,
    SpokenClip,
    Stems,
    SubtitleTrack,
    Voice,
)


def _source() -> SourceMedia:
    record = EpisodeRecord(key="show-e01", series="show", source="show/e01.mkv", fingerprint="ab" * 32)
    track = SubtitleTrack(file=MediaHandle("/tmp/s.ass", "subtitles"), kind="sidecar", name="e01.ass",
                          language="ja", language_confidence=0.9)
    return SourceMedia(media=MediaHandle("/tmp/e01.mkv", "video"), probe={"duration_s": 12.5, "streams": []},
                       fingerprint="ab" * 32, record=record, subtitles=(track,), audio_stream=1,
                       audio_language="jpn")


def test_a_record_round_trips_through_json_with_its_handles() -> None:
    src = _source()
    data = src.to_dict()
    assert data["media"] is src.media  # handles stay objects: the IO manager encrypts each file
    plain = json.loads(json.dumps(data, default=lambda h: h.to_dict()))
    back = SourceMedia.from_dict(plain)
    assert back == src
    assert isinstance(back.record, EpisodeRecord) and isinstance(back.subtitles[0], SubtitleTrack)
    assert isinstance(back.subtitles[0].file, MediaHandle) and back.duration_s == 12.5


def test_records_are_frozen() -> None:
    src = _source()
    with pytest.raises(dataclasses.FrozenInstanceError):
        src.record.mode = "high"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Script(language="ja", source="asr", lines=[]).language = "en"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Voice(engine="piper", voice="x").pitch_semitones = 2.0  # type: ignore[misc]


def test_the_episode_defaults_live_in_the_record() -> None:
    """One place for an episode's defaults: render used `get("target_lang", "en")` and understand the
    deployment's setting; five stages repeated `get("mode", "low")`."""
    bare = EpisodeRecord.from_dict({"key": "k", "series": "s", "source": "s/k.mkv"})
    assert (bare.mode, bare.owner, bare.visibility, bare.high) == ("low", "unknown", "private", False)
    assert bare.target("fr") == "fr"  # the deployment's DUBBING_TARGET_LANG, not a hard-coded "en"
    assert EpisodeRecord.from_dict({"key": "k", "series": "s", "source": "s/k.mkv", "target_lang": "de",
                                    "mode": "high"}).target("fr") == "de"


def test_unknown_keys_are_ignored_and_numbers_typed() -> None:
    rec = EpisodeRecord.from_dict({"key": "k", "series": "s", "source": "s/k.mkv", "from_the_future": 1,
                                   "sidecars": ["s/k.ass"]})
    assert rec.sidecars == ("s/k.ass",)
    assert QA.from_dict({"passed": True, "summary": {}, "checks": [], "limits": {"x": 1}}).limits == {"x": 1}
    clip = SpokenClip.from_dict({"fit": {"start": 3}, "audio": {"path": "/a.wav", "kind": "audio"}})
    assert clip.start == 3.0 and isinstance(clip.audio, MediaHandle)


def test_a_voice_from_a_store_entry_keeps_only_voice_fields() -> None:
    """`Voice(**{k: v ... if k in Voice.__dataclass_fields__})` was written three times."""
    v = Voice.from_dict({"engine": "kokoro", "voice": "jf_alpha", "casting": {"why": "nearest"}})
    assert v == Voice(engine="kokoro", voice="jf_alpha")
    assert Voice.from_dict(v.to_dict()) == v


def test_cast_holds_voices_not_dicts() -> None:
    cast = Cast.from_dict({"voices": {"Aiko": {"engine": "piper", "voice": "en_US-joe-medium",
                                               "pitch_semitones": 3.0}},
                           "characters": {"Aiko": {"character_id": "c1", "new": True}}})
    assert isinstance(cast.voices["Aiko"], Voice) and cast.default_voice() == cast.voices["Aiko"]


def test_an_older_release_untyped_values_read_as_records() -> None:
    """The values an earlier release stored were plain dicts with the same keys; the IO manager reads
    them as the record of the stage that wrote them."""
    legacy_stems = {"original": {"path": "/o.wav", "kind": "audio"}, "dialogue": {"path": "/d.wav"},
                    "background": {"path": "/b.wav"}, "info": {"layout": "5.1(side)", "channels": 6}}
    stems = BY_STAGE["audio_stems"].from_dict(legacy_stems)
    assert isinstance(stems, Stems) and stems.layout == "5.1(side)" and stems.separator == "signal"
    legacy_speech = {"clips": [{"fit": {"start": 1.5}, "audio": {"path": "/c.wav"}}], "engine": "piper",
                     "cache": {"hits": 1, "misses": 0}}
    speech = BY_STAGE["dub_speech"].from_dict(legacy_speech)
    assert isinstance(speech, Speech) and speech.clips[0].start == 1.5 and speech.cloning is None
    manifest = {"series": "show", "video_path": "/lib/show/e01/e01.mkv", "owner": "ana"}
    entry = BY_STAGE["library_entry"].from_dict(manifest)  # the manifest itself was the value
    assert isinstance(entry, LibraryEntry) and entry.manifest == manifest and entry.folder == "/lib/show/e01"


def test_every_stage_has_a_record_and_every_record_a_name() -> None:
    from dubbing_assets.core.requests import STAGES

    assert set(BY_STAGE) == set(STAGES)
    assert all(RECORDS[c.__name__] is c for c in BY_STAGE.values())
