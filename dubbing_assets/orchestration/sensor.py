"""The inbox sensor: the one and only way work enters the system.

Inbox files, `dubbing submit` options, `dubbing rerun` requests and edited
review files all become run requests here and nowhere else (a test enforces
it). Run tags come from `tags.run_tags`; queue limits live in dagster.yaml.
"""


import contextlib
import dataclasses
import functools
import json
import time
from collections.abc import Callable

import dagster as dg
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

from dubbing_assets.core.contracts import EpisodeRecord
from dubbing_assets.core.inbox import (
    InboxScanner,
    ReadyEpisode,
    read_episode_record,
    scan_reviews,
    write_episode_record,
)
from dubbing_assets.core.requests import (
    STAGES,
    SubmitOptions,
    archive,
    pending_reruns,
    read_submit_request,
    stages_from,
    submit_request_path,
)
from dubbing_assets.core.safepath import is_slug
from dubbing_assets.core.settings import Settings, load_settings
from dubbing_assets.errors import DubbingError
from dubbing_assets.orchestration.jobs import dub_episode_high_job, dub_episode_job
from dubbing_assets.orchestration.partitions import episodes
from dubbing_assets.orchestration.tags import run_tags


def _job_name(mode: str) -> str:
    return dub_episode_high_job.name if mode == "high" else dub_episode_job.name


@dg.sensor(
    name="inbox_sensor",
    jobs=[dub_episode_job, dub_episode_high_job],
    # The daemon's sensor loop runs every 5 s at most; an interval of 5 would be measured from the end of
    # the previous tick, come up a little short on the next loop and skip it: one tick every 10 s (the bench
    # saw 9.5-10 s from a submit to its run). 1 s lets every loop tick.
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches DUBBING_HOME/inbox, request files and review edits; the only enqueue path.",
)
def inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    started = time.monotonic()
    settings = load_settings().ensure()
    scanner = InboxScanner(settings.inbox, settings.state / "inbox.sqlite", settings.quarantine,
                           cap=settings.sensor_max_requests, stable_ticks=settings.inbox_stable_ticks,
                           settle_s=settings.inbox_settle_s)
    run_requests: list[dg.RunRequest] = []
    new_keys: list[str] = []
    try:
        scan = scanner.scan()
        for rejected in scan.rejected:
            context.log.warning(f"quarantined {rejected.relpath!r}: {rejected.reason} (moved to {rejected.moved_to})")
        for collision in scan.collisions:
            context.log.warning(f"episode key collision: {collision}")
        known = set(context.instance.get_dynamic_partitions(episodes.name))

        def partition(key: str) -> None:
            if key not in known:
                new_keys.append(key)
                known.add(key)

        for ep in scan.ready:
            run_requests.append(_ready_request(context, settings, ep))
            partition(ep.key)
            scanner.mark_requested(ep)
            context.log.info(f"{'changed' if ep.changed else 'new'} episode {ep.key} from {ep.relpath!r}")
        run_requests += _asked_again(context, settings, scanner, {r.run_key for r in run_requests}, partition)
        for key in scan.unchanged:
            _consume_submit_request(settings, key)  # same content again: nothing to run, the request is done
        run_requests += _reruns_and_reviews(context, settings, scanner, known, len(run_requests))
    finally:
        scanner.close()
    elapsed = time.monotonic() - started
    if run_requests or scan.rejected:
        context.log.info(f"tick: {len(run_requests)} requests, {scan.waiting} waiting, {scan.hashing} being hashed, "
                         f"{scan.deferred} deferred, "
                         f"{len(scan.rejected)} quarantined, {scan.seen} already seen, {elapsed:.2f}s")
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[episodes.build_add_request(new_keys)] if new_keys else None,
        skip_reason=None if run_requests else
        f"nothing new ({scan.seen} seen, {scan.waiting} waiting for a stable size, {scan.hashing} being hashed, "
        f"{scan.deferred} deferred)",
    )


def _ready_request(context: dg.SensorEvaluationContext, settings: Settings, ep: ReadyEpisode) -> dg.RunRequest:
    """A settled inbox file: its options (its submit request, else its last run's, else the defaults),
    its episode record, and its run request."""
    request_path = submit_request_path(settings.requests, ep.key)
    try:
        opts = read_submit_request(settings.requests, ep.key)
    except (ValueError, OSError) as exc:
        # A broken request file must not stall the inbox: set it aside, use the defaults.
        context.log.warning(f"{exc} Queuing {ep.key} with the default options.")
        with contextlib.suppress(OSError):
            archive(submit_request_path(settings.requests, ep.key), outcome="failed")
        opts = None
    if opts is not None and not opts.is_for(ep.relpath, ep.fingerprint):
        # The options were written for another file under this key: leave them for that file.
        context.log.warning(f"the submit request for {ep.key} names {opts.relpath!r}, not {ep.relpath!r}; "
                            "it is left for that file")
        opts, request_path = None, None
    opts = opts or _previous_options(settings, ep.key) or SubmitOptions(
        owner=settings.owner, target_lang=settings.target_lang)
    write_episode_record(settings.episodes, EpisodeRecord(
        key=ep.key, series=ep.series, source=ep.relpath, fingerprint=ep.fingerprint, size=ep.size,
        sidecars=tuple(ep.sidecars), owner=opts.owner, mode=opts.mode, target_lang=opts.target_lang,
        priority=opts.priority, visibility=opts.visibility, submitted_at=opts.submitted_at,
        last_run_key=ep.run_key))
    if request_path is not None:
        _consume_submit_request(settings, ep.key)
    return _episode_request(ep, opts)


