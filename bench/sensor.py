"""Wall time of one inbox-sensor tick, against a bare walk of the same inbox.

Run: ``python bench/sensor.py [--sizes 1000,10000,50000] [--new 1000] [--repeat 3]``

Each tick is the real thing: ``inbox_sensor.evaluate_tick`` with a context
from ``build_sensor_context`` on a temporary Dagster instance (so it also
reads the instance's dynamic partitions and resolves its run requests). The
inbox holds tiny Matroska files (valid magic, distinct bytes) in series
folders of 500.

Cases, all from one run:

- N already-seen files (N from ``--sizes``): every file was requested once
  and its episode is a registered partition, so the tick finds nothing to do;
- ``--new`` new files among 10,000 (9,000 seen): the tick on which they
  appear, and the next one, on which they are stable, hashed (up to the
  sensor's per-tick cap) and requested.

Baseline: ``os.scandir`` over the same two folder levels plus one ``stat``
per file, i.e. the least any scanner must do. Ratios are tick / baseline.
Targets: < 2 s for 10,000 seen, < 5 s with 1,000 new.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PER_SERIES = 500
MKV_MAGIC = b"\x1a\x45\xdf\xa3"


def make_files(inbox: Path, start: int, stop: int, prefix: str = "e") -> None:
    for i in range(start, stop):
        folder = inbox / f"series-{i // PER_SERIES:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{prefix}{i:06d}.mkv").write_bytes(MKV_MAGIC + i.to_bytes(8, "big") * 4)


def bare_walk(inbox: Path) -> int:
    """The baseline: list both levels and stat every file."""
    n = 0
    with os.scandir(inbox) as series_it:
        for series in series_it:
            if series.is_dir(follow_symlinks=False):
                with os.scandir(series.path) as files:
                    for entry in files:
                        entry.stat(follow_symlinks=False)
                        n += 1
    return n


def mark_all_seen(settings, instance) -> int:
    """Bring the state up to date through the scanner API (one transaction, no per-file fsync)."""
    from dubbing_assets.core.inbox import InboxScanner

    scanner = InboxScanner(settings.inbox, settings.state / "inbox.sqlite", settings.quarantine, cap=10**9,
                           stable_ticks=1, settle_s=0)
    try:
        scanner.db.execute("PRAGMA synchronous=OFF")  # setup only; the measured ticks use the defaults
        scanner.scan()
        ready = scanner.scan().ready
        for episode in ready:
            scanner.mark_requested(episode)
    finally:
        scanner.close()
    known = set(instance.get_dynamic_partitions("episodes"))
    new_keys = [e.key for e in ready if e.key not in known]
    for i in range(0, len(new_keys), 5000):
        instance.add_dynamic_partitions("episodes", new_keys[i:i + 5000])
    return len(ready)


def one_tick(instance, defs, sensor):
    import dagster as dg

    context = dg.build_sensor_context(instance=instance, instance_ref=instance.get_ref(), definitions=defs,
                                      sensor_name=sensor.name)
    started = time.perf_counter()
    data = sensor.evaluate_tick(context)
    elapsed = time.perf_counter() - started
    for request in data.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return elapsed, data


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--new", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    tmp = Path(tempfile.mkdtemp(prefix="bench-sensor-"))
    # a file is taken on its second sighting (one unchanged tick, no settling age), so each measured
    # tick hashes the new files as it did before the settle rule: the worst case, not a waiting tick
    os.environ.update(DUBBING_HOME=str(tmp / "dubbing"), DAGSTER_HOME=str(tmp / "dagster_home"),
                      DUBBING_OWNER="bench", DUBBING_INBOX_STABLE_TICKS="1", DUBBING_INBOX_SETTLE_S="0")
    for var in ("DUBBING_INBOX", "DUBBING_SENSOR_MAX_REQUESTS"):
        os.environ.pop(var, None)
    (tmp / "dagster_home").mkdir()
    (tmp / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    logging.disable(logging.INFO)  # the sensor logs one line per requested episode

    import dagster as dg

    from dubbing_assets.core.settings import load_settings
    from dubbing_assets.definitions import defs
    from dubbing_assets.orchestration.sensor import inbox_sensor

    settings = load_settings().ensure()
    rows: list[tuple[str, int, float, float, str]] = []

    def seen_case(n: int) -> None:
        tick = timed(lambda: one_tick(instance, defs, inbox_sensor), args.repeat)
        base = timed(lambda: bare_walk(settings.inbox), args.repeat)
        rows.append((f"{n:,} seen", n, tick, base, "< 2 s" if n == 10_000 else ""))

    try:
        with dg.DagsterInstance.from_config(str(tmp / "dagster_home")) as instance:
            have = 0

            def grow(n: int) -> None:
                nonlocal have
                if n > have:
                    make_files(settings.inbox, have, n)
                    have = n
                    mark_all_seen(settings, instance)

            print(f"sqlite {sqlite3.sqlite_version}, cap {settings.sensor_max_requests} requests/tick, "
                  f"median of {args.repeat} ticks; building inboxes under {tmp} ...", flush=True)
            for n in sizes:
                if n == 10_000 and args.new:
                    # --new files among 10,000: the rest seen, then the new ones appear.
                    grow(10_000 - args.new)
                    make_files(settings.inbox, have, 10_000, prefix="new-")
                    base = timed(lambda: bare_walk(settings.inbox), args.repeat)
                    appear, first = one_tick(instance, defs, inbox_sensor)
                    stable, second = one_tick(instance, defs, inbox_sensor)
                    assert not first.run_requests
                    assert len(second.run_requests) == min(args.new, settings.sensor_max_requests)
                    rows.append((f"{args.new:,} new of 10,000: they appear", 10_000, appear, base, "< 5 s"))
                    rows.append((f"{args.new:,} new of 10,000: stable, requested", 10_000, stable, base, "< 5 s"))
                    have = 10_000
                    mark_all_seen(settings, instance)
                grow(n)
                seen_case(n)

            print(f"\n{'case':<40} {'files':>7} {'tick s':>8} {'walk s':>8} {'ratio':>7} {'us/file':>8}  target")
            for name, n, tick, base, target in rows:
                ok = "" if not target else (" ok" if tick < float(target.split()[1]) else " MISSED")
                print(f"{name:<40} {n:>7,} {tick:>8.3f} {base:>8.3f} {tick / base:>6.1f}x "
                      f"{tick / n * 1e6:>8.1f}  {target}{ok}")
            seen = [(n, tick) for name, n, tick, _, _ in rows if "seen" in name]
            if len(seen) >= 2:
                (n0, t0), (n1, t1) = seen[0], seen[-1]
                print(f"\ngrowth: {n1 / n0:.0f}x the files -> {t1 / t0:.1f}x the tick time")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
