"""Suite-wide fixtures and the CI rule that a `required` test may not be skipped."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from dubbing_assets.core.crypto import Keyring

DATA = Path(__file__).parent / "data"
MEDIA = DATA / "media"

_skipped_required: list[str] = []


@pytest.fixture
def dubbing_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated DUBBING_HOME/DAGSTER_HOME for one test (settings are read at run time)."""
    home = tmp_path / "dubbing"
    monkeypatch.setenv("DUBBING_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    for var in ("DUBBING_INBOX", "DUBBING_OUTPUT", "DUBBING_STORAGE", "DUBBING_KEYRING", "DUBBING_LOG_DIR",
                "DUBBING_CACHE", "DUBBING_KEY"):
        monkeypatch.delenv(var, raising=False)
    # what `dubbing instance init` does first: runs never create a keyring themselves
    Keyring.create(home / "keys" / "keyring.json")
    return home


@pytest.fixture
def keyring_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the CLI keeps its keyring in this test (DUBBING_KEYRING), with DUBBING_KEY unset."""
    path = tmp_path / "keys" / "keyring.json"
    monkeypatch.setenv("DUBBING_KEYRING", str(path))
    monkeypatch.setenv("DUBBING_HOME", str(tmp_path / "home"))  # logs (the migration log) stay in the test
    monkeypatch.delenv("DUBBING_LOG_DIR", raising=False)
    monkeypatch.delenv("DUBBING_KEY", raising=False)
    return path


def secret_forms(ring: Keyring) -> list[str]:
    """Every way a key of `ring` could leak into text: base64, hex, a base64 prefix, repr."""
    forms = []
    for kid in ring.keys():
        key = ring.get(kid)
        forms += [base64.b64encode(key).decode(), key.hex(), base64.b64encode(key).decode()[:20], repr(key)]
    return forms


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "required" in report.keywords:
        _skipped_required.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_required and os.environ.get("CI"):
        print(f"\nCI: required tests were skipped: {_skipped_required}")
        session.exitstatus = 1


@pytest.fixture(scope="session")
def three_speakers(tmp_path_factory: pytest.TempPathFactory):
    """(path, turns) of the three-speaker Japanese clip, built once per session (media_builder.py)."""
    from dubbing_assets_tests.core.understand_helpers import shared_registry
    from dubbing_assets_tests.media_builder import build_three_speakers

    return build_three_speakers(tmp_path_factory.mktemp("three-speakers"), registry=shared_registry())
