"""Human review: editable translations and per-series glossaries.

After each translation the pipeline writes ``review/<episode>/translation.json``
(the lines, each with the engine's own `machine_text`, and a hash of them). A
person edits the `text` of any line; the sensor notices that the hash no
longer matches and re-runs the episode from `translation`, which takes the
edited lines, and every later run keeps them. Because the file records the
hash of what the pipeline itself wrote, the pipeline's own rewrite is never
mistaken for an edit (no re-run loop).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from dubbing_assets.core.contracts import Translation
from dubbing_assets.core.fsutil import atomic_write_json
from dubbing_assets.core.safepath import check_slug, safe_join
from dubbing_assets.errors import ConfigError


def lines_hash(lines: list[dict[str, Any]]) -> str:
    canon = [{"index": int(ln["index"]), "text": str(ln["text"])} for ln in lines]
    return hashlib.sha256(json.dumps(canon, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def review_file(review_dir: Path, key: str) -> Path:
    return safe_join(review_dir, check_slug(key, "episode key"), "translation.json")


def is_user_edit(path: Path) -> bool:
    """True when the file's lines differ from what the pipeline last wrote."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return lines_hash(data["lines"]) != data.get("generated_hash")
    except (OSError, ValueError, KeyError, TypeError):
        return False


def apply_review(review_dir: Path, key: str, translation: Translation) -> int:
    """Apply a person's edits to `translation` in place; rewrite the review file; return how many lines changed.

    Every line of the file carries `machine_text`, the engine's own reading; a line whose `text` differs from
    it is a person's edit, and it is applied again on every later run (a re-dub after a new voice, a backfill)
    until the person sets `text` back. Before `machine_text` an edit lasted one run: the rewrite made the
    edited text look like the pipeline's own. An edit whose line's source text has changed since (a new
    transcript) is not applied to the new line; it is kept under `stale_edits`, never dropped.
    """
    path = review_file(review_dir, key)
    data: dict[str, Any] | None = None
    if path.exists():  # a file a person broke while editing is reported, never overwritten
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}); fix it or delete it.") from exc
    wanted = _edits_in(data, path) if data is not None else {}
    stale = [e for e in (data or {}).get("stale_edits", []) if isinstance(e, dict)]
    machine: dict[int, str] = {}
    edits = 0
    for line in translation.lines:
        machine[line.index] = line.text
        edit = wanted.pop(line.index, None)
        if edit is None:
            continue
        if edit.get("source_text") not in (None, line.source_text):
            stale.append(edit)
        elif edit["text"] != line.text:
            line.text = edit["text"]
            edits += 1
    stale += [e for e in wanted.values() if e.get("source_text") is not None]  # lines the episode lost
    lines = [_review_line(ln, machine[ln.index]) for ln in translation.lines]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"episode": key, "target_language": translation.target_language,
                             "help": "Edit `text` of any line (or copy in one of its `alternatives`) and save; the "
                                     "episode re-runs from translation and only edited lines are synthesized again. "
                                     "A line whose `text` differs from `machine_text` keeps your text on every "
                                     "later run; set it back to `machine_text` to take the engine's again.",
                             "lines": lines, "generated_hash": lines_hash(lines),
                             **({"stale_edits": _unique(stale)} if stale else {})}, mode=0o600)
    return edits


def _edits_in(data: dict[str, Any], path: Path) -> dict[int, dict[str, Any]]:
    """index -> {"text", "source_text"} of the lines a person changed (source_text None: not recorded)."""
    lines = [ln for ln in data.get("lines", []) if isinstance(ln, dict) and "index" in ln and "text" in ln]
    if any("machine_text" in ln for ln in lines):
        return {int(ln["index"]): {"index": int(ln["index"]), "text": str(ln["text"]),
                                   "source_text": ln.get("source_text")}
                for ln in lines if "machine_text" in ln and str(ln["text"]) != str(ln["machine_text"])}
    if not is_user_edit(path):  # a file from before machine_text: any text differing from the new run's
        return {}
    return {int(ln["index"]): {"index": int(ln["index"]), "text": str(ln["text"]), "source_text": None}
            for ln in lines}


def _unique(edits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for e in edits:
        seen.setdefault(json.dumps(e, sort_keys=True, ensure_ascii=False), e)
    return list(seen.values())


def _review_line(line: Any, machine_text: str) -> dict[str, Any]:
    out = {"index": line.index, "start": line.start, "end": line.end, "speaker": line.speaker,
           "source_text": line.source_text, "text": line.text, "machine_text": machine_text}
    if line.alternatives:  # what else the engine offered, with each one's predicted length against the slot
        out["slot_s"] = line.slot_s
        out["chosen_by"] = line.chosen_by
        out["alternatives"] = [{k: a[k] for k in ("text", "seconds", "fit", "logprob") if k in a}
                               for a in line.alternatives]
    return out


def load_glossary(output_root: Path, series: str) -> dict[str, str]:
    """`library/<series>/glossary.yaml`: source term -> required target term."""
    path = safe_join(output_root, check_slug(series, "series"), "glossary.yaml")
    if not path.exists():
        return {}
    try:  # BaseLoader: terms stay as written (YAML 1.1 would make `no: nein` a False and `010` an 8)
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader) or {}  # noqa: S506
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML ({exc}); fix it or delete it.") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must map source terms to target terms (term: translation).")
    missing = [str(k) for k, v in data.items() if not isinstance(v, str) or not v.strip()]
    if missing:
        raise ConfigError(f"{path}: {', '.join(missing)} has no translation (term: translation); add one or "
                          "remove the term.")
    return {str(k): v for k, v in data.items()}
