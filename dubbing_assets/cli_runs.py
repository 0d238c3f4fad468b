"""`dubbing submit|status|wait|cancel|rerun|instance`: the CLI's run-facing commands.

The CLI never starts runs: `submit` places the file in the inbox (atomically)
with a request file of options, `rerun` writes a request file, and the inbox
sensor turns both into runs. `status`, `wait` and `cancel` read or act on the
Dagster instance named by DAGSTER_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dubbing_assets.core.contracts import EpisodeRecord
from dubbing_assets.core.fsutil import file_lock, file_sha256
from dubbing_assets.core.inbox import (
    MEDIA_EXTENSIONS,
    SIDECAR_EXTENSIONS,
    announce_file,
    glob_escape,
    read_episode_record,
    reserve_key,
)
from dubbing_assets.core.library import episode_dir, read_manifest
from dubbing_assets.core.requests import (
    NORMAL_PRIORITY,
    STAGES,
    SubmitOptions,
    submit_request_path,
    write_rerun_request,
    write_submit_request,
)
from dubbing_assets.core.safepath import check_slug, safe_join, slugify
from dubbing_assets.core.settings import Settings, load_settings
from dubbing_assets.errors import ConfigError, DubbingError, MediaError

if TYPE_CHECKING:
    from dubbing_assets.orchestration.instance import Runs, RunView



def _runs(*, create: bool = False) -> Runs:
    """The instance's runs (imported late: `dubbing submit` needs no Dagster)."""
    from dubbing_assets.orchestration.instance import Runs

    return Runs(create=create)


def _copy_atomic(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)


def cmd_submit(args: argparse.Namespace) -> int:
    from dubbing_assets.core import media
    from dubbing_assets.core.media import is_plain_file

    settings = load_settings().ensure()
    src = Path(args.file)
    if not src.is_file():
        raise MediaError(f"{src} does not exist or is not a file.")
    if src.suffix.lower() not in MEDIA_EXTENSIONS:
        # The inbox sensor lists only these; anything else would wait for a run that never comes.
        raise MediaError(f"{src.name}: {src.suffix or 'no extension'} is not an episode type the inbox accepts "
                         f"({', '.join(sorted(MEDIA_EXTENSIONS))}); rename or remux it to one of them.")
    media.validate(src)  # a file that can never be dubbed fails here, before anything is queued
    series = args.series or src.resolve().parent.name
    series_slug = slugify(series) or "series"
    ep_slug = slugify(args.episode) if args.episode else None
    target_name = f"{ep_slug or slugify(src.stem) or 'episode'}{src.suffix.lower()}"
    try:
        options = SubmitOptions(owner=_submitting_owner(settings, args.owner, args.priority), mode=args.mode,
                                target_lang=args.to.lower(), priority=args.priority,
                                visibility="public" if args.public else "private",
                                series=series, episode=args.episode).validate()
    except ValueError as exc:  # an option out of range: say which, queue nothing
        raise ConfigError(str(exc)) from exc
    folder = safe_join(settings.inbox, series_slug)
    folder.mkdir(parents=True, exist_ok=True)
    target = safe_join(folder, target_name)
    # One submit at a time decides and writes: two concurrent submits to one name would both pass the
    # checks below and the later copy would silently replace the earlier file.
    with file_lock(settings.state / "submit.lock"):
        # the sensor's key for this file, suffix included where another file of the series slugs alike
        key = reserve_key(settings.state / "inbox.sqlite", series_slug, f"{series_slug}/{target_name}")
        if target.exists() and file_sha256(target) != file_sha256(src):
            _check_replaceable(settings, key, target, options.owner, f"{series_slug}/{target_name}")
        for sidecar in sorted(src.parent.glob(f"{glob_escape(src.stem)}.*")):
            if sidecar.suffix.lower() in SIDECAR_EXTENSIONS and is_plain_file(sidecar):
                rest = sidecar.name[len(src.stem):]
                _copy_atomic(sidecar, safe_join(folder, Path(target_name).stem + slugify_suffix(rest)))
                print(f"sidecar: {sidecar.name}")
        _copy_atomic(src, target)
        # Only now, with the file complete in the inbox: a failed copy leaves no request pending. The request
        # names its file, so the sensor never applies it to another file that shares the key.
        options.relpath, options.fingerprint = f"{series_slug}/{target_name}", file_sha256(target)
        write_submit_request(settings.requests, key, options)
        announce_file(settings.state / "inbox.sqlite", options.relpath, target.stat())
    print(f"submitted {src.name} as {series_slug}/{target_name} (owner {options.owner}, mode {options.mode}, "
          f"to {options.target_lang}); the inbox sensor will queue it")
    print(key)
    return 0


