"""Settings from `DUBBING_*` environment variables.

Read when a resource or the CLI asks (run time), never at import, so one code
location serves many configurations and tests can point everything at
temporary folders.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dubbing_assets.errors import ConfigError

#: Every variable the project reads, with its default and meaning; the README
#: table is generated from (and tested against) this list.
VARIABLES: dict[str, tuple[str, str]] = {
    "DAGSTER_HOME": ("(required by Dagster)", "Dagster instance folder (dagster.yaml, run storage)."),
    "DUBBING_HOME": ("~/.dubbing", "Root of the project's state; the folders below default beneath it."),
    "DUBBING_INBOX": ("$DUBBING_HOME/inbox", "Drop folder watched by the sensor: inbox/<series>/<file>."),
    "DUBBING_OUTPUT": ("$DUBBING_HOME/library", "Deliverables: library/<series>/<episode>/ with the MKV and manifest."),
    "DUBBING_STORAGE": ("$DUBBING_HOME/storage", "Encrypted intermediate artifacts, storage/<asset>/<episode>."),
    "DUBBING_KEYRING": ("$DUBBING_HOME/keys/keyring.json", "Keyring file (0600): key ids, the active key."),
    "DUBBING_LOG_DIR": ("$DUBBING_HOME/logs", "Project logs and quarantine reasons."),
    "DUBBING_CACHE": ("$DUBBING_HOME/cache", "Model cache (joined models) and the per-line TTS cache."),
    "DUBBING_MODELS_DIR": ("(unset)", "Folder of local models: <dir>/<model name>/ is tried first."),
    "DUBBING_TARGET_LANG": ("en", "Default target language (ISO 639-1)."),
    "DUBBING_SCRIPT_SOURCE": ("subtitles-first", "`subtitles-first` or `asr`: where the script comes from."),
    "DUBBING_TRANSLATION_ENGINE": (
        "auto", "`auto`, `whisper-translate`, `subtitles`, `ctranslate2`, `passthrough`."),
    "DUBBING_TRANSLATION_CANDIDATES": (
        "5", "whisper-translate and ctranslate2: readings per line (the beam's n-best); the one "
             "that best fits its slot at the voice's natural rate is spoken. 1 keeps the single best."),
    "DUBBING_PIPER_VOICES": (
        "(unset)", "Piper catalogue voices (comma-separated, e.g. `en_US-libritts_r-medium,en_GB-alba-medium`) added "
                   "to the voice bank beside every `DUBBING_MODELS_DIR/piper-<voice>/` folder; resolved there, "
                   "from packages, then downloaded where downloads are allowed."),
    "DUBBING_ASR_MODEL": ("auto", "faster-whisper model name or folder; auto: tiny.en for English, else base."),
    "DUBBING_DEVICE": ("auto", "`auto`, `cpu` or `cuda` for the engines."),
    "DUBBING_LOUDNESS_LUFS": ("-23", "Integrated loudness target of the mix, -70 to -1."),
    "DUBBING_QA_OVERFLOW_TOLERANCE_MS": (
        "20", "QA: a line running this many ms or less into the next one is not an overflow."),
    "DUBBING_CONTAINER": ("mkv", "`mkv` or `mp4` for the delivered video."),
    "DUBBING_OWNER": ("$USER", "Owner recorded for inbox drops without a submit request (and, for operators, "
                                "submissions that name none)."),
    "DUBBING_OPERATORS": (
        "root", "OS users (comma-separated) whose `dubbing submit` may name another owner (--owner, DUBBING_OWNER) "
                "or a priority outside -10..10; everyone else submits as themselves."),
    "DUBBING_SENSOR_MAX_REQUESTS": ("20", "Run requests the inbox sensor emits per tick."),
    "DUBBING_INBOX_STABLE_TICKS": (
        "2", "Sensor ticks in a row an inbox file must be seen unchanged (size, mtime) before it is taken."),
    "DUBBING_INBOX_SETTLE_S": (
        "10", "Seconds since an inbox file last changed before it is taken (an empty file: 10 minutes; a file "
              "`dubbing submit` wrote is taken at once)."),
    "DUBBING_LANE_TAGS": (
        "(unset)", "YAML file of extra run tags per lane (Kubernetes: docker/k8s/run-tags.yaml, the gpu lane's "
                   "`dagster-k8s/config`); read by the sensor and when the code location loads."),
    "DUBBING_METADATA_DIALOGUE": (
        "off", "`on` shows dialogue text (script, translation, QA lines) and lip-sync frames in Dagster's event "
               "metadata; off, they stay in the private library and encrypted storage only."),
    "DUBBING_EXECUTOR": (
        "in_process", "How a run's stages execute: `in_process` (one process per run, one after another), "
                      "`multiprocess` (a process per stage, independent stages side by side) or `forkserver` "
                      "(the same, forked from a process that imported the project once); read when the code "
                      "location loads."),
    "DUBBING_CLONE_MIN_SIMILARITY": (
        "0.70", "High mode: a cloned line whose speaker similarity to its character stays below this (after "
                "every seed) is spoken by the character's low-mode voice instead; -1 keeps every cloned line."),
}


def _env(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value or default


@dataclass(frozen=True)
class Settings:
    """Resolved folders and defaults for one process."""

    home: Path
    inbox: Path
    output: Path
    storage: Path
    keyring: Path
    log_dir: Path
    cache: Path
    models_dir: Path | None = None
    target_lang: str = "en"
    script_source: str = "subtitles-first"
    translation_engine: str = "auto"
    translation_candidates: int = 5
    asr_model: str = "auto"
    device: str = "auto"
    loudness_lufs: float = -23.0
    qa_overflow_tolerance_ms: float = 20.0
    container: str = "mkv"
    owner: str = "unknown"
    sensor_max_requests: int = 20
    inbox_stable_ticks: int = 2
    operators: tuple[str, ...] = ("root",)
    piper_voices: tuple[str, ...] = ()
    inbox_settle_s: float = 10.0
    clone_min_similarity: float = 0.70
    metadata_dialogue: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def review(self) -> Path:
        """Edited transcripts/translations land here (see the sensor)."""
        return self.home / "review"

    @property
    def requests(self) -> Path:
        """Request files written by `dubbing submit` / `rerun`."""
        return self.home / "requests"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def episodes(self) -> Path:
        """One JSON record per episode key (source file, owner, options)."""
        return self.home / "episodes"

    @property
    def state(self) -> Path:
        """The sensor's state database."""
        return self.home / "state"

    @property
    def tmp(self) -> Path:
        """The project's own scratch folder (0700): every plaintext temporary goes here, never the
        system temp, and entries with the project's temp prefixes are swept at start-up."""
        return self.home / "tmp"

    def ensure(self) -> Settings:
        """Create the folders (keys with 0700) and return self."""
        for folder in (self.inbox, self.output, self.storage, self.log_dir, self.cache,
                       self.review, self.requests, self.quarantine, self.episodes, self.state):
            folder.mkdir(parents=True, exist_ok=True)
        self.keyring.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build `Settings` from the environment (or a given mapping)."""
    env = os.environ if env is None else env
    home = Path(_env(env, "DUBBING_HOME", str(Path.home() / ".dubbing"))).expanduser()

    def folder(name: str, default: Path) -> Path:
        return Path(_env(env, name, str(default))).expanduser()

    models = env.get("DUBBING_MODELS_DIR", "").strip()
    def number(name: str, default: str, kind: type[int] | type[float],
               low: float | None = None, high: float | None = None, hint: str = "") -> Any:
        """The variable as a finite number within [low, high]: float() takes 'nan' and 'inf', and a NaN
        target loudness or similarity floor would pass every comparison the pipeline makes."""
        value = _env(env, name, default)
        try:
            number_ = kind(value)
        except ValueError as exc:
            raise ConfigError(f"{name}={value!r} is not a number ({exc}); fix it or unset it.") from exc
        if not math.isfinite(number_) or (low is not None and number_ < low) or (high is not None and number_ > high):
            span = (f"a number from {low:g} to {high:g}" if low is not None and high is not None
                    else f"a number from {low:g} up" if low is not None else "a finite number")
            raise ConfigError(f"{name}={value!r} is not valid; use {span}{hint}.")
        return number_

    lufs = number("DUBBING_LOUDNESS_LUFS", "-23", float, -70, -1, " (EBU R128 is -23)")
    cap = number("DUBBING_SENSOR_MAX_REQUESTS", "20", int)  # counters and waits are clamped below
    stable_ticks = number("DUBBING_INBOX_STABLE_TICKS", "2", int)
    settle_s = number("DUBBING_INBOX_SETTLE_S", "10", float)
    clone_min = number("DUBBING_CLONE_MIN_SIMILARITY", "0.70", float, -1, 1, " (a cosine; -1 takes every clone)")
    tolerance_ms = number("DUBBING_QA_OVERFLOW_TOLERANCE_MS", "20", float)
    candidates = number("DUBBING_TRANSLATION_CANDIDATES", "5", int)
    if not 0 <= tolerance_ms < 10_000:
        raise ConfigError(f"DUBBING_QA_OVERFLOW_TOLERANCE_MS={tolerance_ms:g} is not valid; use milliseconds "
                          "from 0 (every overflow counts) upwards, e.g. 20.")
    if not 1 <= candidates <= 32:
        raise ConfigError(f"DUBBING_TRANSLATION_CANDIDATES={candidates} is not valid; use 1 (the single best "
                          "reading) to 32.")
    script_source = _env(env, "DUBBING_SCRIPT_SOURCE", "subtitles-first").lower()
    if script_source not in ("subtitles-first", "asr"):
        raise ConfigError(
            f"DUBBING_SCRIPT_SOURCE={script_source!r} is not valid; use 'subtitles-first' or 'asr'."
        )
    container = _env(env, "DUBBING_CONTAINER", "mkv").lower()
    if container not in ("mkv", "mp4"):
        raise ConfigError(f"DUBBING_CONTAINER={container!r} is not valid; use 'mkv' or 'mp4'.")
    return Settings(
        home=home,
        inbox=folder("DUBBING_INBOX", home / "inbox"),
        output=folder("DUBBING_OUTPUT", home / "library"),
        storage=folder("DUBBING_STORAGE", home / "storage"),
        keyring=folder("DUBBING_KEYRING", home / "keys" / "keyring.json"),
        log_dir=folder("DUBBING_LOG_DIR", home / "logs"),
        cache=folder("DUBBING_CACHE", home / "cache"),
        models_dir=Path(models).expanduser() if models else None,
        target_lang=_env(env, "DUBBING_TARGET_LANG", "en").lower(),
        script_source=script_source,
        translation_engine=_env(env, "DUBBING_TRANSLATION_ENGINE", "auto"),
        translation_candidates=candidates,
        asr_model=_env(env, "DUBBING_ASR_MODEL", "auto"),
        device=_env(env, "DUBBING_DEVICE", "auto"),
        loudness_lufs=lufs,
        qa_overflow_tolerance_ms=tolerance_ms,
        container=container,
        owner=_env(env, "DUBBING_OWNER", env.get("USER", "unknown") or "unknown"),
        sensor_max_requests=max(1, cap),
        inbox_stable_ticks=max(1, stable_ticks),
        operators=tuple(u.strip() for u in _env(env, "DUBBING_OPERATORS", "root").split(",") if u.strip()),
        piper_voices=tuple(v.strip() for v in _env(env, "DUBBING_PIPER_VOICES", "").split(",") if v.strip()),
        inbox_settle_s=max(0.0, settle_s),
        clone_min_similarity=clone_min,
        metadata_dialogue=_env(env, "DUBBING_METADATA_DIALOGUE", "off").lower() in ("on", "1", "true", "yes"),
    )


def private_tmp_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """`Settings.tmp`, created 0700; None when the settings cannot be read (then callers use the system
    temp folder, still with the swept prefix)."""
    try:
        folder = load_settings(env).tmp
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder
    except (ConfigError, OSError):
        return None
