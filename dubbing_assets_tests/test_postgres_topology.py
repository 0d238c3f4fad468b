"""The deployment topology without Docker: PostgreSQL + gRPC code server + daemon + webserver.

A real PostgreSQL 15 (Debian's binaries, as a non-root user) on a free port
holds the Dagster instance (`dagster_postgres` storage, the repository's
`concurrency:` block). The code location runs in its own
`dagster code-server` process; `dagster-daemon` and `dagster-webserver` load
it through a workspace with a `grpc_server` entry, as in docker/. One clip
submitted with `dubbing submit` must be dubbed through the sensor, the run
and its event log must be rows in Postgres, and the webserver must answer
GraphQL for that run.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dubbing_assets_tests.e2e_helpers import (
    REPO,
    E2EHome,
    find_ffmpeg,
    free_port,
    graphql,
    make_clip,
    make_home,
    pg_query,
    start_daemon,
    start_webserver,
    tail,
    tool,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.required, pytest.mark.timeout(1200)]

PG_BIN = Path(os.environ.get("DUBBING_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER, PG_PASSWORD, PG_DB = "dagster", "dagster", "dagster"


def _pg_binaries() -> Path | None:
    if (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists():
        return PG_BIN
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


class Postgres:
    """A throwaway cluster in its own temp folder, run as a non-root user when we are root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="dubbing-pg-"))
        self.data, self.sock, self.log = self.dir / "data", self.dir / "sock", self.dir / "postgres.log"
        self.sock.mkdir()
        self.port = free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb/postgres refuse to run as root
            user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
            assert user, "running as root and neither a 'postgres' nor a 'nobody' user exists"
            info = pwd.getpwnam(user)
            for path in (self.dir, self.sock):
                os.chown(path, info.pw_uid, info.pw_gid)
            self.prefix = ["runuser", "-u", user, "--"]

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=timeout,
                              cwd=self.dir)
        assert proc.returncode == 0, (f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
                                      f"\n{tail(self.log, 40)}")
        return proc

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", PG_USER, "--auth=trust",
                  "-E", "UTF8", "--no-locale")
        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", opts, "start")
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {PG_DB}")
        conn.close()

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                            "-w", "-t", "30", "stop"], capture_output=True, timeout=60)
        pidfile = self.data / "postmaster.pid"
        if pidfile.exists():  # pg_ctl could not stop it: kill the postmaster ourselves
            try:
                os.kill(int(pidfile.read_text().split()[0]), 9)
            except (ProcessLookupError, ValueError):
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def query(self, sql: str, *params) -> list[tuple]:
        return pg_query(self.port, PG_USER, PG_PASSWORD, PG_DB, sql, *params)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _instance_yaml(port: int) -> str:
    """dagster_postgres storage plus the repository's concurrency (and other) settings."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["storage"] = {"postgres": {"postgres_db": {
        "username": {"env": "DAGSTER_PG_USERNAME"}, "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": {"env": "DAGSTER_PG_HOST"}, "db_name": {"env": "DAGSTER_PG_DB"}, "port": port,
        # as in docker/dagster.yaml: SQLAlchemy 2.1 defaults `postgresql://` to psycopg (v3), which
        # dagster-postgres does not install; it installs psycopg2
        "scheme": "postgresql+psycopg2"}}}
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    bindir = _pg_binaries()
    if bindir is None:
        message = (f"PostgreSQL server binaries not found (looked in {PG_BIN} and on PATH): install them "
                   "(apt-get install postgresql; `python3.11 scripts/dev.py test` does so as root)")
        pytest.fail(message)  # outside CI the module's skipif mark keeps this from being reached
    pg = Postgres(bindir)
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()


def test_postgres_grpc_daemon_webserver_topology(postgres: Postgres, tmp_path: Path) -> None:
    ffmpeg = find_ffmpeg()
    assert ffmpeg, "no ffmpeg at all (not even imageio-ffmpeg's): the project installation is broken"
    started = time.monotonic()
    clip = make_clip(tmp_path / "clip.mp4", "The meeting starts at nine.", ffmpeg=ffmpeg)
    e2e = make_home(tmp_path / "instance", dagster_yaml=_instance_yaml(postgres.port), owner="pg-tester",
                    extra_env={"DAGSTER_PG_USERNAME": PG_USER, "DAGSTER_PG_PASSWORD": PG_PASSWORD,
                               "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_DB": PG_DB})
    grpc_port = free_port()
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": {
        "host": "127.0.0.1", "port": grpc_port, "location_name": "dubbing_assets"}}]}))
    ok = False
    try:
        e2e.dubbing("instance", "init")  # creates the schema in Postgres and sets the gpu pool
        e2e.procs.start("code-server", [tool("dagster"), "code-server", "start", "-m", "dubbing_assets.definitions",
                                        "-h", "127.0.0.1", "-p", str(grpc_port)], e2e.env)
        _wait_for_code_server(e2e, grpc_port)
        print(f"[pg] code server up after {time.monotonic() - started:.1f}s", flush=True)
        start_daemon(e2e, workspace)
        base = start_webserver(e2e, workspace)
        print(f"[pg] daemon and webserver up after {time.monotonic() - started:.1f}s", flush=True)

        t_run = time.monotonic()
        key = e2e.submit(clip, "PG Series", "e07")
        waited = e2e.wait(key, 600)
        print(waited.stdout, waited.stderr, flush=True)
        assert waited.returncode == 0, f"`dubbing wait {key}` exited {waited.returncode}\n{e2e.diagnostics()}"
        print(f"[pg] run done in {time.monotonic() - t_run:.1f}s", flush=True)

        status = json.loads(e2e.dubbing("status", key, "--json").stdout)
        run_id = status["runs"][0]["run_id"]
        assert status["runs"][0]["status"] == "SUCCESS", status["runs"]
        assert status["manifest"] and status["manifest"]["visibility"] == "private", status
        assert Path(status["output"]).exists(), status["output"]

        # -- the instance really is Postgres ---------------------------------------------------------
        rows = postgres.query("SELECT status FROM runs WHERE run_id = %s", run_id)
        assert rows == [("SUCCESS",)], f"run {run_id} in Postgres: {rows}"
        n_runs = postgres.query("SELECT count(*) FROM runs")[0][0]
        n_events = postgres.query("SELECT count(*) FROM event_logs WHERE run_id = %s", run_id)[0][0]
        kinds = {r[0] for r in postgres.query(
            "SELECT DISTINCT dagster_event_type FROM event_logs WHERE run_id = %s", run_id)}
        print(f"[pg] Postgres: {n_runs} runs, {n_events} event rows for {run_id[:8]}", flush=True)
        assert n_runs >= 1 and n_events > 50, (n_runs, n_events)
        from dagster import DagsterEventType

        wanted = {DagsterEventType.RUN_SUCCESS.value, DagsterEventType.ASSET_MATERIALIZATION.value,
                  DagsterEventType.ASSET_CHECK_EVALUATION.value}  # RUN_SUCCESS is stored as PIPELINE_SUCCESS
        assert wanted <= kinds, kinds
        partitions = postgres.query("SELECT partition FROM dynamic_partitions WHERE partitions_def_name = %s",
                                    "episodes")
        assert (key,) in partitions, partitions
        sqlite_files = sorted(str(p) for p in e2e.dagster_home.rglob("*.db"))
        assert not sqlite_files, f"the instance wrote SQLite files next to Postgres: {sqlite_files}"

        # -- the webserver answers for that run -----------------------------------------------------
        data = graphql(base, """
            query Run($runId: ID!) { runOrError(runId: $runId) {
              __typename ... on Run { runId status jobName tags { key value } assetMaterializations { partition } }
              ... on PythonError { message } } }""", {"runId": run_id})
        run = data["runOrError"]
        assert run["__typename"] == "Run", run
        assert run["status"] == "SUCCESS" and run["jobName"] == "dub_episode", run
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags.get("dubbing/episode") == key and tags.get("dubbing/lane") == "cpu", tags
        assert run["assetMaterializations"] and all(m["partition"] == key for m in run["assetMaterializations"])
        data = graphql(base, "query { workspaceOrError { __typename ... on Workspace { locationEntries { "
                             "name loadStatus locationOrLoadError { __typename } } } } }")
        entries = data["workspaceOrError"]["locationEntries"]
        assert [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries] == [
            ("dubbing_assets", "RepositoryLocation")], entries
        ok = True
    finally:
        if not ok:
            print(e2e.diagnostics(), flush=True)
            print(f"----- postgres log -----\n{tail(postgres.log, 40)}", flush=True)
        e2e.procs.stop_all()
        print(f"[pg] wall time {time.monotonic() - started:.1f}s", flush=True)


def _wait_for_code_server(e2e: E2EHome, port: int, timeout: float = 180) -> None:
    def healthy() -> bool:
        proc = subprocess.run([tool("dagster"), "api", "grpc-health-check", "-p", str(port), "-h", "127.0.0.1"],
                              capture_output=True, text=True, env=e2e.env, timeout=60)
        return proc.returncode == 0

    wait_until(f"the code server on port {port} to pass its gRPC health check", healthy, timeout, interval=2.0,
               alive=[lambda: e2e.procs.check_alive("code-server")], on_fail=lambda: e2e.procs.dump(80))


# Outside CI a machine without PostgreSQL skips this module; under CI the fixture fails instead.
pytestmark.append(pytest.mark.skipif(_pg_binaries() is None and not os.environ.get("CI"),
                                     reason="PostgreSQL server binaries not found: apt-get install postgresql"))
