"""The old marker check: the previous system's brand tokens must not spread.

Only the legacy reader (``core/crypto/legacy.py``), its test and the test
data may spell them; everything else imports constants from legacy.py. The
forbidden words are assembled from pieces here so this file passes its own
check. A second check (also run for the whole session from conftest.py)
makes sure no file the tests write begins with a legacy magic: the project
reads those layouts but must never write them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dubbing_assets.core.crypto import encrypt_bytes, encrypt_file, plaintext_tempfile
from dubbing_assets.core.crypto.files import atomic_write_bytes
from dubbing_assets.core.crypto.keyring import Keyring
from dubbing_assets.core.crypto.legacy import LEGACY_MAGICS

REPO = Path(__file__).resolve().parents[2]

_FORBIDDEN = re.compile("|".join(re.escape(w) for w in ("AN" + "V2", "ani" + "me")), re.IGNORECASE)
_SOURCE_SUFFIXES = {".py", ".yaml", ".yml", ".toml", ".md", ".cfg", ".sh"}
_SKIP_DIRS = {".git", ".venv", ".venv-high", "venv", "__pycache__", ".hypothesis", ".pytest_cache", ".ruff_cache",
              "node_modules", "build", "dist"}
_ALLOWED = {
    Path("dubbing_assets/core/crypto/legacy.py"),
    Path("dubbing_assets_tests/core/test_legacy.py"),
}
_TEST_DATA = Path("dubbing_assets_tests/data")


def _is_source(name: str) -> bool:
    return Path(name).suffix in _SOURCE_SUFFIXES or name.startswith("Dockerfile")


def find_marker_violations(root: Path) -> list[str]:
    """``path:line: text`` for every forbidden token in the source files under ``root``."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info")
                       and rel_dir / d != _TEST_DATA]
        for name in filenames:
            rel = rel_dir / name
            if not _is_source(name) or rel in _ALLOWED:
                continue
            try:
                text = (Path(dirpath) / name).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for number, line in enumerate(text.splitlines(), 1):
                if _FORBIDDEN.search(line):
                    found.append(f"{rel}:{number}: {line.strip()[:120]}")
    return found


def assert_no_legacy_magic(root: Path, *, tolerate_dirs: tuple[str, ...] = ("legacy-inputs",)) -> None:
    """Fail if any file under ``root`` begins with a legacy magic.

    Folders named in ``tolerate_dirs`` hold deliberate copies of legacy inputs
    (tests that read or migrate them) and are skipped. Symlinks are not followed.
    """
    longest = max(len(m) for m in LEGACY_MAGICS)
    offenders: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in tolerate_dirs]
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                with open(path, "rb") as fh:
                    head = fh.read(longest)
            except OSError:
                continue
            if head.startswith(LEGACY_MAGICS):
                offenders.append(str(path))
    assert not offenders, f"files written in a legacy layout (never allowed): {offenders}"


def test_no_old_markers_in_sources() -> None:
    violations = find_marker_violations(REPO)
    assert not violations, ("old brand/version tokens outside legacy.py (import its constants and say "
                            "'the legacy layout' instead):\n" + "\n".join(violations))


def test_marker_check_detects_a_planted_violation(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "clean.py").write_text("MAGIC = b'CHNKAEAD'\n")
    (tmp_path / "pkg" / "bad.py").write_text("# written by the " + "Ani" + "me pipeline\n")
    (tmp_path / "Dockerfile.gpu").write_text("LABEL x=" + "an" + "v2" + "enc\n")
    (tmp_path / "notes.bin").write_text("ani" + "me\n")  # not a source file: ignored
    found = find_marker_violations(tmp_path)
    assert len(found) == 2
    assert any(f.startswith("pkg/bad.py:1:") for f in found)
    assert any(f.startswith("Dockerfile.gpu:1:") for f in found)


def test_marker_check_allows_the_legacy_module_and_test_data(tmp_path: Path) -> None:
    for rel in [*_ALLOWED, _TEST_DATA / "legacy" / "notes.md"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("# reads " + "AN" + "V2ENC\n")  # not at offset 0: no magic
    assert find_marker_violations(tmp_path) == []


def test_files_written_by_the_public_api_carry_no_legacy_magic(tmp_path: Path) -> None:
    ring = Keyring.generate()
    out = tmp_path / "written"
    out.mkdir()
    for i, size in enumerate((0, 1, 1000, 70_000)):
        src = tmp_path / f"plain{i}.bin"
        src.write_bytes(os.urandom(size))
        encrypt_file(src, out / f"f{i}.enc", ring, chunk_size=4096)
    atomic_write_bytes(out / "blob.enc", encrypt_bytes(b"{}", ring))
    plaintext_tempfile(out).unlink()
    assert len(list(out.iterdir())) == 5
    assert_no_legacy_magic(tmp_path)


def test_legacy_magic_check_detects_a_planted_file(tmp_path: Path) -> None:
    for magic in LEGACY_MAGICS:
        folder = tmp_path / magic.hex()
        folder.mkdir()
        (folder / "x.enc").write_bytes(magic + b"\x01" + os.urandom(40))
        try:
            assert_no_legacy_magic(folder)
        except AssertionError as exc:
            assert "x.enc" in str(exc)
        else:
            raise AssertionError("a planted legacy-layout file was not detected")
    tolerated = tmp_path / "legacy-inputs"
    tolerated.mkdir()
    (tolerated / "y.enc").write_bytes(LEGACY_MAGICS[0] + b"\x01")
    (tmp_path / LEGACY_MAGICS[0].hex() / "x.enc").unlink()
    (tmp_path / LEGACY_MAGICS[1].hex() / "x.enc").unlink()
    assert_no_legacy_magic(tmp_path)
