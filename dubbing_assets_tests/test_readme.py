"""The README stays true: every DUBBING_* variable the code reads is in its table; two quick-start commands."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_variable_is_documented() -> None:
    used: set[str] = set()
    for path in (ROOT / "dubbing_assets").rglob("*.py"):
        used |= set(re.findall(r"\bDUBBING_[A-Z_]+[A-Z]\b", path.read_text(encoding="utf-8")))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = {m for m in re.findall(r"^\| `(DUBBING_[A-Z_]+)` \|", readme, re.M)}
    assert used - table == set(), f"undocumented: {sorted(used - table)}"
    assert table - used == set(), f"documented but unused: {sorted(table - used)}"


def test_quick_start_has_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    commands = [ln for ln in block.strip().splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = commands[1].split("#")[0].strip()
    assert test_cmd in ci, f".ci/run must run the README's test command {test_cmd!r}"


def test_asset_graph_picture_matches_the_code() -> None:
    from dubbing_assets.definitions import defs

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```mermaid", 1)[1].split("```", 1)[0]
    drawn = set(re.findall(r"^\s*([a-z_]+) --> ([a-z_]+)\s*$", block, re.M))
    graph = defs.resolve_asset_graph()
    real = {(p.to_user_string(), k.to_user_string()) for k in graph.get_all_asset_keys()
            for p in graph.get(k).parent_keys}
    assert drawn == real
