"""The library: delivered episodes, their manifests, the series index and cast file.

Layout under the output root (`DUBBING_OUTPUT`)::

    <root>/<series>/index.json            episodes of the series (updated under a lock)
    <root>/<series>/cast.yaml             voices pinned per character id (edited by people)
    <root>/<series>/<episode>/manifest.json
    <root>/<series>/<episode>/<episode>.<lang>.mkv

Series and episode names are slugs (`[a-z0-9-]`); anything else, or anything
that would resolve outside the root, is refused with `UnsafeNameError`.
Manifests are written atomically; `created_at` survives rewrites and
`updated_at` is refreshed. Episodes are `private` unless made otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dubbing_assets.core.contracts import Voice
from dubbing_assets.core.fsutil import atomic_write_text, file_lock
from dubbing_assets.errors import ConfigError, UnsafeNameError

try:  # shared primitives written alongside; private fallbacks keep this module standalone
    from dubbing_assets.core.safepath import check_slug as _check_slug
except ImportError:  # pragma: no cover
    _check_slug = None  # type: ignore[assignment]

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
INDEX_NAME = "index.json"
CAST_NAME = "cast.yaml"
VISIBILITIES = ("private", "shared", "public")
_SLUG_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_slug(name: Any, what: str = "name") -> str:
    """`name` if it is a slug of `[a-z0-9-]` (no leading/trailing '-', 1-120 chars), else UnsafeNameError."""
    if _check_slug is not None:
        return _check_slug(name, what)
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= 120
        or set(name) - _SLUG_CHARS
        or name.startswith("-")
        or name.endswith("-")
    ):  # pragma: no cover
        raise UnsafeNameError(f"{what} {name!r} is not allowed: use lowercase letters, digits and '-' only.")
    return name


def _inside(root: Path, *parts: str) -> Path:
    root_resolved = Path(root).resolve()
    candidate = root_resolved.joinpath(*parts).resolve()
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise UnsafeNameError(f"{'/'.join(parts)!r} would leave {root}; refusing.")
    return candidate


def series_dir(output_root: Path | str, series: str) -> Path:
    """`<root>/<series>`, refusing names that are not slugs or would leave the root."""
    return _inside(Path(output_root), check_slug(series, "series"))


def episode_dir(output_root: Path | str, series: str, episode: str) -> Path:
    """`<root>/<series>/<episode>`, refusing names that are not slugs or would leave the root."""
    return _inside(Path(output_root), check_slug(series, "series"), check_slug(episode, "episode"))


#: Folder and file modes per visibility: a private episode (unreleased, the default) is its owner's alone;
#: a shared or public one is readable by the machine's other users (a player, a web server).
MODES = {"private": (0o700, 0o600), "shared": (0o750, 0o640), "public": (0o755, 0o644)}


def prepare_episode_dir(output_root: Path | str, series: str, episode: str, visibility: str = "private") -> Path:
    """`episode_dir`, created with the visibility's folder mode before anything is written into it, so a
    private episode's files are never readable by others, not even while they are being written."""
    folder = episode_dir(output_root, series, episode)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(MODES.get(visibility, MODES["private"])[0])
    return folder


def apply_visibility(folder: Path | str, visibility: str) -> None:
    """Set the folder's and its regular files' modes for `visibility` (unknown values count as private)."""
    dir_mode, file_mode = MODES.get(visibility, MODES["private"])
    folder = Path(folder)
    folder.chmod(dir_mode)
    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(file_mode)


def cast_file_path(output_root: Path | str, series: str) -> Path:
    return series_dir(output_root, series) / CAST_NAME


# --------------------------------------------------------------------------------------------
# atomic writes and the lock


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------------------------
# manifests


