"""The `dubbing` CLI's key and file commands: keys never printed, errors in one line.

(The run-facing commands are tested in orchestration/test_cli_runs.py.)
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from dubbing_assets.cli import main
from dubbing_assets.core.crypto import Keyring, encrypt_file
from dubbing_assets_tests.conftest import secret_forms


def test_keys_never_in_cli_output(tmp_path: Path, keyring_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "old.b64"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    src = tmp_path / "p.bin"
    src.write_bytes(b"hello")
    assert main(["keys", "init"]) == 0
    assert main(["keys", "rotate"]) == 0
    assert main(["keys", "import", str(key_file), "--id", "old"]) == 0
    assert main(["keys", "list"]) == 0
    ring = Keyring.load(keyring_path)
    encrypt_file(src, tmp_path / "p.enc", ring)
    assert main(["decrypt", str(tmp_path / "p.enc"), str(tmp_path / "p.out")]) == 0
    assert main(["migrate", str(tmp_path / "p.enc")]) == 0
    assert main(["keys", "init"]) == 1  # exists: an error line, still no key
    assert main(["decrypt", str(src), str(tmp_path / "x")]) == 1
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "old" in text and ring.active_id in text and "error: " in captured.err
    for secret in secret_forms(ring):
        assert secret not in text


def test_cli_errors_are_one_line(tmp_path: Path, keyring_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "dubbing keys init" in err and "Traceback" not in err
    assert main(["keys", "init"]) == 0
    assert main(["decrypt", str(tmp_path / "missing.enc"), str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
