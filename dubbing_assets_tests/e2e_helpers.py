"""Shared plumbing for the end-to-end tests: isolated homes, real processes, clips, HTTP.

Every process is started in its own process group with its output in a log
file, and `Processes.stop_all()` (called from a `finally`) kills every group.
Waits are bounded and fail with a message that says what was waited for.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ARTIFACTS = REPO / "test-artifacts"
FFMPEG_SKIP = "no ffmpeg at all: neither on PATH nor from imageio-ffmpeg (a dependency); reinstall the project"

#: Settings that would leak the developer's own folders or key into a test home.
OVERRIDES = ("DUBBING_INBOX", "DUBBING_OUTPUT", "DUBBING_STORAGE", "DUBBING_KEYRING", "DUBBING_LOG_DIR",
              "DUBBING_CACHE", "DUBBING_KEY", "DUBBING_TARGET_LANG", "DUBBING_SCRIPT_SOURCE",
              "DUBBING_TRANSLATION_ENGINE", "DUBBING_CONTAINER", "DUBBING_SENSOR_MAX_REQUESTS")


def tool(name: str) -> str:
    """A console script of the project venv (dagster, dagster-daemon, dubbing ...), else from PATH."""
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} is not installed in {BIN} nor on PATH; install the project (scripts/dev.py setup)"
    return found


def find_ffmpeg() -> str | None:
    """The ffmpeg the project would use, or None when there is none at all."""
    try:
        from dubbing_assets.core.ffmpeg import ffmpeg_exe

        ffmpeg_exe.cache_clear()
        return ffmpeg_exe()
    except Exception:  # noqa: BLE001 - any failure means "no ffmpeg"
        return None


def process_tree(roots: Iterable[int]) -> set[int]:
    """The live processes among `roots` and all their descendants, from /proc (a run worker and its
    children, a daemon and everything below it)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = {pid for pid in roots if pid in parents}
    frontier = list(found)
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found.add(child)
                frontier.append(child)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


# -- processes -------------------------------------------------------------------------------------------