def read_manifest(folder: Path | str) -> dict[str, Any] | None:
    """The episode's manifest, or None if there is none yet."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); restore it or delete it to rebuild.") from exc


def write_manifest(
    folder: Path | str, data: Mapping[str, Any], *, update_index: bool = True
) -> dict[str, Any]:
    """Write `<folder>/manifest.json` atomically and update the series `index.json`; return the manifest.

    `data` carries the fields (series, episode, source fingerprint, languages,
    tracks, engines and models, the subtitles that served as script and as
    translation and why, qa summary, owner, visibility...). Series and
    episode must be slugs and match the folder's name. `schema_version`,
    `created_at` (kept from an existing manifest), `updated_at` (now) and
    `visibility` (`private` unless given) are filled in here.
    """
    folder = Path(folder)
    manifest: dict[str, Any] = dict(data)
    series = check_slug(manifest.get("series"), "series")
    episode = check_slug(manifest.get("episode"), "episode")
    if folder.name != episode or folder.parent.name != series:
        raise UnsafeNameError(
            f"Manifest for {series}/{episode} does not belong in {folder}; "
            "use episode_dir(root, series, episode)."
        )
    visibility = manifest.get("visibility") or "private"
    if visibility not in VISIBILITIES:
        raise ConfigError(f"visibility {visibility!r} is not one of {', '.join(VISIBILITIES)}.")
    existing = read_manifest(folder) or {}
    now = _now()
    manifest.update(
        schema_version=SCHEMA_VERSION,
        visibility=visibility,
        owner=manifest.get("owner") or existing.get("owner") or "unknown",
        created_at=existing.get("created_at") or manifest.get("created_at") or now,
        updated_at=now,
    )
    manifest.setdefault("languages", {})
    manifest.setdefault("tracks", [])
    manifest.setdefault("engines", {})
    manifest.setdefault("models", {})
    manifest.setdefault("qa", {})
    manifest.setdefault("subtitles", {})
    _write_json(folder / MANIFEST_NAME, manifest)
    if update_index:
        update_series_index(folder.parent, manifest)
    return manifest


def _index_entry(manifest: Mapping[str, Any]) -> dict[str, Any]:
    qa = manifest.get("qa") or {}
    return {
        "episode": manifest["episode"],
        "title": manifest.get("title"),
        "owner": manifest.get("owner"),
        "visibility": manifest.get("visibility", "private"),
        "languages": manifest.get("languages", {}),
        "qa_passed": qa.get("passed"),
        "created_at": manifest.get("created_at"),
        "updated_at": manifest.get("updated_at"),
        "manifest": f"{manifest['episode']}/{MANIFEST_NAME}",
    }


def read_series_index(series_folder: Path | str) -> dict[str, Any]:
    path = Path(series_folder) / INDEX_NAME
    if not path.is_file():
        return {"schema_version": SCHEMA_VERSION, "series": Path(series_folder).name, "episodes": []}
    return json.loads(path.read_text(encoding="utf-8"))


def update_series_index(series_folder: Path | str, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Add or replace the manifest's episode in `<series>/index.json` (atomic, under a file lock)."""
    series_folder = Path(series_folder)
    check_slug(series_folder.name, "series")
    with file_lock(series_folder / f".{INDEX_NAME}.lock"):
        index = read_series_index(series_folder)
        episodes = [e for e in index.get("episodes", []) if e.get("episode") != manifest["episode"]]
        episodes.append(_index_entry(manifest))
        episodes.sort(key=lambda e: e["episode"])
        index.update(
            schema_version=SCHEMA_VERSION, series=series_folder.name, episodes=episodes, updated_at=_now()
        )
        _write_json(series_folder / INDEX_NAME, index)
    return index


# --------------------------------------------------------------------------------------------
# the cast file

_VOICE_FIELDS = {
    "engine": str,
    "voice": str,
    "speaker_id": (int, type(None)),
    "length_scale": (int, float),
    "pitch_semitones": (int, float),
    "settings": dict,
}


def load_cast_file(path: Path | str) -> dict[str, Voice]:
    """Voices pinned per character id in a series' `cast.yaml`; {} when the file does not exist.

    Format::

        schema_version: 1
        characters:
          c0001:
            name: Aiko            # for people; ignored here
            engine: piper
            voice: en_US-joe-medium
            speaker_id: null
            length_scale: 1.0
            pitch_semitones: 4
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc}); fix the cast file.") from exc
    characters = data.get("characters", {}) if isinstance(data, dict) else None
    if not isinstance(characters, dict):
        raise ConfigError(f"{path}: expected a 'characters:' mapping of character id -> voice.")
    return {str(char_id): _pinned_voice(path, char_id, spec) for char_id, spec in characters.items()}


def _pinned_voice(path: Path, char_id: Any, spec: Any) -> Voice:
    """One character's row of a cast file, checked field by field (the error names the file and field)."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: character {char_id!r} must map to engine/voice settings.")
    fields: dict[str, Any] = {}
    for key, kind in _VOICE_FIELDS.items():
        if key in spec:
            value = spec[key]
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ConfigError(f"{path}: {char_id}.{key} = {value!r} has the wrong type.")
            fields[key] = value
    if "voice" not in fields:
        raise ConfigError(f"{path}: character {char_id!r} needs at least 'voice:'.")
    fields.setdefault("engine", "piper")
    for key in ("length_scale", "pitch_semitones"):
        if key in fields:
            fields[key] = float(fields[key])
    if not 0.25 <= fields.get("length_scale", 1.0) <= 4.0:
        raise ConfigError(f"{path}: {char_id}.length_scale must be between 0.25 and 4.")
    if not -24 <= fields.get("pitch_semitones", 0.0) <= 24:
        raise ConfigError(f"{path}: {char_id}.pitch_semitones must be between -24 and 24.")
    return Voice(**fields)


def write_cast_file(
    path: Path | str,
    cast: Mapping[str, Voice],
    *,
    names: Mapping[str, str] | None = None,
    series: str | None = None,
    bank: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """Write a cast file (atomic) pinning `cast` (character id -> Voice); `names` adds readable names.

    `bank` (`voicebank.bank_listing`) is written under ``voice_bank:`` for people choosing a
    voice to pin: any engine/voice/speaker_id there (or of any other installed engine) may be
    pinned; `load_cast_file` reads only ``characters:``.
    """
    import yaml

    characters: dict[str, Any] = {}
    for char_id, voice in sorted(cast.items()):
        entry: dict[str, Any] = {}
        if names and char_id in names:
            entry["name"] = names[char_id]
        entry.update(
            engine=voice.engine,
            voice=voice.voice,
            speaker_id=voice.speaker_id,
            length_scale=float(voice.length_scale),
            pitch_semitones=float(voice.pitch_semitones),
        )
        if voice.settings:
            entry["settings"] = dict(voice.settings)
        characters[str(char_id)] = entry
    doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    if series:
        doc["series"] = check_slug(series, "series")
    doc["characters"] = characters
    if bank:
        doc["voice_bank"] = [dict(v) for v in bank]
    header = "# Voices per character id. Edit a line to change how a character sounds in every episode.\n"
    atomic_write_text(Path(path), header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
