"""Fixtures of the core tests (crypto, character store) and the session-wide legacy-magic check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from dubbing_assets.core.crypto import Keyring

LEGACY_DATA = Path(__file__).resolve().parents[1] / "data" / "legacy"
#: Tests that need legacy-layout files on disk copy them into a folder with this name; it is the one
#: place under the test temp folder where the session check below tolerates a legacy magic.
LEGACY_INPUTS = "legacy-inputs"


@pytest.fixture(scope="session", autouse=True)
def _nothing_written_in_a_legacy_layout(tmp_path_factory: pytest.TempPathFactory):
    """After the session: no file the tests wrote (outside legacy-inputs/) starts with a legacy magic."""
    yield
    from dubbing_assets_tests.core.test_markers import assert_no_legacy_magic

    assert_no_legacy_magic(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def legacy_manifest() -> dict[str, Any]:
    return json.loads((LEGACY_DATA / "MANIFEST.json").read_text(encoding="utf-8"))


@pytest.fixture
def legacy_inputs(tmp_path: Path) -> Path:
    """A private copy of the legacy fixture files (tests may migrate or damage them)."""
    folder = tmp_path / LEGACY_INPUTS
    shutil.copytree(LEGACY_DATA, folder)
    return folder


@pytest.fixture
def ring() -> Keyring:
    """An in-memory keyring with one random key."""
    return Keyring.generate()