def _check_replaceable(settings: Settings, key: str, target: Path, owner: str, relpath: str) -> None:
    """A different file already sits where this one would go: only its owner's new version of an episode the
    sensor has already queued may replace it (a revision); anything else would lose a file."""
    if submit_request_path(settings.requests, key).exists():
        # "Ep 1.mkv" then "ep_1.mkv": the first is still waiting for the sensor
        raise DubbingError(f"{relpath} already holds a different file that the inbox sensor has not queued yet; "
                           f"wait for it (`dubbing wait {key}`) or give this one another --episode.")
    record = _record(settings, key)
    if record is None or record.fingerprint != file_sha256(target):
        raise DubbingError(f"{relpath} already holds a different file that the inbox sensor has not queued yet "
                           "(dropped in directly); wait for it or give this one another --episode.")
    if record.owner != owner:
        raise DubbingError(f"{relpath} is {record.owner!r}'s episode {key}; only its owner submits a new "
                           "version of it. Give this one another --episode (or --series).")


def _submitting_owner(settings: Settings, owner: str | None, priority: int) -> str:
    """Who owns the submission: the OS user, unless an operator (DUBBING_OPERATORS) names someone.

    The owner feeds the per-owner queue limit and the manifest, so it must not be self-declared;
    priorities outside the normal band are an operator's call too.
    """
    import getpass

    user = getpass.getuser()
    operator = user in settings.operators
    if not operator and owner and owner != user:
        raise DubbingError(f"--owner {owner!r}: only an operator ({', '.join(settings.operators) or 'none set'}; "
                           f"DUBBING_OPERATORS) may submit for another user; you submit as {user!r}.")
    if not operator and not NORMAL_PRIORITY[0] <= priority <= NORMAL_PRIORITY[1]:
        raise DubbingError(f"--priority {priority}: outside {NORMAL_PRIORITY[0]}..{NORMAL_PRIORITY[1]} only an "
                           "operator (DUBBING_OPERATORS) may set it.")
    return (owner or settings.owner) if operator else user


def slugify_suffix(rest: str) -> str:
    """'.en.srt' stays '.en.srt'; anything odd is reduced to safe characters."""
    parts = [slugify(p, max_len=12) for p in rest.split(".") if p]
    return "." + ".".join(p for p in parts if p)


#: How long `wait` gives the daemon to decide on a retry after a run failed (the retry daemon's tick is ~30 s).
RETRY_DECISION_S = 120.0


def _record(settings: Settings, key: str) -> EpisodeRecord | None:
    return read_episode_record(settings.episodes, check_slug(key, "episode key"))


def _status_of(settings: Settings, runs_api: Runs, key: str) -> dict[str, Any]:
    runs = runs_api.for_episode(key)
    record = _record(settings, key)
    manifest = None
    if record:
        manifest = read_manifest(episode_dir(settings.output, record.series, key))
    return {
        "episode": key,
        "record": record.to_dict() if record else None,
        "runs": [{"run_id": r.run_id, "status": r.status, "job": r.job, "lane": r.lane, "run_key": r.run_key,
                  "retry_of": r.retry_of,
                  **({"failed": runs_api.failed_stage(r)} if k == 0 and r.status == "FAILURE" else {})}
                 for k, r in enumerate(runs)],
        "output": (manifest or {}).get("video_path"),
        "manifest": manifest,
    }


def cmd_status(args: argparse.Namespace) -> int:
    settings = load_settings()
    runs_api = _runs()
    keys = [args.episode] if args.episode else sorted(p.stem for p in settings.episodes.glob("*.json"))
    statuses = [_status_of(settings, runs_api, k) for k in keys]
    if args.json:
        print(json.dumps(statuses if not args.episode else statuses[0], indent=2, default=str))
        return 0
    for st in statuses:
        last = st["runs"][0]["status"] if st["runs"] else "NOT QUEUED YET"
        line = f"{st['episode']:<40} {last:<12}"
        if st["output"]:
            line += f" {st['output']}"
        print(line)
        failed = st["runs"][0].get("failed") if st["runs"] else None
        if failed:
            print(f"  stopped in {failed['stage'] or 'an unknown stage'}: {failed['reason']}\n  next: {failed['next']}")
    return 0


