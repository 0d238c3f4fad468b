"""The Docker deployment, built and started for real (docker/).

Starts `dockerd` if none answers (its own choice of storage driver: overlay2
where the kernel allows, vfs otherwise; no bridge: containers use the host's
network), builds a Debian bookworm base with debootstrap (cached as an
image, keyed on the host's Debian sources and CA bundle), then the CPU image
(docker/Dockerfile) and a PostgreSQL image (docker/Dockerfile.postgres) on it.
The base carries the host's CA bundle and `PIP_CERT`, because pip in a build
reaches the package registries only with it; local wheel folders and indexes
from the host's pip configuration (the CPU torch wheel) are served to the build
over loopback HTTP and passed as build arguments. Nothing machine-specific is
named here: paths come from pip's and apt's configuration at run time.

Then PostgreSQL, the code server, the daemon and the webserver run as
containers, the sample episode is dropped into the inbox volume, and the daemon's
DockerRunLauncher must start a run container that dubs it: run and events in
Postgres, MKV and manifest in the volume, the key as a file on the read-only
secrets volume (no DUBBING_KEY in any `docker inspect`), the run container
removed, the webserver answering GraphQL for the run. Everything it started
(containers, volumes, the HTTP server, dockerd) is removed at the end; the images
stay as the build cache.
"""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
import yaml

from dubbing_assets_tests.e2e_helpers import REPO, free_port, graphql, pg_query, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.required, pytest.mark.timeout(2400)]

SAMPLE = REPO / "dubbing_assets_tests" / "data" / "media" / "ja_two_speakers.mkv"
HIGH_SAMPLE = REPO / "dubbing_assets_tests" / "data" / "media" / "en_monologue.mp4"
LABEL = "dubbing_assets.test"
BUILD_LABEL = "dubbing_assets.build"
BASE_INCLUDE = "python3,python3-venv,ca-certificates"
CPU_IMAGE = "dubbing-assets:cpu-local"
PG_IMAGE = "dubbing-postgres:15-local"
# Fixed, so that the wheel URLs in the build arguments (part of the classic builder's cache key)
# are the same from one run to the next; another port is used only when this one is taken.
WHEEL_PORT = int(os.environ.get("DUBBING_TEST_WHEEL_PORT", "47615"))
PG_USER, PG_PASSWORD, PG_DB = "dagster", "dagster-docker-test", "dagster"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def log(msg: str) -> None:
    print(f"[docker] {msg}", flush=True)


