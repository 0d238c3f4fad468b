"""Request files: how the CLI (and any other front end) asks for work.

Front ends never start runs. They write small JSON files under
``DUBBING_HOME/requests``; the inbox sensor, the one enqueue path, reads them.
``submit-<key>.json`` carries options for an inbox file; ``rerun-*.json``
asks to re-run an episode from a stage.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dubbing_assets.core.fsutil import atomic_write_json
from dubbing_assets.core.safepath import check_slug, safe_join
from dubbing_assets.errors import RequestError

#: Pipeline stages in order (asset names). Re-running from one re-runs those after it.
STAGES = ("source_media", "audio_stems", "script", "speakers", "translation", "cast",
          "dub_speech", "dub_mix", "lip_sync", "dubbed_video", "qa_report", "library_entry")


#: Bounds of `dagster/priority` for any request (operators); others submit within NORMAL_PRIORITY.
PRIORITY_LIMITS = (-100, 100)
NORMAL_PRIORITY = (-10, 10)


@dataclass
class SubmitOptions:
    owner: str = "unknown"
    mode: str = "low"
    target_lang: str = "en"
    priority: int = 0
    visibility: str = "private"
    series: str | None = None
    episode: str | None = None
    submitted_at: float = field(default_factory=time.time)
    #: The file the options are for (inbox-relative path and SHA-256): the sensor applies them to that file
    #: only, so a request can never re-label another episode that happens to share the key.
    relpath: str | None = None
    fingerprint: str | None = None

    def is_for(self, relpath: str, fingerprint: str) -> bool:
        """True when these options belong to that file (requests from before the tie belong to any)."""
        return self.relpath is None or (self.relpath == relpath and self.fingerprint in (None, fingerprint))

    def validate(self) -> SubmitOptions:
        whole = isinstance(self.priority, int) and not isinstance(self.priority, bool)
        if not whole or not PRIORITY_LIMITS[0] <= self.priority <= PRIORITY_LIMITS[1]:
            raise RequestError(f"priority {self.priority!r} is not valid; use a whole number from "
                             f"{PRIORITY_LIMITS[0]} to {PRIORITY_LIMITS[1]}.")
        if self.mode not in ("low", "high"):
            raise RequestError(f"mode {self.mode!r} is not valid; use 'low' or 'high'.")
        if self.visibility not in ("private", "public"):
            raise RequestError(f"visibility {self.visibility!r} is not valid; use 'private' or 'public'.")
        if not (len(self.target_lang) in (2, 3) and self.target_lang.isascii() and self.target_lang.isalpha()):
            raise RequestError(f"target language {self.target_lang!r} is not an ISO 639 code such as 'en'.")
        return self


def stages_from(stage: str) -> list[str]:
    if stage not in STAGES:
        raise RequestError(f"unknown stage {stage!r}; choose one of: {', '.join(STAGES)}")
    return list(STAGES[STAGES.index(stage):])


def submit_request_path(requests_dir: Path, key: str) -> Path:
    return safe_join(requests_dir, f"submit-{check_slug(key, 'episode key')}.json")


def write_submit_request(requests_dir: Path, key: str, options: SubmitOptions) -> Path:
    path = submit_request_path(requests_dir, key)
    atomic_write_json(path, asdict(options.validate()))
    return path


def read_submit_request(requests_dir: Path, key: str) -> SubmitOptions | None:
    """The options for `key`, or None; RequestError naming the file when it is malformed."""
    path = submit_request_path(requests_dir, key)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        known = {k: v for k, v in data.items() if k in SubmitOptions.__dataclass_fields__}
        options = SubmitOptions(**known)
        if isinstance(options.priority, str):  # "7" from a hand-written file; 7.5 stays and is refused
            options.priority = int(options.priority)
        options.owner = str(options.owner).strip() if options.owner is not None else ""
        options.owner = options.owner or SubmitOptions.owner  # null or blank: nobody named, not "None"
        return options.validate()
    except (ValueError, TypeError, AttributeError) as exc:
        raise RequestError(f"{path.name} is not a valid submit request ({exc}); "
                         "submit the file again with valid options.") from exc


def write_rerun_request(requests_dir: Path, key: str, from_stage: str, *, reason: str = "cli") -> Path:
    stages_from(from_stage)
    rid = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    path = safe_join(requests_dir, f"rerun-{rid}.json")
    atomic_write_json(path, {"id": rid, "episode": check_slug(key, "episode key"), "from": from_stage,
                             "reason": reason})
    return path


def pending_reruns(requests_dir: Path) -> list[Path]:
    return sorted(requests_dir.glob("rerun-*.json"))


def archive(path: Path, *, outcome: str) -> None:
    """Move a handled request under done/ (or failed/) so it is never read twice."""
    folder = path.parent / outcome
    folder.mkdir(exist_ok=True)
    path.replace(folder / path.name)