def _quarantine_reason(settings: Settings, key: str, since: float) -> str | None:
    """The reason the sensor quarantined this episode's file, matched on the `key:` line it records
    (never on a piece of the name: `e01` is in every series' first episode)."""
    for reason in settings.quarantine.rglob("*.reason.txt"):
        if reason.stat().st_mtime < since - 1:
            continue
        text = reason.read_text(encoding="utf-8", errors="replace")
        if f"key: {key}" in text.splitlines():
            return text.strip()
    return None


def _pending_requests(settings: Settings, key: str) -> list[Path]:
    """Submit or rerun requests for `key` that the sensor has not consumed yet."""
    from dubbing_assets.core.requests import pending_reruns, submit_request_path

    pending = [p for p in [submit_request_path(settings.requests, key)] if p.exists()]
    for path in pending_reruns(settings.requests):
        try:
            if json.loads(path.read_text()).get("episode") == key:
                pending.append(path)
        except (OSError, ValueError, AttributeError):
            continue
    return pending


def cmd_wait(args: argparse.Namespace) -> int:
    """Exit 0 on success, 1 on failure, 2 on timeout.

    Waits while a request for the episode is still pending (the sensor has not
    read it), then follows the run the sensor asked for last (`last_run_key`
    in the episode record). Identical content submitted again asks for no new
    run, so the last run's outcome stands.
    """
    from dubbing_assets.orchestration.instance import TERMINAL

    settings = load_settings()
    key = check_slug(args.episode, "episode key")
    runs_api = _runs()
    deadline = time.monotonic() + args.timeout
    started = time.time()
    last_status = None
    retry_grace: float | None = None
    explained: set[str] = set()  # retries whose parent's failure was printed
    while time.monotonic() < deadline:
        pending = _pending_requests(settings, key)
        record = _record(settings, key)
        if pending:
            reason = _quarantine_reason(settings, key, started - 3600)
            if reason and any(p.name.startswith("submit-") for p in pending):
                print(f"{key}: the inbox sensor quarantined the file:\n{reason}", file=sys.stderr)
                return 1
            status = "waiting for the inbox sensor"
        elif record is None or not record.last_run_key:
            status = "not submitted" if record is None else "waiting for the inbox sensor"
        else:
            wanted = record.last_run_key
            runs = [r for r in runs_api.for_episode(key) if r.run_key == wanted]
            if not runs:
                status = "run requested, not created yet"
            else:
                run = runs[0]  # the newest: a retry carries its parent's run key
                status = run.status
                failed = runs_api.failed_stage(run)
                if failed and failed["will_retry"] != "false" and runs_api.retries and (
                        failed["will_retry"] == "true" or time.monotonic() < (retry_grace or (
                            retry_grace := time.monotonic() + RETRY_DECISION_S))):
                    status = f"run {run.run_id[:8]} failed in {failed['stage']}: {failed['reason']}; {failed['next']}"
                elif status in TERMINAL:
                    print(f"{key}: run {run.run_id[:8]} {status}", flush=True)
                    if status == "SUCCESS":
                        st = _status_of(settings, runs_api, key)
                        if st["output"]:
                            print(f"output: {st['output']}")
                        return 0
                    if failed:
                        print(f"{key}: stopped in {failed['stage']}: {failed['reason']}; {failed['next']}",
                              file=sys.stderr)
                    print(f"{key}: run {run.run_id} ended {status}; see `dubbing status {key}` or the web UI",
                          file=sys.stderr)
                    return 1
                else:
                    retry_grace = None
                    status = f"run {run.run_id[:8]} {status}"
                    if run.retry_of and run.run_id not in explained:
                        explained.add(run.run_id)
                        print(f"{key}: run {run.run_id[:8]}{_retry_note(runs_api, key, run)}", flush=True)
        if status != last_status:
            print(f"{key}: {status}", flush=True)
            last_status = status
        time.sleep(args.poll)
    print(f"{key}: timed out after {args.timeout}s (last status: {last_status}); is dagster-daemon running?",
          file=sys.stderr)
    return 2


