"""The render stages as plain functions: the cast across an upgrade that renamed a series."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from dubbing_assets.core import library
from dubbing_assets.core.characters import Character, CharacterStore, transaction
from dubbing_assets.core.contracts import Cast, EpisodeRecord
from dubbing_assets.core.fsutil import file_sha256
from dubbing_assets.core.inbox import write_episode_record
from dubbing_assets.core.runtime import Runtime
from dubbing_assets.core.safepath import slugify
from dubbing_assets.core.settings import load_settings
from dubbing_assets.core.stages import render, understand
from dubbing_assets_tests.conftest import MEDIA

FOLDER = "進撃の巨人"  # named only in Japanese: its slug was "series" before names kept a digest
OTHER = "鬼滅の刃"


class _Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        self.warnings.append(msg)


def _cast(rt: Runtime, key: str, series: str) -> Cast:
    mkv = rt.settings.inbox / FOLDER / "e01.mkv"
    write_episode_record(rt.settings.episodes, EpisodeRecord(
        key=key, series=series, source=f"{FOLDER}/e01.mkv", fingerprint=file_sha256(mkv), target_lang="en"))
    src = understand.source_media(rt, key)
    stems = understand.audio_stems(rt, src)
    script = understand.script(rt, src, stems)
    speakers = understand.speakers(rt, script, stems, src)
    return render.cast(rt, key, speakers, src, script, stems)


def test_a_series_renamed_by_the_upgrade_keeps_its_characters_voices_and_pins(dubbing_env: Path) -> None:
    """Before the upgrade every series named without ASCII letters was "series": one store, one cast file.
    After it, the series' first cast takes its own characters from there (ids, voices, the cast file's
    pins), leaves another series' character behind, and leaves the shared store as it was."""
    settings = load_settings().ensure()
    (settings.inbox / FOLDER).mkdir(parents=True)
    shutil.copyfile(MEDIA / "ja_two_speakers.mkv", settings.inbox / FOLDER / "e01.mkv")
    log = _Log()
    rt = Runtime(settings, log=log)
    try:
        before = _cast(rt, "series-e01", "series")  # as the earlier release keyed and filed it
        shared = settings.storage / "characters" / "series.chars"
        write_episode_record(settings.episodes, EpisodeRecord(key="series-e02", series="series",
                                                              source=f"{OTHER}/e02.mkv"))
        with transaction(shared, rt.keyring, "series") as store:
            store.characters.append(Character(id="c0099", name="Tanjiro", embedding=[0.1] * 256,
                                              voice={"engine": "piper", "voice": "en_US-joe-medium"},
                                              episodes=["series-e02"]))
        cast_file = library.cast_file_path(settings.output, "series")
        doc = yaml.safe_load(cast_file.read_text(encoding="utf-8"))
        aiko = next(cid for cid, row in before.characters.items() if row["name"] == "Aiko")
        aiko_id = before.characters[aiko]["character_id"]
        doc["characters"][aiko_id].update(engine="piper", voice="en_US-joe-medium", pitch_semitones=3.0)
        cast_file.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        shared_bytes = shared.read_bytes()

        series = slugify(FOLDER)
        after = _cast(rt, f"{series}-e01", series)
    finally:
        rt.close()

    store = CharacterStore.load(settings.storage / "characters" / f"{series}.chars", rt.keyring, series)
    assert sorted(c.name for c in store.characters) == ["Aiko", "Kenji"]
    assert {row["name"]: row["character_id"] for row in after.characters.values()} == \
        {row["name"]: row["character_id"] for row in before.characters.values()}
    assert all(not row["new"] for row in after.characters.values())
    assert after.voices[aiko].voice == "en_US-joe-medium" and after.voices[aiko].pitch_semitones == 3.0
    kenji = next(label for label, row in after.characters.items() if row["name"] == "Kenji")
    assert after.voices[kenji].to_dict() == before.voices[kenji].to_dict()
    assert shared.read_bytes() == shared_bytes
    assert any("come over" in w and "Aiko" in w and "Tanjiro" not in w for w in log.warnings), log.warnings