def _asked_again(context: dg.SensorEvaluationContext, settings: Settings, scanner: InboxScanner, asked: set[str],
                 partition: Callable[[str], None]) -> list[dg.RunRequest]:
    """Requests of earlier ticks stay pending until Dagster holds their run: a tick result that was lost
    (gRPC timeout, daemon restart) is asked again here. The same run key is never run twice: the
    daemon skips a request whose run key this sensor already has a run for."""
    out: list[dg.RunRequest] = []
    for ep in scanner.unconfirmed():
        if ep.run_key in asked:
            continue
        if _run_exists(context, ep.run_key):
            scanner.confirm(ep.run_key)
            continue
        opts = _previous_options(settings, ep.key) or SubmitOptions(
            owner=settings.owner, target_lang=settings.target_lang)
        partition(ep.key)
        out.append(_episode_request(ep, opts))
        context.log.warning(f"episode {ep.key}: the request of an earlier tick has no run yet "
                            "(that tick's result was lost); asking again")
    return out


def _reruns_and_reviews(context: dg.SensorEvaluationContext, settings: Settings, scanner: InboxScanner, known: set[str],
                        already: int) -> list[dg.RunRequest]:
    """`dubbing rerun` requests (within what is left of the tick's cap) and edited review files."""
    out: list[dg.RunRequest] = []
    budget = max(0, settings.sensor_max_requests - already)
    for path in pending_reruns(settings.requests)[:budget]:
        request = _rerun_request(path, known, settings)
        archive(path, outcome="done" if request else "failed")
        if request:
            out.append(request)
    for key, stage, path in scan_reviews(scanner.db, settings.review):
        if key in known:
            context.log.info(f"review edit {path.name} for {key}: re-running from {stage}")
            out.append(_selection_request(key, stage, f"review:{key}:{stage}:{path.stat().st_mtime_ns}", settings))
    return out


def _episode_request(ep, opts: SubmitOptions) -> dg.RunRequest:
    return dg.RunRequest(run_key=ep.run_key, partition_key=ep.key, job_name=_job_name(opts.mode),
                         tags=run_tags(mode=opts.mode, owner=opts.owner, priority=opts.priority, episode=ep.key))


def _run_exists(context: dg.SensorEvaluationContext, run_key: str) -> bool:
    """Whether the instance holds this sensor's run for the run key (what the daemon's dedup reads)."""
    runs = context.instance.get_run_records(
        filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key, SENSOR_NAME_TAG: context.sensor_name or "inbox_sensor"}),
        limit=1)
    return bool(runs)


def _record(settings, key: str) -> EpisodeRecord | None:
    if not is_slug(key):
        return None
    try:
        return read_episode_record(settings.episodes, key)
    except DubbingError:  # a damaged record: the episode is queued again with the defaults
        return None


def _previous_options(settings, key: str) -> SubmitOptions | None:
    """A changed file dropped straight into the inbox keeps the options it was submitted with."""
    record = _record(settings, key)
    if not record:
        return None
    try:
        return SubmitOptions(owner=record.owner, mode=record.mode, target_lang=record.target_lang,
                             priority=record.priority, visibility=record.visibility).validate()
    except (TypeError, ValueError):
        return None


def _consume_submit_request(settings, key: str) -> None:
    """Archive the submit request: `dubbing wait` waits while one is pending."""
    path = submit_request_path(settings.requests, key)
    if path.exists():
        with contextlib.suppress(OSError):
            archive(path, outcome="done")


def _note_run_key(settings, key: str, run_key: str) -> None:
    """Remember the latest run asked for this episode, so `dubbing wait` follows that one."""
    record = _record(settings, key)
    if record is not None:
        write_episode_record(settings.episodes, dataclasses.replace(record, last_run_key=run_key))


@functools.cache
def _asset_graph():
    from dubbing_assets.orchestration.assets import render, understand

    return dg.load_assets_from_modules([understand, render])


def _downstream(stage: str) -> list[dg.AssetKey]:
    """The stage and every asset that depends on it, from the asset graph itself."""
    stages_from(stage)  # validates the name with a clear error
    graph = _asset_graph()
    selected = dg.AssetSelection.assets(stage).downstream().resolve(graph)
    return sorted(selected, key=lambda k: STAGES.index(k.path[-1]))


def _selection_request(key: str, stage: str, run_key: str, settings) -> dg.RunRequest:
    record = _record(settings, key)
    mode = record.mode if record else "low"
    _note_run_key(settings, key, run_key)
    return dg.RunRequest(
        run_key=run_key,
        partition_key=key,
        job_name=_job_name(mode),
        asset_selection=_downstream(stage),
        tags=run_tags(mode=mode, owner=record.owner if record else settings.owner,
                      priority=record.priority if record else 0, episode=key),
    )


def _rerun_request(path, known: set[str], settings) -> dg.RunRequest | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        key, stage = data["episode"], data["from"]
        if key not in known:
            return None
        return _selection_request(key, stage, f"rerun:{data['id']}", settings)
    except (ValueError, KeyError, TypeError, OSError):
        return None