def _retry_note(runs_api: Runs, key: str, run: RunView) -> str:
    """For a retry, what happened to the run it retries: `wait` may start after the daemon has already
    retried a killed run, and then the retry is all it would see."""
    parent = next((r for r in runs_api.for_episode(key) if r.run_id == run.retry_of), None)
    failed = runs_api.failed_stage(parent) if parent is not None else None
    if not failed:
        return f" is a retry of run {(run.retry_of or '')[:8]}"
    return f" is a retry of run {parent.run_id[:8]}, which failed in {failed['stage']}: {failed['reason']}"


def cmd_cancel(args: argparse.Namespace) -> int:
    from dubbing_assets.orchestration.instance import CANCELABLE

    runs_api = _runs()
    key = check_slug(args.episode, "episode key")
    n = 0
    for run in runs_api.for_episode(key):
        if run.status in CANCELABLE:
            runs_api.cancel(run)
            print(f"canceled {run.run_id} ({run.status})")
            n += 1
    if not n:
        print(f"{key}: nothing queued or running")
    return 0


def cmd_rerun(args: argparse.Namespace) -> int:
    settings = load_settings().ensure()
    key = check_slug(args.episode, "episode key")
    if _record(settings, key) is None:
        raise DubbingError(f"Unknown episode {key!r}: submit it first (`dubbing submit FILE`).")
    path = write_rerun_request(settings.requests, key, args.from_stage)
    print(f"re-run of {key} from {args.from_stage} requested ({path.name}); the inbox sensor will queue it")
    return 0


def cmd_instance_init(args: argparse.Namespace) -> int:
    """Start-up step, before the daemon: folders, keyring, the instance's storage, the gpu pool limit."""
    from dubbing_assets.core.crypto import Keyring, cleanup_stale_temporaries, open_keyring
    from dubbing_assets.core.fsutil import file_lock

    settings = load_settings().ensure()
    if not os.environ.get("DUBBING_KEY", "").strip():
        Keyring.load_or_create(settings.keyring)  # the one place, with `keys init`, a keyring is made
    open_keyring(settings.keyring)  # readable, and DUBBING_KEY valid where it is set (as a run opens it)
    settings.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
    swept = cleanup_stale_temporaries(settings.tmp) + cleanup_stale_temporaries()  # ours, and the system's
    if swept:
        print(f"removed {len(swept)} stale plaintext temporaries left by killed processes")
    home = Path(os.environ.get("DAGSTER_HOME", "").strip() or ".")
    from dubbing_assets.orchestration.instance import GPU_POOL

    with file_lock(home / ".dubbing-init.lock"):  # concurrent inits create the storage once
        _runs(create=True).prepare(args.gpu_slots)
    print(f"instance ready: DUBBING_HOME={settings.home}, pool {GPU_POOL}={args.gpu_slots}")
    return 0


def register(sub: argparse._SubParsersAction) -> dict[str, Any]:
    """Add the run-facing subcommands to the `dubbing` parser; returns name -> handler."""
    p = sub.add_parser("submit", help="validate a file and place it in the inbox with options")
    p.add_argument("file")
    p.add_argument("--series")
    p.add_argument("--episode")
    p.add_argument("--to", default="en", help="target language (default en)")
    p.add_argument("--owner")
    p.add_argument("--mode", choices=["low", "high"], default="low")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--public", action="store_true", help="library visibility public (default private)")
    p = sub.add_parser("status", help="episodes, their runs and outputs")
    p.add_argument("episode", nargs="?")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("wait", help="wait for an episode's run: exit 0 success, 1 failure, 2 timeout")
    p.add_argument("episode")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--poll", type=float, default=1.0, help="seconds between looks at the run (default 1)")
    p = sub.add_parser("cancel", help="cancel an episode's queued or running runs")
    p.add_argument("episode")
    p = sub.add_parser("rerun", help="re-run an episode from a stage")
    p.add_argument("episode")
    p.add_argument("--from", dest="from_stage", choices=STAGES, required=True)
    p = sub.add_parser("instance", help="instance set-up")
    isub = p.add_subparsers(dest="instance_cmd", required=True)
    pi = isub.add_parser("init", help="create folders and keyring; set the gpu pool limit")
    pi.add_argument("--gpu-slots", type=int, default=1)
    handlers = {"submit": cmd_submit, "status": cmd_status, "wait": cmd_wait, "cancel": cmd_cancel,
                "rerun": cmd_rerun, "instance": cmd_instance_init}
    for name, parser in sub.choices.items():
        if name in handlers:
            parser.set_defaults(handler=name)
    pi.set_defaults(handler="instance")
    return handlers