def docker(*args: str, timeout: float = 120, check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert proc.returncode == 0, f"docker {' '.join(args)[:300]} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def _daemon_answers() -> bool:
    try:
        return docker("version", "--format", "{{.Server.Version}}", timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="module")
def dockerd() -> Iterator[None]:
    """A Docker daemon: the running one, or one started here (and stopped at the end)."""
    assert shutil.which("docker"), "no docker CLI on PATH"
    if _daemon_answers():
        yield
        return
    binary = shutil.which("dockerd")
    assert binary, ("no Docker daemon answers and there is no dockerd: install Debian's docker.io "
                    "(`python3.11 scripts/dev.py test` does so as root)")
    assert os.geteuid() == 0, "no Docker daemon answers, and starting dockerd needs root"
    logdir = Path(tempfile.mkdtemp(prefix="dubbing-dockerd-"))
    logfile = (logdir / "dockerd.log").open("wb")
    # No --storage-driver: dockerd takes overlay2 where the kernel allows and falls back to vfs itself.
    # Forcing vfs made every layer and every container a full copy of the 4 GB image (about 8 GB per
    # container, its init layer and its own), and the deployment's five containers filled a CI disk.
    proc = subprocess.Popen([binary, "--iptables=false", "--bridge=none"],
                            stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until("dockerd to answer", lambda: proc.poll() is None and _daemon_answers(), 90, interval=1,
                   on_fail=lambda: (logdir / "dockerd.log").read_text(errors="replace")[-3000:])
        log(f"started dockerd (pid {proc.pid})")
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        logfile.close()
        shutil.rmtree(logdir, ignore_errors=True)
        log("stopped dockerd")


def _docker_disk() -> tuple[str, Path, int]:
    """The daemon's storage driver, its data root and the bytes free there."""
    driver, root = docker("info", "--format", "{{.Driver}} {{.DockerRootDir}}", timeout=60).stdout.split()
    return driver, Path(root), shutil.disk_usage(root).free


# What the test needs on the daemon's disk: the images and the five containers' layers. With overlay2
# containers share the image's layers; with vfs each container is two full copies of the image.
NEEDED_GB = {"vfs": 60, "default": 15}


def _check_disk() -> None:
    driver, root, free = _docker_disk()
    need = NEEDED_GB.get(driver, NEEDED_GB["default"])
    log(f"storage driver {driver}, {free / 1e9:.0f} GB free under {root}")
    assert free >= need * 1e9, (
        f"only {free / 1e9:.1f} GB free under {root} (storage driver {driver}); the deployment test needs about "
        f"{need} GB there: free some, or run dockerd with a storage driver that shares layers (overlay2)")


def _disk_note() -> str:
    try:
        driver, root, free = _docker_disk()
        return f"\n--- disk: storage driver {driver}, {free / 1e9:.1f} GB free under {root} ---"
    except Exception as exc:  # noqa: BLE001 - a diagnostic must not hide the failure it explains
        return f"\n--- disk: unknown ({exc}) ---"


# -- the base image -------------------------------------------------------------------------------

def _host_debian_sources() -> list[dict[str, str]]:
    """The host's apt sources for bookworm (deb822 stanzas or one-line entries), keyed like deb822."""
    stanzas: list[dict[str, str]] = []
    root = Path("/etc/apt")
    for path in sorted(root.glob("sources.list.d/*.sources")):
        for block in re.split(r"\n\s*\n", path.read_text()):
            fields = {}
            for line in block.splitlines():
                if line.strip() and not line.lstrip().startswith("#") and ":" in line:
                    name, value = line.split(":", 1)
                    fields[name.strip()] = value.strip()
            if fields:
                stanzas.append(fields)
    for path in [root / "sources.list", *sorted(root.glob("sources.list.d/*.list"))]:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            match = re.match(r"\s*deb\s+(?:\[(?P<opts>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)\s+(?P<comp>.+)", line)
            if match:
                opts = dict(o.split("=", 1) for o in (match["opts"] or "").split() if "=" in o)
                stanza = {"Types": "deb", "URIs": match["uri"], "Suites": match["suite"],
                          "Components": match["comp"].strip()}
                if "signed-by" in opts:
                    stanza["Signed-By"] = opts["signed-by"]
                stanzas.append(stanza)
    keep = []
    for s in stanzas:
        suites = s.get("Suites", "").split()
        if (s.get("Types", "deb").split() == ["deb"] and suites
                and all(re.fullmatch(r"bookworm(-updates|-security|-backports)?", x) for x in suites)
                and s.get("Signed-By", "/usr/share/keyrings/debian-archive-keyring.gpg").startswith(
                    "/usr/share/keyrings/debian-archive")):
            keep.append(s)
    assert any("bookworm" in s["Suites"].split() for s in keep), (
        "the host's apt sources name no Debian bookworm mirror; the base image is made from the host's mirror")
    return keep


def _image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False, timeout=60).returncode == 0


def _base_image() -> str:
    sources = _host_debian_sources()
    text = "\n\n".join("\n".join(f"{k}: {v}" for k, v in s.items()) for s in sources) + "\n"
    ca = CA_BUNDLE.read_bytes() if CA_BUNDLE.exists() else b""
    digest = hashlib.sha256(f"v1|{BASE_INCLUDE}|{text}".encode() + ca).hexdigest()[:12]
    tag = f"dubbing-base:bookworm-{digest}"
    if _image_exists(tag):
        log(f"base image {tag} cached")
        return tag
    assert shutil.which("debootstrap"), ("debootstrap is missing: install Debian's debootstrap "
                                         "(`python3.11 scripts/dev.py test` does so as root)")
    mirror = next(s["URIs"].split()[0] for s in sources if "bookworm" in s["Suites"].split())
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="dubbing-base-"))
    try:
        proc = subprocess.run(["debootstrap", "--variant=minbase", f"--include={BASE_INCLUDE}", "bookworm",
                               str(root / "fs"), mirror], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (f"debootstrap failed ({proc.returncode}):\n"
                                      f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        fs = root / "fs"
        (fs / "etc/apt/sources.list").unlink(missing_ok=True)
        (fs / "etc/apt/sources.list.d/debian.sources").write_text(text)
        if ca:  # the machine's trust store, as a studio's own base image would carry its CA
            (fs / "etc/ssl/certs/ca-certificates.crt").write_bytes(ca)
        shutil.rmtree(fs / "var/cache/apt/archives", ignore_errors=True)
        (fs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(["tar", "-C", str(fs), "-c", "."], stdout=subprocess.PIPE)
        changes = ["--change", f"LABEL {BUILD_LABEL}=base", "--change", 'CMD ["python3"]']
        if ca:
            changes += ["--change", f"ENV PIP_CERT={CA_BUNDLE}"]
        imp = subprocess.run(["docker", "import", *changes, "-", tag], stdin=tar.stdout, capture_output=True,
                             text=True, timeout=600)
        tar.wait(60)
        assert imp.returncode == 0, f"docker import failed:\n{imp.stderr}"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    log(f"base image {tag} made with debootstrap in {time.monotonic() - started:.0f}s")
    return tag


# -- wheels for the build, from the host's pip configuration ----------------------------------------

def _pip_locations() -> tuple[list[str], list[str]]:
    """find-links and extra-index-url values of the host's pip configuration (files and environment)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60)
    links: list[str] = []
    indexes: list[str] = []
    for line in proc.stdout.splitlines():
        match = re.fullmatch(r"[^.]*\.(find-links|extra-index-url)='(.*)'", line.strip())
        if match:
            (links if match[1] == "find-links" else indexes).extend(match[2].split())
    for name, out in (("PIP_FIND_LINKS", links), ("PIP_EXTRA_INDEX_URL", indexes)):
        out.extend(os.environ.get(name, "").split())
    return list(dict.fromkeys(links)), list(dict.fromkeys(indexes))


def _local_dir(location: str) -> Path | None:
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        path = Path(unquote(parsed.path))
        return path if path.is_dir() else None
    return None


class WheelServer:
    """Local pip locations as loopback HTTP URLs for the build; remote ones are passed through."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dubbing-wheels-"))
        links, indexes = _pip_locations()
        self.find_links: list[str] = []
        self.indexes: list[str] = []
        self.has_cpu_torch = False
        served: list[tuple[str, str, list[str]]] = []
        for n, loc in enumerate(links):
            path = _local_dir(loc)
            if path is None:
                self.find_links.append(loc)
                continue
            (self.root / f"l{n}").symlink_to(path)
            served.append((f"l{n}/", "", self.find_links))
            self.has_cpu_torch |= any(path.glob("torch-*+cpu-*.whl"))
        for n, loc in enumerate(indexes):
            path = _local_dir(loc)
            if path is None:
                self.indexes.append(loc)
                continue
            # indexes link to their files relatively (../../files/...): serve the parent folder
            (self.root / f"i{n}").symlink_to(path.parent)
            served.append((f"i{n}/", f"{path.name}/", self.indexes))
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        try:
            self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", WHEEL_PORT), handler)
        except OSError:
            self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        port = self.httpd.server_address[1]
        for prefix, tail, out in served:
            out.append(f"http://127.0.0.1:{port}/{prefix}{tail}")
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def build_args(self) -> dict[str, str]:
        args = {"EXTRA_FIND_LINKS": " ".join(self.find_links), "EXTRA_INDEX_URLS": " ".join(self.indexes)}
        if self.has_cpu_torch:  # the CPU torch wheel is here: no PyTorch index needed
            args["TORCH_INDEX"] = ""
        return args

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        shutil.rmtree(self.root, ignore_errors=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def _build_context(dest: Path) -> Path:
    """What docker/Dockerfile.dockerignore lets through, for the classic builder (which ignores that file)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "secrets", "local")
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "workspace.yaml"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("dubbing_assets", "docker"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    return dest


def _build(tag: str, dockerfile: str, context: Path, args: dict[str, str], timeout: float) -> float:
    started = time.monotonic()
    before = docker("image", "inspect", "--format", "{{.Id}}", tag, check=False).stdout.strip()
    cmd = ["build", "--network", "host", "-f", dockerfile, "-t", tag]
    for name, value in args.items():
        cmd += ["--build-arg", f"{name}={value}"]
    logfile = context.parent / f"build-{tag.replace(':', '_')}.log"
    with logfile.open("w") as out:
        proc = subprocess.run(["docker", *cmd, str(context)], stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout, env=dict(os.environ, DOCKER_BUILDKIT="0"))
    text = logfile.read_text(errors="replace")
    assert proc.returncode == 0, f"docker build of {tag} failed ({proc.returncode}):\n{text[-6000:]}"
    elapsed = time.monotonic() - started
    after = docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    if before and before != after:  # the previous build of this tag, now untagged
        docker("image", "rm", before, check=False, timeout=300)
    cached = text.count("Using cache")
    log(f"built {tag} in {elapsed:.0f}s ({cached} cached steps)")
    return elapsed


@pytest.fixture(scope="module")
def images(dockerd: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    _check_disk()
    base = _base_image()
    context = _build_context(tmp_path_factory.mktemp("docker-build") / "context")
    server = WheelServer()
    try:
        # side by side: the PostgreSQL image is mostly downloads while the CPU image installs
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            builds = [pool.submit(_build, PG_IMAGE, "docker/Dockerfile.postgres", context, {"BASE_IMAGE": base}, 600),
                      pool.submit(_build, CPU_IMAGE, "docker/Dockerfile", context,
                                  {"BASE_IMAGE": base, **server.build_args()}, 1500)]
            for build in builds:
                build.result()
    finally:
        server.close()
    for tag in (base, PG_IMAGE, CPU_IMAGE):
        size = int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
        log(f"image {tag}: {size / 1e6:.0f} MB")
    return {"base": base, "cpu": CPU_IMAGE, "postgres": PG_IMAGE}


# -- the deployment ---------------------------------------------------------------------------------

class Deployment:
    """Containers and volumes of one test run, all labelled/named with its id; `remove()` takes them away."""

    def __init__(self, root: Path) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.root = root
        self.volumes = {name: f"dubtest-{self.id}-{name}" for name in ("home", "storage", "secrets", "pgdata")}
        self.containers: dict[str, str] = {}
        self.ports = {"pg": free_port(), "grpc": free_port(), "web": free_port()}
        self.followers: list[subprocess.Popen] = []
        # the gpu lane's image: a second name of the CPU image (this host has no CUDA image), removed after
        self.gpu_image = f"dubtest-gpu-lane:{self.id}"

    def run(self, name: str, image: str, *args: str, env: dict[str, str] | None = None,
            mounts: list[str] = (), command: list[str] = ()) -> str:
        cname = f"dubtest-{self.id}-{name}"
        cmd = ["run", "-d", "--name", cname, "--network", "host", "--label", f"{LABEL}={self.id}"]
        for key, value in (env or {}).items():
            cmd += ["-e", f"{key}={value}"]
        for mount in mounts:
            cmd += ["-v", mount]
        docker(*cmd, *args, image, *command)
        self.containers[name] = cname
        return cname

    def logs(self, name: str, lines: int = 60) -> str:
        proc = docker("logs", "--tail", str(lines), self.containers[name], check=False, timeout=60)
        return f"--- {name} ---\n{proc.stdout}{proc.stderr}"

    def diagnostics(self) -> str:
        return "\n".join(self.logs(name) for name in self.containers) + _disk_note()

    def alive(self, name: str) -> None:
        state = docker("inspect", "--format", "{{.State.Status}}", self.containers[name], check=False).stdout.strip()
        assert state == "running", f"container {name} is {state or 'gone'}:\n{self.logs(name, 80)}"

    def exec(self, name: str, *cmd: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        return docker("exec", self.containers[name], *cmd, timeout=timeout, check=check)

    def remove(self) -> None:
        for follower in self.followers:
            follower.kill()
            follower.wait(30)
        # A run container that removes itself (auto_remove) may be mid-removal, when `rm -f` fails and
        # its volumes are still in use: try again for a while rather than leave anything behind.
        left: list[str] = []
        for _ in range(30):
            ids = docker("ps", "-aq", "--filter", f"label={LABEL}={self.id}", check=False).stdout.split()
            if ids:
                docker("rm", "-f", "-v", *ids, check=False, timeout=300)
            for volume in self.volumes.values():
                docker("volume", "rm", "-f", volume, check=False, timeout=120)
            left = docker("ps", "-aq", "--filter", f"label={LABEL}={self.id}", check=False).stdout.split()
            volumes = set(docker("volume", "ls", "-q", check=False).stdout.split()) & set(self.volumes.values())
            if not left and not volumes:
                break
            time.sleep(2)
        docker("image", "rm", self.gpu_image, check=False, timeout=120)  # only the name: the image stays
        assert not left, f"containers left behind: {left}"


def _instance_yaml(dep: Deployment) -> str:
    """docker/dagster.gpu.yaml (the mixed fleet) with the test's volume names, host networking and a label.

    The gpu lane's `device_requests` are left out: this host has no NVIDIA runtime, and dockerd refuses
    to create a container that asks for one. Its image (DUBBING_GPU_IMAGE) is a second name of the CPU
    image, so the test sees which image each lane's run was started from.
    """
    config = yaml.safe_load((REPO / "docker" / "dagster.gpu.yaml").read_text())
    launcher = config["run_launcher"]["config"]
    gpu_kwargs = launcher["lanes"]["gpu"].pop("container_kwargs")
    assert set(gpu_kwargs) == {"device_requests"}, gpu_kwargs
    launcher["network"] = "host"
    names = {"dubbing_home": dep.volumes["home"], "dagster_storage": dep.volumes["storage"],
             "dubbing_secrets": dep.volumes["secrets"]}
    kwargs = launcher["container_kwargs"]
    assert set(kwargs["volumes"]) == set(names), f"docker/dagster.yaml mounts {set(kwargs['volumes'])}"
    kwargs["volumes"] = {names[k]: v for k, v in kwargs["volumes"].items()}
    kwargs["labels"] = {LABEL: dep.id}
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture
def deployment(images: dict[str, str], tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(tmp_path)
    try:
        yield dep
    finally:
        dep.remove()


def _pg_query(dep: Deployment, sql: str, *params: Any) -> list[tuple]:
    return pg_query(dep.ports["pg"], PG_USER, PG_PASSWORD, PG_DB, sql, *params)


def _env_has_key(attrs: dict[str, Any], key_b64: str) -> list[str]:
    env = attrs.get("Config", {}).get("Env") or []
    bad = [e.split("=", 1)[0] for e in env if e.startswith("DUBBING_KEY=")]
    if key_b64 in json.dumps(attrs):
        bad.append("(the key's value)")
    return bad


KEY_IDS = r"""
import json, os, sys
from pathlib import Path
from dubbing_assets.core.crypto import inspect_file
ids = {}
for top in sys.argv[1:]:
    for dirpath, _, files in os.walk(top):
        for f in files:
            try:
                kid = inspect_file(Path(dirpath) / f).key_id
            except Exception:
                continue
            ids[kid] = ids.get(kid, 0) + 1
print(json.dumps(ids))
"""


def _run_container(run_id: str) -> dict[str, Any] | None:
    ids = docker("ps", "-aq", "--filter", f"label=dagster/run_id={run_id}").stdout.split()
    return json.loads(docker("inspect", ids[0]).stdout)[0] if ids else None


def _run_diagnostics(dep: Deployment, run_id: str) -> str:
    run_log = dep.root / f"run-{run_id[:8]}.log"
    logs = "\n".join(run_log.read_text(errors="replace").splitlines()[-150:]) if run_log.exists() else ""
    try:
        failures, events = _run_events(dep, run_id)
    except Exception as exc:  # noqa: BLE001 - PostgreSQL may be what failed; the rest still explains
        failures, events = [f"(PostgreSQL did not answer: {exc})"], []
    return (f"{dep.diagnostics()}\n--- run container ---\n{logs}\n--- failures ---\n" + "\n".join(failures)
            + "\n--- the run's last events ---\n" + "\n".join(events))


def _run_events(dep: Deployment, run_id: str) -> tuple[list[str], list[str]]:
    """The run's step and run failures (with their error chains) and its last 15 events, from PostgreSQL."""
    failures = []
    for (event,) in _pg_query(dep, "SELECT event FROM event_logs WHERE run_id = %s AND dagster_event_type IN "
                                   "('STEP_FAILURE', 'RUN_FAILURE') ORDER BY id", run_id):
        entry = json.loads(event)
        data = (entry.get("dagster_event") or {}).get("event_specific_data") or {}
        error = data.get("error") or {}
        chain = []
        while error:
            chain.append(f"{error.get('cls_name')}: {error.get('message', '').strip()}\n"
                         + "".join(error.get("stack") or [])[-3000:])
            error = (error.get("cause") or error.get("context") or {})
        failures.append(f"{entry.get('step_key')}: {entry.get('user_message', '')[:500]}\n" + "\n".join(chain))
    rows = _pg_query(dep, "SELECT dagster_event_type, event FROM event_logs WHERE run_id = %s ORDER BY id", run_id)
    events = [f"{kind or ''} {(json.loads(event).get('user_message') or '')[:300]}" for kind, event in rows[-15:]]
    return failures, events


def _follow_run(dep: Deployment, run_id: str, alive: list, t_drop: float) -> tuple[dict[str, Any], str, float]:
    """Wait for the run's container, follow its output, wait for the run to end: (container, status, seconds)."""
    run_attrs = wait_until("the run container", lambda: _run_container(run_id), 300, interval=1, alive=alive,
                           on_fail=lambda: _run_diagnostics(dep, run_id))
    log(f"run container {run_attrs['Name']} from {run_attrs['Config']['Image']}")
    # the container removes itself when the run ends: follow its output into a file for diagnostics
    with (dep.root / f"run-{run_id[:8]}.log").open("wb") as out:
        follower = subprocess.Popen(["docker", "logs", "-f", run_attrs["Id"]], stdout=out, stderr=subprocess.STDOUT)
    dep.followers.append(follower)

    def finished() -> str | None:
        status = _pg_query(dep, "SELECT status FROM runs WHERE run_id = %s", run_id)[0][0]
        return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

    status = wait_until("the run to finish", finished, 1200, interval=3, alive=alive,
                        on_fail=lambda: _run_diagnostics(dep, run_id))
    return run_attrs, status, time.monotonic() - t_drop


def test_docker_deployment_dubs_the_sample(deployment: Deployment, images: dict[str, str]) -> None:
    from dubbing_assets.core.crypto.keyring import default_key_id

    dep, image = deployment, images["cpu"]
    t0 = time.monotonic()
    key = os.urandom(32)
    key_b64 = base64.b64encode(key).decode()
    secrets = dep.root / "secrets"
    secrets.mkdir()
    (secrets / "dubbing_key").write_text(key_b64 + "\n")
    (secrets / "dubbing_key").chmod(0o600)
    (dep.root / "dagster.yaml").write_text(_instance_yaml(dep))
    docker("tag", image, dep.gpu_image)
    (dep.root / "workspace.yaml").write_text(yaml.safe_dump({"load_from": [{"grpc_server": {
        "host": "127.0.0.1", "port": dep.ports["grpc"], "location_name": "dubbing_assets"}}]}))
    for name, volume in dep.volumes.items():
        opts = ["--driver", "local", "--opt", "type=none", "--opt", "o=bind", "--opt", f"device={secrets}"] \
            if name == "secrets" else []
        docker("volume", "create", *opts, volume)

    # PostgreSQL
    dep.run("postgres", images["postgres"], mounts=[f"{dep.volumes['pgdata']}:/var/lib/postgresql/data"],
            env={"POSTGRES_USER": PG_USER, "POSTGRES_PASSWORD": PG_PASSWORD, "POSTGRES_DB": PG_DB,
                 "PGPORT": str(dep.ports["pg"]), "POSTGRES_LISTEN": "127.0.0.1"})
    wait_until("PostgreSQL in its container", lambda: _pg_query(dep, "SELECT 1"), 120, interval=1,
               alive=[lambda: dep.alive("postgres")], on_fail=dep.diagnostics)

    env = {"DAGSTER_HOME": "/opt/dagster/dagster_home", "DAGSTER_PG_USERNAME": PG_USER,
           "DAGSTER_PG_PASSWORD": PG_PASSWORD, "DAGSTER_PG_DB": PG_DB, "DAGSTER_PG_HOST": "127.0.0.1",
           "DAGSTER_PG_PORT": str(dep.ports["pg"]), "DUBBING_HOME": "/data/dubbing", "DUBBING_RUN_IMAGE": image,
           "DUBBING_GPU_IMAGE": dep.gpu_image, "DUBBING_DEVICE": "auto", "DUBBING_TARGET_LANG": "en",
           "DUBBING_CONTAINER": "mkv", "DUBBING_OWNER": "docker-tester", "DUBBING_MODELS_DIR": ""}
    mounts = [f"{dep.root / 'dagster.yaml'}:/opt/dagster/dagster_home/dagster.yaml:ro",
              f"{dep.root / 'workspace.yaml'}:/opt/dubbing/docker/workspace.yaml:ro",
              f"{dep.volumes['home']}:/data/dubbing", f"{dep.volumes['storage']}:/opt/dagster/storage"]
    sock = "/var/run/docker.sock:/var/run/docker.sock"
    dep.run("code", image, env={**env, "DAGSTER_CURRENT_IMAGE": image}, mounts=mounts,
            command=["dagster", "code-server", "start", "-m", "dubbing_assets.definitions", "-h", "127.0.0.1",
                     "-p", str(dep.ports["grpc"])])
    dep.run("daemon", image, mounts=[*mounts, f"{dep.volumes['secrets']}:/run/secrets:ro", sock],
            env={**env, "DUBBING_INSTANCE_INIT": "1", "DUBBING_GPU_SLOTS": "1",
                 "DUBBING_KEY_FILE": "/run/secrets/dubbing_key"},
            command=["dagster-daemon", "run", "-w", "/opt/dubbing/docker/workspace.yaml"])
    wait_until("the code server's gRPC health check",
               lambda: dep.exec("code", "dagster", "api", "grpc-health-check", "-p", str(dep.ports["grpc"]),
                                check=False, timeout=60).returncode == 0,
               300, interval=3, alive=[lambda: dep.alive("code")], on_fail=dep.diagnostics)
    wait_until("the daemon's heartbeats in Postgres",
               lambda: _pg_query(dep, "SELECT count(*) FROM daemon_heartbeats")[0][0] > 0, 300, interval=3,
               alive=[lambda: dep.alive("daemon")], on_fail=dep.diagnostics)
    dep.run("webserver", image, env=env, mounts=[*mounts, sock],
            command=["dagster-webserver", "-h", "127.0.0.1", "-p", str(dep.ports["web"]),
                     "-w", "/opt/dubbing/docker/workspace.yaml"])
    web = f"http://127.0.0.1:{dep.ports['web']}"
    wait_until("the webserver", lambda: graphql(web, "{ version }", timeout=10), 300, interval=3,
               alive=[lambda: dep.alive("webserver")], on_fail=dep.diagnostics)
    log(f"postgres, code server, daemon and webserver up after {time.monotonic() - t0:.0f}s")

    # -- drop the sample into the inbox volume (copied beside it, then renamed: atomic) -----------
    t_drop = time.monotonic()
    docker("cp", str(SAMPLE), f"{dep.containers['code']}:/data/dubbing/ja_two_speakers.mkv.part")
    dep.exec("code", "sh", "-c", "mkdir -p /data/dubbing/inbox/alpha-series && "
             "mv /data/dubbing/ja_two_speakers.mkv.part /data/dubbing/inbox/alpha-series/ja_two_speakers.mkv")
    services = ("postgres", "code", "daemon", "webserver")
    alive = [functools.partial(dep.alive, name) for name in services]
    run_id = wait_until("the inbox sensor's run in Postgres",
                        lambda: (_pg_query(dep, "SELECT run_id FROM runs ORDER BY create_timestamp") or [[None]])[0][0],
                        300, interval=2, alive=alive, on_fail=dep.diagnostics)
    log(f"run {run_id[:8]} requested {time.monotonic() - t_drop:.0f}s after the drop")

    run_attrs, status, delivered = _follow_run(dep, run_id, alive, t_drop)
    assert status == "SUCCESS", f"run {run_id} ended {status}\n{_run_diagnostics(dep, run_id)}"
    log(f"dubbed: drop to delivered in {delivered:.0f}s")

    # -- the run and its events in Postgres ---------------------------------------------------------
    kinds = {r[0] for r in _pg_query(dep, "SELECT DISTINCT dagster_event_type FROM event_logs WHERE run_id = %s",
                                     run_id)}
    from dagster import DagsterEventType

    wanted = {DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS, DagsterEventType.STEP_SUCCESS,
              DagsterEventType.ASSET_MATERIALIZATION}
    assert {kind.value for kind in wanted} <= kinds, kinds  # (stored as PIPELINE_START, ...)
    tags = dict(_pg_query(dep, "SELECT key, value FROM run_tags WHERE run_id = %s", run_id))
    # the cpu lane: the code location's CPU image, no GPU, DUBBING_DEVICE=cpu from the lane
    assert tags.get("dubbing/lane") == "cpu" and tags.get("dagster/image") == image, tags
    assert run_attrs["Config"]["Image"] == image and not run_attrs["HostConfig"].get("DeviceRequests")
    assert "DUBBING_DEVICE=cpu" in run_attrs["Config"]["Env"], run_attrs["Config"]["Env"]

    # -- the MKV and manifest in the volume ---------------------------------------------------------
    found = dep.exec("code", "find", "/data/dubbing/library", "-type", "f").stdout.split()
    mkvs = [p for p in found if p.endswith(".mkv")]
    manifests = [p for p in found if p.endswith("manifest.json")]
    assert mkvs and manifests, f"library in the volume holds {found}"
    streams = dep.exec("code", "ffprobe", "-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0",
                       mkvs[0]).stdout.split()
    assert "video" in streams and streams.count("audio") >= 2, f"{mkvs[0]}: {streams}"
    manifest = json.loads(dep.exec("code", "cat", manifests[0]).stdout)
    assert manifest.get("visibility") == "private", manifest

    # -- the key: a file on the read-only secrets volume, used by the run, in no environment ------
    mounts_by_dest = {m["Destination"]: m for m in run_attrs["Mounts"]}
    secret_mount = mounts_by_dest.get("/run/secrets")
    assert secret_mount and secret_mount["Name"] == dep.volumes["secrets"] and secret_mount["RW"] is False, \
        run_attrs["Mounts"]
    assert run_attrs["HostConfig"]["NetworkMode"] == "host"
    assert "DUBBING_KEY_FILE=/run/secrets/dubbing_key" in run_attrs["Config"]["Env"]
    assert not _env_has_key(run_attrs, key_b64), f"run container: {_env_has_key(run_attrs, key_b64)}"
    for name, cname in dep.containers.items():
        attrs = json.loads(docker("inspect", cname).stdout)[0]
        assert not _env_has_key(attrs, key_b64), f"{name}: {_env_has_key(attrs, key_b64)}"
    key_ids = json.loads(dep.exec("code", "python", "-c", KEY_IDS, "/data/dubbing", "/opt/dagster/storage").stdout)
    assert default_key_id(key) in key_ids, f"no artifact was encrypted with the mounted key: {key_ids}"

    # -- the run container is gone ------------------------------------------------------------------
    wait_until("the run container to be removed", lambda: _run_container(run_id) is None, 120, interval=2)

    # -- the webserver knows the run ------------------------------------------------------------------
    data = graphql(web, "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status tags "
                        "{ key value } } } }", {"id": run_id})
    assert data["runOrError"]["__typename"] == "Run" and data["runOrError"]["status"] == "SUCCESS", data

    # -- a high-mode episode takes the gpu lane, and so the gpu lane's image --------------------------
    t_high = time.monotonic()
    docker("cp", str(HIGH_SAMPLE), f"{dep.containers['code']}:/data/dubbing/{HIGH_SAMPLE.name}")
    dep.exec("code", "dubbing", "submit", f"/data/dubbing/{HIGH_SAMPLE.name}", "--series", "beta-series",
             "--episode", "e01", "--mode", "high", "--to", "en")
    high_id = wait_until("the high-mode run in Postgres", lambda: (_pg_query(
        dep, "SELECT run_id FROM runs WHERE run_id <> %s ORDER BY create_timestamp", run_id) or [[None]])[0][0],
        300, interval=2, alive=alive, on_fail=dep.diagnostics)
    high_attrs, status, high_delivered = _follow_run(dep, high_id, alive, t_high)
    assert status == "SUCCESS", f"run {high_id} ended {status}\n{_run_diagnostics(dep, high_id)}"
    tags = dict(_pg_query(dep, "SELECT key, value FROM run_tags WHERE run_id = %s", high_id))
    assert tags.get("dubbing/lane") == "gpu" and tags.get("dagster/image") == dep.gpu_image, tags
    assert high_attrs["Config"]["Image"] == dep.gpu_image, high_attrs["Config"]["Image"]
    assert "DUBBING_DEVICE=auto" in high_attrs["Config"]["Env"], high_attrs["Config"]["Env"]
    log(f"checked in {time.monotonic() - t0:.0f}s (drop to delivered {delivered:.0f}s; "
        f"high mode in the gpu lane's image {high_delivered:.0f}s)")


def test_nothing_left_behind(images: dict[str, str]) -> None:
    """After the deployment test: no labelled container or test volume remains (the images are the cache)."""
    left = docker("ps", "-aq", "--filter", f"label={LABEL}").stdout.split()
    volumes = [v for v in docker("volume", "ls", "-q").stdout.split() if v.startswith("dubtest-")]
    assert not left and not volumes, f"left behind: containers {left}, volumes {volumes}"