@dataclass
class Processes:
    """Long-running processes of one test, each in its own process group, logging to a file."""

    log_dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def start(self, name: str, cmd: list[str], env: Mapping[str, str], cwd: Path = REPO) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        self.logs[name] = log
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[name] = proc
        print(f"[e2e] started {name} (pid {proc.pid}): {' '.join(cmd)}", flush=True)
        return proc

    def check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited early with code {proc.returncode}; its log:\n"
                                 f"{tail(self.logs[name], 80)}")

    def stop(self, name: str, grace: float = 20.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # children that outlived the group leader (run workers) are in the same group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)

    def dump(self, lines: int = 60) -> str:
        return "\n".join(f"----- {name} log ({path}) -----\n{tail(path, lines)}"
                         for name, path in self.logs.items())


# -- an isolated home ------------------------------------------------------------------------------------


@dataclass
class E2EHome:
    """DUBBING_HOME + DAGSTER_HOME under one temporary root, with the env for child processes."""

    root: Path
    env: dict[str, str]
    procs: Processes

    @property
    def home(self) -> Path:
        return Path(self.env["DUBBING_HOME"])

    @property
    def dagster_home(self) -> Path:
        return Path(self.env["DAGSTER_HOME"])

    def dubbing(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [tool("dubbing"), *args]
        proc = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"`dubbing {' '.join(args)}` exited {proc.returncode}\n"
                                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}\n{self.diagnostics()}")
        return proc

    def submit(self, clip: Path, series: str, episode: str, *extra: str) -> str:
        out = self.dubbing("submit", str(clip), "--series", series, "--episode", episode, *extra)
        print(out.stdout, end="", flush=True)
        return out.stdout.strip().splitlines()[-1]

    def wait(self, key: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.dubbing("wait", key, "--timeout", str(timeout), "--poll", "1", timeout=timeout + 120,
                            check=False)

    def diagnostics(self) -> str:
        parts = [self.procs.dump(80)]
        try:
            status = subprocess.run([tool("dubbing"), "status", "--json"], cwd=REPO, env=self.env,
                                    capture_output=True, text=True, timeout=120)
            parts.append(f"----- dubbing status --json (exit {status.returncode}) -----\n"
                         f"{status.stdout[-6000:]}{status.stderr[-2000:]}")
        except Exception as exc:  # noqa: BLE001 - diagnostics must not hide the real failure
            parts.append(f"(dubbing status failed: {exc})")
        return "\n".join(parts)


def make_home(root: Path, *, dagster_yaml: str | None = None, owner: str = "e2e-tester",
              extra_env: Mapping[str, str] | None = None) -> E2EHome:
    """Create the folders, copy (or write) dagster.yaml into DAGSTER_HOME, build the child env."""
    root.mkdir(parents=True, exist_ok=True)
    home = root / "dubbing"
    dagster_home = home / "dagster_home"  # the layout of scripts/dev.py and pipeline_helpers
    dagster_home.mkdir(parents=True, exist_ok=True)
    if dagster_yaml is None:
        shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    else:
        (dagster_home / "dagster.yaml").write_text(dagster_yaml)
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
    env.update(DUBBING_HOME=str(home), DAGSTER_HOME=str(dagster_home), DUBBING_OWNER=owner,
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONUNBUFFERED="1")
    env.update(extra_env or {})
    return E2EHome(root=root, env=env, procs=Processes(root / "logs"))


# -- media -----------------------------------------------------------------------------------------------


def make_clip(out: Path, text: str, *, seconds: float = 2.0, language: str = "eng",
              ffmpeg: str | None = None) -> Path:
    """An MP4 of `seconds`: ffmpeg `testsrc` video plus `text` spoken by Piper, as H.264 + AAC.

    The audio track is tagged with `language` (ISO 639-2), as episode files usually are.
    """
    from dubbing_assets.core.contracts import Voice
    from dubbing_assets.core.tts import get_engine

    ffmpeg = ffmpeg or find_ffmpeg()
    assert ffmpeg, FFMPEG_SKIP
    engine = get_engine("piper")
    wav = out.with_suffix(".speech.wav")
    engine.synthesize(text, Voice(engine="piper", voice=engine.voices()[0]), wav)
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-y", "-loglevel", "error",
           "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={seconds}",
           "-i", str(wav),
           "-filter_complex", f"[1:a]apad,atrim=0:{seconds},aresample=48000[a]",
           "-map", "0:v", "-map", "[a]", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast",
           "-c:a", "aac", "-b:a", "128k", "-ac", "1", "-metadata:s:a:0", f"language={language}",
           "-t", str(seconds), "-movflags", "+faststart", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"building the synthetic clip failed: {proc.stderr[-2000:]}"
    wav.unlink(missing_ok=True)
    return out


# -- waiting and HTTP ------------------------------------------------------------------------------------


def wait_until(what: str, predicate: Callable[[], Any], timeout: float, *, interval: float = 0.5,
               alive: Iterable[Callable[[], None]] = (), on_fail: Callable[[], str] = lambda: "") -> Any:
    """Poll `predicate` until it returns something truthy; after `timeout`, fail naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for check in alive:
            check()
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})\n"
                         f"{on_fail()}")


def pg_query(port: int, user: str, password: str, db: str, sql: str, *params: Any) -> list[tuple]:
    """Rows of one query against a local PostgreSQL (the tests' own servers, on 127.0.0.1)."""
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user=user, password=password, dbname=db,
                            connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def graphql(base_url: str, query: str, variables: Mapping[str, Any] | None = None,
            timeout: float = 60) -> dict[str, Any]:
    """POST a GraphQL query to the webserver; raise on transport or GraphQL errors; return `data`."""
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    req = urllib.request.Request(f"{base_url}/graphql", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        payload = json.loads(resp.read())
    assert not payload.get("errors"), f"GraphQL errors: {json.dumps(payload['errors'], indent=2)[:4000]}"
    return payload["data"]


def start_webserver(e2e: E2EHome, workspace: Path, name: str = "webserver", timeout: float = 180) -> str:
    """Start dagster-webserver on a free port and wait for /server_info; return the base URL."""
    port = free_port()
    e2e.procs.start(name, [tool("dagster-webserver"), "-w", str(workspace), "-p", str(port),
                           "-h", "127.0.0.1"], e2e.env)
    base = f"http://127.0.0.1:{port}"
    wait_until(f"{name} to answer {base}/server_info", lambda: http_get(f"{base}/server_info", 5)[0] == 200,
               timeout, interval=1.0, alive=[lambda: e2e.procs.check_alive(name)],
               on_fail=lambda: e2e.procs.dump(80))
    return base


def start_daemon(e2e: E2EHome, workspace: Path, name: str = "daemon", timeout: float = 180) -> None:
    """Start dagster-daemon and wait until its log shows the sensor daemon ticking."""
    e2e.procs.start(name, [tool("dagster-daemon"), "run", "-w", str(workspace)], e2e.env)

    def ready() -> bool:
        text = e2e.procs.logs[name].read_text(errors="replace") if e2e.procs.logs[name].exists() else ""
        return "SensorDaemon" in text and "inbox_sensor" in text

    wait_until(f"{name} to start its sensor daemon", ready, timeout, interval=1.0,
               alive=[lambda: e2e.procs.check_alive(name)], on_fail=lambda: e2e.procs.dump(80))


def streams_summary(path: Path) -> dict[str, Any]:
    from dubbing_assets.core.mux import verify_delivery

    return verify_delivery(path)


# -- headless browser ------------------------------------------------------------------------------------


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium(browser: str, url: str, profile: Path, *, screenshot: Path | None = None, dump_dom: bool = False,
             budget_ms: int = 15000, timeout: float = 180) -> str:
    """Load `url` in headless Chromium; write a screenshot or return the rendered DOM."""
    profile.mkdir(parents=True, exist_ok=True)
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
           "--window-size=1400,900", f"--virtual-time-budget={budget_ms}"]
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.unlink(missing_ok=True)
        cmd.append(f"--screenshot={screenshot}")
    if dump_dom:
        cmd.append("--dump-dom")
    cmd.append(url)
    env = dict(os.environ, HOME=str(profile))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"chromium did not finish {url} within {timeout:.0f}s:\n{err[-3000:]}") from None
    finally:
        try:  # renderer/zygote children share the group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, f"chromium failed on {url} (exit {proc.returncode}):\n{err[-3000:]}"
    if screenshot is not None:
        assert screenshot.exists(), f"chromium wrote no screenshot for {url}:\n{err[-3000:]}"
    return out


def png_stats(path: Path) -> dict[str, float]:
    """Size, distinct colours and the share of pixels that differ from the most common colour."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    return {"bytes": path.stat().st_size, "width": img.width, "height": img.height,
            "colours": len(colours), "non_background": 1.0 - counts.max() / counts.sum()}
