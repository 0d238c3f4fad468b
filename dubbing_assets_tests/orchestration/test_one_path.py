"""The one-path rule and the layer rule, checked on the source.

1. Only `dubbing_assets/orchestration/sensor.py` may create work: no other
   production module mentions `RunRequest`, `submit_run`, `launch_run`,
   `execute_in_process` or calls `materialize(`.
2. Nothing outside `dubbing_assets/orchestration` and `definitions.py` imports
   Dagster: not the core, not the CLI (what it needs of the instance goes
   through `orchestration/instance.py`).

Each check is a plain function over a package folder, so the tests can also
plant a violation in a temporary copy and prove the check fails.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "dubbing_assets"
ENQUEUE_MODULE = Path("orchestration") / "sensor.py"
FORBIDDEN = re.compile(r"\b(?:RunRequest|submit_run|launch_run|execute_in_process)\b|\bmaterialize\(")


def enqueue_violations(package: Path) -> list[str]:
    """`path:line: text` for every forbidden word outside the sensor module."""
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel == ENQUEUE_MODULE:
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if FORBIDDEN.search(line):
                found.append(f"{package.name}/{rel}:{lineno}: {line.strip()}")
    return found


def _is_dagster(module: str | None) -> bool:
    top = (module or "").split(".")[0]
    return top == "dagster" or top.startswith("dagster_")


def core_dagster_imports(package: Path) -> list[str]:
    """`path:line: import` for every import of dagster (or a dagster_* package) under core/, at any depth."""
    return dagster_imports(package, sorted((package / "core").rglob("*.py")))


#: The only places Dagster may be imported.
DAGSTER_ALLOWED = (Path("orchestration"), Path("definitions.py"))


def dagster_imports_outside_orchestration(package: Path) -> list[str]:
    """Dagster imports anywhere in the package but orchestration/ and definitions.py."""
    paths = [p for p in sorted(package.rglob("*.py"))
             if not any(p.relative_to(package).is_relative_to(allowed) for allowed in DAGSTER_ALLOWED)]
    return dagster_imports(package, paths)


def dagster_imports(package: Path, paths: list[Path]) -> list[str]:
    """`path:line: import` for every import of dagster (or a dagster_* package) in `paths`, at any depth."""
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if _is_dagster(alias.name)]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_dagster(node.module):
                names = [node.module or ""]
            else:
                continue
            found += [f"{package.name}/{path.relative_to(package)}:{node.lineno}: {n}" for n in names]
    return found


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "dubbing_assets"
    shutil.copytree(PACKAGE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_only_the_sensor_enqueues() -> None:
    assert enqueue_violations(PACKAGE) == []


def test_the_sensor_is_where_run_requests_come_from() -> None:
    assert FORBIDDEN.search((PACKAGE / ENQUEUE_MODULE).read_text(encoding="utf-8"))


def test_core_never_imports_dagster() -> None:
    assert list((PACKAGE / "core").rglob("*.py")), "no core modules found"
    assert core_dagster_imports(PACKAGE) == []


def test_only_orchestration_imports_dagster() -> None:
    assert (PACKAGE / "cli_runs.py").exists()
    assert dagster_imports_outside_orchestration(PACKAGE) == []


@pytest.mark.parametrize("module", ["cli_runs.py", "cli.py", "errors.py", "core/mux.py"])
def test_a_planted_import_outside_orchestration_is_caught(package_copy: Path, module: str) -> None:
    target = package_copy / module
    target.write_text(target.read_text(encoding="utf-8") + "\ndef late():\n    import dagster as dg\n",
                      encoding="utf-8")
    (violation,) = dagster_imports_outside_orchestration(package_copy)
    assert violation.startswith(f"dubbing_assets/{module}:")


def test_orchestration_and_definitions_may_import_dagster() -> None:
    allowed = [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] in ("orchestration",
                                                                                         "definitions.py")]
    assert dagster_imports(PACKAGE, sorted(allowed))  # the check sees the imports it allows


@pytest.mark.parametrize("module,line", [
    ("cli.py", "    dg.RunRequest(run_key='x')"),
    ("cli_runs.py", "instance.submit_run(run_id, workspace)"),
    ("orchestration/jobs.py", "instance.launch_run(run_id, workspace)"),
    ("orchestration/assets/common.py", "result = job.execute_in_process()"),
    ("core/library.py", "dg.materialize([asset])"),
    ("definitions.py", "x = materialize(assets)"),
])
def test_a_planted_enqueue_is_caught(package_copy: Path, module: str, line: str) -> None:
    target = package_copy / module
    assert target.exists(), module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    (violation,) = enqueue_violations(package_copy)
    assert violation.startswith(f"dubbing_assets/{module}:")


def test_word_boundaries_do_not_over_match(package_copy: Path) -> None:
    target = package_copy / "cli.py"
    text = "my_materialize_to_memory(x)\nRunRequestsLike = 1\nrelaunch_runner = 2\nrematerialize(x)\n"
    target.write_text(target.read_text(encoding="utf-8") + "\n" + text, encoding="utf-8")
    assert enqueue_violations(package_copy) == []


@pytest.mark.parametrize("line", [
    "import dagster as dg",
    "from dagster import asset",
    "from dagster._core.instance import DagsterInstance",
    "def late():\n    import dagster\n",
    "import os, dagster_shared",
])
def test_a_planted_core_import_is_caught(package_copy: Path, line: str) -> None:
    target = package_copy / "core" / "timing.py"
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    (violation,) = core_dagster_imports(package_copy)
    assert violation.startswith("dubbing_assets/core/timing.py:")


def test_relative_and_lookalike_imports_are_not_dagster(package_copy: Path) -> None:
    target = package_copy / "core" / "timing.py"
    extra = "from . import fsutil\nimport dagsterish\nfrom .dagster import x\n"
    target.write_text(target.read_text(encoding="utf-8") + "\n" + extra, encoding="utf-8")
    assert core_dagster_imports(package_copy) == []
