"""Inbox scanning for the one enqueue path (the sensor calls this; no Dagster here).

The inbox is ``inbox/<series>/<file>``. Each tick `InboxScanner.scan()`:

1. walks the inbox (``os.scandir``, two levels) and compares every file's
   size and mtime with what the state database saw last tick;
2. treats a file as ready only when it was seen unchanged on `stable_ticks`
   ticks in a row after it last changed and its mtime is `settle_s` old (an
   upload keeps changing, or pauses, so it waits); an empty file is given
   `EMPTY_GRACE_S` before it is quarantined (an upload that opened the file
   but has not written yet);
3. hashes ready files that are new or changed (content sha256) and derives
   their episode key, detecting collisions; a file over `inline_bytes` is
   hashed by a background thread (`BackgroundHasher`) and taken on the tick
   after its digest is ready, so no file size can push a tick past Dagster's
   60 s budget;
4. returns at most ``cap`` ready episodes; the rest wait for the next tick.

A requested episode stays *pending* until the caller confirms that a run
with its run key exists (`unconfirmed()` / `confirm()`): a tick whose result
never reached Dagster (a gRPC timeout, a daemon crash) is asked again on the
next tick instead of being remembered as done.

State lives in SQLite under ``DUBBING_HOME/state`` rather than in the sensor
cursor, so 50,000 seen files cost one indexed table, not a huge cursor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from dubbing_assets.core.contracts import EpisodeRecord
from dubbing_assets.core.fsutil import atomic_write_json, file_sha256
from dubbing_assets.core.media import is_plain_file
from dubbing_assets.core.review import is_user_edit
from dubbing_assets.core.safepath import check_slug, safe_join, slugify
from dubbing_assets.errors import DubbingError

MEDIA_EXTENSIONS = {".mkv", ".mp4", ".m4v", ".mov", ".avi", ".webm", ".ts", ".m2ts", ".mka", ".wav", ".flac"}
SIDECAR_EXTENSIONS = {".srt", ".ass", ".ssa", ".vtt"}
UPLOAD_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".upload")
#: Audio-only files people drop in by mistake: quarantined with a reason, not ignored.
AUDIO_ONLY_EXTENSIONS = {".m4a", ".mp3", ".aac", ".opus", ".ogg", ".wma"}
#: Folders file systems and sync tools keep in a share's top level: never a series.
SYSTEM_DIRS = {".Trash", ".Trashes", ".Spotlight-V100", ".fseventsd", ".snapshot", ".snapshots", ".zfs", ".git",
               ".stfolder", ".stversions", ".sync", ".dropbox.cache", "lost+found", "@eaDir", "#recycle"}

_EPISODE_PATTERNS = [
    re.compile(r"s(\d{1,3})[ ._-]*e(\d{1,4})", re.I),
    re.compile(r"(?:^|[^a-z0-9])(?:ep?|episode)[ ._-]*(\d{1,4})(?:[^0-9]|$)", re.I),
    re.compile(r"(?:^|[ ._-])-[ ._]*(\d{1,4})(?:[ ._\[(-]|$)"),
    re.compile(r"第\s*(\d{1,4})\s*[話回集]"),  # Japanese/Chinese episode numbering: 第1話, 第１２回, 第3集
]

# Magic numbers of containers we accept; anything else is quarantined early.
_MAGICS = (b"\x1a\x45\xdf\xa3", b"RIFF", b"fLaC", b"\x47", b"OggS")


def episode_slug(filename: str) -> str:
    """`S01E02` -> `s01e02`, `Show - 03 [x].mkv` and `第３話.mkv` -> `e03`, else the slugged stem."""
    import unicodedata

    stem = unicodedata.normalize("NFKC", Path(filename).stem)  # full-width digits are digits
    for pattern in _EPISODE_PATTERNS:
        m = pattern.search(stem)
        if m:
            if len(m.groups()) == 2:
                return f"s{int(m.group(1)):02d}e{int(m.group(2)):02d}"
            return f"e{int(m.group(1)):02d}"
    return slugify(stem, max_len=50) or "episode"


def episode_key(series: str, filename: str, episode: str | None = None) -> str:
    """Stable `<series>-<episode>` key of `[a-z0-9-]` for a file; never a raw path."""
    series_slug = slugify(series, max_len=60) or "series"
    ep = slugify(episode, max_len=50) if episode else episode_slug(filename)
    key = f"{series_slug}-{ep or 'episode'}"[:119].strip("-")
    return check_slug(key, "episode key")


def looks_like_media(path: Path) -> bool:
    """Cheap sniff: a known container magic (MP4/MOV: `ftyp` at offset 4)."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        return True
    return any(head.startswith(m) for m in _MAGICS)


@dataclass
class ReadyEpisode:
    """A stable inbox file, ready for a run request."""

    key: str
    series: str
    relpath: str
    fingerprint: str
    size: int
    sidecars: list[str] = field(default_factory=list)
    changed: bool = False  # True when an earlier version of the file already ran
    #: 1 for the first content seen under this key, +1 per new content (A -> B -> A is 3 revisions),
    #: so each revision gets its own run key.
    revision: int = 1

    @property
    def run_key(self) -> str:
        return f"{self.key}:r{self.revision}:{self.fingerprint[:16]}"


@dataclass
class Rejected:
    relpath: str
    reason: str
    moved_to: str | None = None


@dataclass
class _Look:
    """What one tick's walk saw (`InboxScanner._look`), before anything is written."""

    known: dict[str, tuple] = field(default_factory=dict)
    announced: dict[str, tuple[int, int]] = field(default_factory=dict)
    present: set[str] = field(default_factory=set)
    updates: list[tuple[str, int, int]] = field(default_factory=list)
    observations: list[tuple[str, int]] = field(default_factory=list)
    stale_announcements: list[str] = field(default_factory=list)
    ready: list[tuple[str, str, os.stat_result, str | None, str | None]] = field(default_factory=list)


@dataclass
class ScanResult:
    ready: list[ReadyEpisode] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    waiting: int = 0  # files seen changing (partial uploads)
    deferred: int = 0  # ready files left for the next tick by the cap
    collisions: list[str] = field(default_factory=list)
    seen: int = 0
    #: Keys whose file was dropped in again with content already requested (nothing to run).
    unchanged: list[str] = field(default_factory=list)
    hashing: int = 0  # large files whose digest a background thread is still computing


_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
  relpath TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, stable INTEGER DEFAULT 0,
  fingerprint TEXT, key TEXT, requested TEXT);
CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, relpath TEXT, last_fp TEXT, revision INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS observed (relpath TEXT PRIMARY KEY, unchanged INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS pending (run_key TEXT PRIMARY KEY, key TEXT, relpath TEXT, episode TEXT,
  requested_at REAL);
CREATE TABLE IF NOT EXISTS announced (relpath TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER);
"""


#: An empty file younger than this is an upload that has not written yet, not a bad file.
EMPTY_GRACE_S = 600.0


class _Changed(Exception):
    """The file changed while it was being hashed: its digest says nothing."""


class BackgroundHasher:
    """Content SHA-256 of large inbox files, computed off the sensor tick.

    Hashing runs at about 200 MiB/s, so one 13 GB episode (or twenty 4 GB ones) would take a tick past
    Dagster's 60 s budget. Files up to `inline_bytes` are hashed on the spot (a second or less); larger
    ones are handed to one worker thread, and `digest()` returns None until their digest is ready for
    exactly that size and mtime. The thread lives in the process that evaluates the sensor (the code
    server), so a digest survives from one tick to the next; after a restart it is computed again.
    """

    def __init__(self, inline_bytes: int = 64 * 2**20, workers: int = 1) -> None:
        self.inline_bytes = inline_bytes
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._jobs: dict[str, tuple[tuple[int, int], Future]] = {}
        self._lock = threading.Lock()

    def digest(self, path: Path, st: os.stat_result) -> str | None:
        """The file's SHA-256, or None while a background thread is still on it."""
        if st.st_size <= self.inline_bytes:
            return file_sha256(path)
        ident, name = (st.st_size, st.st_mtime_ns), str(path)
        with self._lock:
            job = self._jobs.get(name)
            if job is not None and job[0] != ident:
                job[1].cancel()
                job = None
            if job is None:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="inbox-hash")
                self._jobs[name] = (ident, self._pool.submit(self._hash, path, ident))
                return None
            if not job[1].done():
                return None
            del self._jobs[name]
        try:
            return job[1].result()
        except (_Changed, FileNotFoundError):
            return None  # the next scan sees the change (or that it is gone)

    @staticmethod
    def _hash(path: Path, ident: tuple[int, int]) -> str:
        digest = file_sha256(path)
        st = path.stat()
        if (st.st_size, st.st_mtime_ns) != ident:
            raise _Changed(str(path))
        return digest


DEFAULT_HASHER = BackgroundHasher()


class InboxScanner:
    """Scans an inbox and remembers what it saw in `state_db`."""

    def __init__(self, inbox: Path, state_db: Path, quarantine: Path, *, cap: int = 20, stable_ticks: int = 2,
                 settle_s: float = 10.0, hasher: BackgroundHasher | None = None) -> None:
        self.inbox = inbox
        self.hasher = hasher or DEFAULT_HASHER
        self.quarantine = quarantine
        self.cap = cap
        self.stable_ticks = max(1, stable_ticks)
        self.settle_s = max(0.0, settle_s)
        state_db.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(state_db, timeout=30)
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def _walk(self) -> Iterator[tuple[str, str, os.stat_result, str | None]]:
        """(series dir name, relpath, lstat, why it cannot be an episode or None) of every candidate file.

        Media files are candidates; so are a symbolic link and an audio-only file with a media-like name,
        which are quarantined with their reason once they stop changing, instead of being ignored without
        a word (the sender would wait forever)."""
        if not self.inbox.is_dir():
            return
        with os.scandir(self.inbox) as series_it:
            for series in series_it:
                if series.name in SYSTEM_DIRS or not series.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(series.path) as files:
                    for entry in files:
                        name = entry.name
                        # a leading dot is a title too (".hack//Sign"); "._x" is macOS's metadata for x
                        if name.startswith("._") or name.endswith(UPLOAD_SUFFIXES):
                            continue
                        suffix = Path(name).suffix.lower()
                        if suffix not in MEDIA_EXTENSIONS and suffix not in AUDIO_ONLY_EXTENSIONS:
                            continue
                        relpath = f"{series.name}/{name}"
                        if entry.is_symlink():
                            yield series.name, relpath, entry.stat(follow_symlinks=False), (
                                "it is a symbolic link; the inbox never follows links (one could point at any "
                                "file on this machine): copy the file itself into the inbox")
                        elif not entry.is_file(follow_symlinks=False):
                            continue
                        elif suffix in AUDIO_ONLY_EXTENSIONS:
                            yield series.name, relpath, entry.stat(follow_symlinks=False), (
                                f"{suffix} is an audio-only format the inbox does not take; episodes are "
                                f"{', '.join(sorted(MEDIA_EXTENSIONS))} (remux the audio into .mka to dub it alone)")
                        else:
                            yield series.name, relpath, entry.stat(follow_symlinks=False), None

    def _key_for(self, series: str, relpath: str) -> tuple[str, bool]:
        return _key_for(self.db, series, relpath)

    def scan(self) -> ScanResult:
        """One tick: look at every inbox file, record what changed, and take the files that have settled.

        Three steps, each on its own: `_look` (the walk, nothing written), `_record` (the files table in
        one batch) and `_take` (each settled file: checked, hashed, keyed, and handed to the sensor).
        """
        result = ScanResult()
        look = self._look(result)
        self._record(look)
        for row in look.ready:
            self._take(result, *row)
        self.db.commit()
        return result

    def _look(self, result: ScanResult) -> _Look:
        """Walk the inbox against what the last ticks saw; counts waiting and seen files in `result`."""
        look = _Look(known={row[0]: row[1:] for row in self.db.execute(
            "SELECT relpath, size, mtime_ns, stable, fingerprint, requested FROM files")})
        observed = dict(self.db.execute("SELECT relpath, unchanged FROM observed"))
        look.announced = {row[0]: (row[1], row[2]) for row in self.db.execute(
            "SELECT relpath, size, mtime_ns FROM announced")}
        now = time.time()
        for series, relpath, st, refusal in self._walk():
            if not _encodable(relpath):
                # SQLite (and every key) needs text: quarantine now, never store the name.
                result.rejected.append(self._quarantine(
                    relpath, "the file name is not valid UTF-8; rename it and drop it in again"))
                continue
            look.present.add(relpath)
            prev = look.known.get(relpath)
            changed = prev is None or prev[0] != st.st_size or prev[1] != st.st_mtime_ns
            if relpath in look.announced:
                taken = not changed and prev[4] and prev[4] == prev[3] and prev[2]
                if look.announced[relpath] == (st.st_size, st.st_mtime_ns) and not taken:
                    # Written whole by `dubbing submit` (copied beside, then renamed) and not touched since:
                    # nothing is still uploading it, so it is taken on this tick, without settling.
                    if changed:
                        look.updates.append((relpath, st.st_size, st.st_mtime_ns))
                    look.ready.append((series, relpath, st, prev[4] if prev else None, refusal))
                    continue
                look.stale_announcements.append(relpath)  # taken, or changed since: settles like any drop
            if changed:
                # New or still changing: remember and wait one tick.
                look.updates.append((relpath, st.st_size, st.st_mtime_ns))
                result.waiting += 1
                continue
            size, mtime, stable, fingerprint, requested = prev
            if requested and requested == fingerprint and stable:
                result.seen += 1
                continue
            unchanged = observed.get(relpath, 0) + 1
            look.observations.append((relpath, unchanged))
            if not self._settled(st, unchanged, now):
                result.waiting += 1  # not settled yet: an upload may still be writing (or about to)
                continue
            look.ready.append((series, relpath, st, requested, refusal))
        return look

    def _settled(self, st: os.stat_result, unchanged_ticks: int, now: float) -> bool:
        age = now - st.st_mtime
        return not (unchanged_ticks < self.stable_ticks or (self.settle_s and age < self.settle_s)
                    or (st.st_size == 0 and age < EMPTY_GRACE_S))

    def _record(self, look: _Look) -> None:
        """What `_look` saw, into the files, observed and announced tables (committed with the tick)."""
        if look.updates:
            self.db.executemany(
                "INSERT INTO files(relpath,size,mtime_ns,stable) VALUES(?,?,?,0) "
                "ON CONFLICT(relpath) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns, stable=0",
                look.updates)
            self.db.executemany("DELETE FROM observed WHERE relpath=?", [(u[0],) for u in look.updates])
        if look.observations:
            self.db.executemany("INSERT OR REPLACE INTO observed(relpath, unchanged) VALUES(?,?)",
                                look.observations)
        stale = look.stale_announcements + [r for r in look.announced if r not in look.present]
        if stale:
            self.db.executemany("DELETE FROM announced WHERE relpath=?", [(r,) for r in stale])
        gone = [r for r in look.known if r not in look.present]
        if gone:
            self.db.executemany("DELETE FROM files WHERE relpath=?", [(r,) for r in gone])
            self.db.executemany("DELETE FROM observed WHERE relpath=?", [(r,) for r in gone])

    def _take(self, result: ScanResult, series: str, relpath: str, st: os.stat_result,
              requested: str | None, refusal: str | None) -> None:
        """A settled file: quarantined, deferred (over the cap), still hashing, seen before, or ready."""
        if refusal:
            result.rejected.append(self._quarantine(relpath, refusal))
            return
        if len(result.ready) >= self.cap:
            result.deferred += 1
            return
        path = self.inbox / relpath
        try:
            if st.st_size == 0:
                raise ValueError("the file is empty (0 bytes); upload it again")
            if not looks_like_media(path):
                raise ValueError("the file is not a video or audio container (unknown format)")
            fingerprint = self.hasher.digest(path, st)
            if fingerprint is None:
                result.hashing += 1
                return
            key, collided = self._key_for(series, relpath)
        except (OSError, ValueError) as exc:
            result.rejected.append(self._quarantine(relpath, str(exc)))
            return
        if requested and fingerprint == requested:
            # Touched or copied over with the same bytes: already requested, nothing to do.
            self.db.execute("UPDATE files SET stable=1, fingerprint=? WHERE relpath=?", (fingerprint, relpath))
            result.seen += 1
            result.unchanged.append(key)
            return
        row = self.db.execute("SELECT last_fp, revision FROM keys WHERE key=?", (key,)).fetchone()
        if row is not None and row[0] == fingerprint:
            # The same content was already requested under this key (e.g. deleted and dropped in again).
            self.db.execute("UPDATE files SET stable=1, fingerprint=?, key=?, requested=? WHERE relpath=?",
                            (fingerprint, key, fingerprint, relpath))
            result.seen += 1
            result.unchanged.append(key)
            return
        if collided:
            result.collisions.append(f"{relpath} -> {key} (base key taken by another file)")
        self.db.execute("UPDATE files SET stable=1, fingerprint=?, key=? WHERE relpath=?",
                        (fingerprint, key, relpath))
        self.db.execute("INSERT OR IGNORE INTO keys(key, relpath) VALUES(?,?)", (key, relpath))
        stem = Path(relpath).stem
        sidecars = sorted(f"{series}/{p.name}" for p in (self.inbox / series).glob(f"{glob_escape(stem)}.*")
                          if p.suffix.lower() in SIDECAR_EXTENSIONS and is_plain_file(p))
        result.ready.append(ReadyEpisode(key=key, series=slugify(series) or "series", relpath=relpath,
                                         fingerprint=fingerprint, size=st.st_size, sidecars=sidecars,
                                         changed=bool(requested) or (row is not None and row[0] is not None),
                                         revision=(row[1] or 0) + 1 if row is not None else 1))

    def mark_requested(self, episode: ReadyEpisode) -> None:
        """Record that a run was requested for this content (same file again does nothing).

        The request stays pending until `confirm()`: an earlier pending request for the same episode key
        is superseded (its content is no longer the file's).
        """
        self.db.execute("UPDATE files SET requested=? WHERE relpath=?", (episode.fingerprint, episode.relpath))
        self.db.execute("UPDATE keys SET last_fp=?, revision=? WHERE key=?",
                        (episode.fingerprint, episode.revision, episode.key))
        self.db.execute("DELETE FROM pending WHERE key=? AND run_key<>?", (episode.key, episode.run_key))
        self.db.execute("INSERT OR REPLACE INTO pending(run_key, key, relpath, episode, requested_at) "
                        "VALUES(?,?,?,?,?)", (episode.run_key, episode.key, episode.relpath,
                                              json.dumps(dataclasses.asdict(episode)), time.time()))
        self.db.commit()

    def unconfirmed(self) -> list[ReadyEpisode]:
        """Requested episodes whose run has not been confirmed yet, oldest first.

        A pending request whose file is gone or holds other content by now is dropped: its run would
        read a file that no longer exists (the new content gets its own request).
        """
        out: list[ReadyEpisode] = []
        stale: list[str] = []
        for run_key, relpath, episode in self.db.execute(
                "SELECT p.run_key, p.relpath, p.episode FROM pending p ORDER BY p.requested_at").fetchall():
            row = self.db.execute("SELECT requested FROM files WHERE relpath=?", (relpath,)).fetchone()
            ep = ReadyEpisode(**json.loads(episode))
            if row is None or row[0] != ep.fingerprint:
                stale.append(run_key)
                continue
            out.append(ep)
        if stale:
            self.db.executemany("DELETE FROM pending WHERE run_key=?", [(k,) for k in stale])
            self.db.commit()
        return out

    def confirm(self, run_key: str) -> None:
        """A run with this run key exists: the request reached Dagster and is no longer pending."""
        self.db.execute("DELETE FROM pending WHERE run_key=?", (run_key,))
        self.db.commit()

    def _quarantine(self, relpath: str, reason: str) -> Rejected:
        src = self.inbox / relpath
        series, name = relpath.split("/", 1)
        folder = self.quarantine / (slugify(series) or "series")
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        stem, suffix = slugify(Path(name).stem) or "file", Path(name).suffix.lower()[:8]
        dest = safe_join(folder, f"{stamp}-{stem}{suffix}")
        n = 1
        while dest.exists() or dest.with_name(dest.name + ".reason.txt").exists():
            # Never overwrite an earlier quarantined file (same slug within the same second).
            n += 1
            dest = safe_join(folder, f"{stamp}-{stem}-{n}{suffix}")
        moved: str | None = None
        try:
            shutil.move(str(src), dest)
            moved = str(dest)
        except OSError:
            pass
        shown = os.fsencode(relpath).decode("utf-8", "backslashreplace")
        reason_file = dest.with_name(dest.name + ".reason.txt")
        # the key the file would have had, so `dubbing wait KEY` finds its own reason and no other's
        key_line = ""
        if _encodable(relpath):
            with contextlib.suppress(DubbingError, ValueError):  # a name no key can be made of: no key line
                key_line = f"key: {_key_for(self.db, series, relpath)[0]}\n"
        reason_file.write_text(f"file: {shown}\n{key_line}reason: {reason}\nwhen: {stamp}\n", encoding="utf-8")
        if _encodable(relpath):
            self.db.execute("DELETE FROM files WHERE relpath=?", (relpath,))
        return Rejected(relpath=shown, reason=reason, moved_to=moved)


def _key_for(db: sqlite3.Connection, series: str, relpath: str) -> tuple[str, bool]:
    """(episode key, collided): the base key unless another file holds it, then base + a suffix of the path."""
    base = episode_key(series, Path(relpath).name)
    row = db.execute("SELECT relpath FROM keys WHERE key=?", (base,)).fetchone()
    if row is None or row[0] == relpath:
        return base, False
    suffix = hashlib.sha1(relpath.encode()).hexdigest()[:6]
    return check_slug(f"{base[:110]}-{suffix}", "episode key"), True


def reserve_key(state_db: Path, series_dir: str, relpath: str) -> str:
    """The episode key the sensor will give `relpath` (inbox-relative), reserved for it now.

    `dubbing submit` calls this before it copies the file, so the key it prints and writes its
    request under is the one the sensor uses, suffix included, even when another file of the series
    slugs alike; the reservation is one SQLite transaction on the sensor's own state database, so a
    tick and a submit never hand the same key to two files.
    """
    state_db.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(state_db, timeout=30, isolation_level=None)
    try:
        db.executescript(_SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        key, _ = _key_for(db, series_dir, relpath)
        db.execute("INSERT OR IGNORE INTO keys(key, relpath) VALUES(?,?)", (key, relpath))
        db.execute("COMMIT")
        return key
    finally:
        db.close()


def announce_file(state_db: Path, relpath: str, st: os.stat_result) -> None:
    """Tell the sensor that `relpath` (inbox-relative) is complete as it stands (size and mtime of `st`).

    `dubbing submit` calls this after it has copied the file beside its place and renamed it in: no upload
    can still be writing it, so the sensor takes it on its next tick instead of waiting for it to settle
    (two unchanged ticks and DUBBING_INBOX_SETTLE_S: 10-20 s). A file changed after this is stat'ed
    differently and settles like any other drop.
    """
    db = sqlite3.connect(state_db, timeout=30, isolation_level=None)
    try:
        db.executescript(_SCHEMA)
        db.execute("INSERT OR REPLACE INTO announced(relpath, size, mtime_ns) VALUES(?,?,?)",
                   (relpath, st.st_size, st.st_mtime_ns))
    finally:
        db.close()


def _encodable(text: str) -> bool:
    """False for names that came off the disk as undecodable bytes (surrogate escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]])", r"[\1]", text)


def _record_path(records_dir: Path, key: str) -> Path:
    return safe_join(records_dir, f"{check_slug(key, 'episode key')}.json")


def write_episode_record(records_dir: Path, record: EpisodeRecord) -> Path:
    """The episode record the stages read (source path, options); atomic."""
    path = _record_path(records_dir, record.key)
    atomic_write_json(path, record.to_dict())
    return path


def read_episode_record(records_dir: Path, key: str) -> EpisodeRecord | None:
    """The sensor's record of an episode, or None when it has none (the one reader: sensor, CLI, stages)."""
    path = _record_path(records_dir, key)
    if not path.exists():
        return None
    try:
        return EpisodeRecord.from_dict({"key": key, **json.loads(path.read_text(encoding="utf-8"))})
    except (ValueError, TypeError) as exc:
        raise DubbingError(f"The episode record {path.name} is damaged ({exc}); submit the file again "
                           "(`dubbing submit FILE`) to write a new one.") from exc


def source_file(inbox: Path, record: EpisodeRecord) -> Path:
    """The inbox file a record names (``<series folder>/<file>``), never outside the inbox."""
    parts = record.source.split("/")
    if len(parts) != 2:
        raise DubbingError(f"Episode record {record.key} names an invalid source {record.source!r}.")
    return safe_join(inbox, *parts)


REVIEW_FILES = {"translation.json": "translation"}


def scan_reviews(db: sqlite3.Connection, review_dir: Path) -> list[tuple[str, str, Path]]:
    """Edited transcripts/translations under ``review/<key>/``: (key, stage, file) when changed."""
    db.execute("CREATE TABLE IF NOT EXISTS reviews (path TEXT PRIMARY KEY, mtime_ns INTEGER)")
    changed: list[tuple[str, str, Path]] = []
    if not review_dir.is_dir():
        return changed
    for folder in sorted(review_dir.iterdir()):
        if not folder.is_dir() or not folder.name.replace("-", "").isalnum():
            continue
        for name, stage in REVIEW_FILES.items():
            path = folder / name
            if not path.is_file():
                continue
            mtime = path.stat().st_mtime_ns
            row = db.execute("SELECT mtime_ns FROM reviews WHERE path=?", (str(path),)).fetchone()
            if row is None or row[0] != mtime:
                db.execute("INSERT OR REPLACE INTO reviews(path, mtime_ns) VALUES(?,?)", (str(path), mtime))
                if is_user_edit(path):
                    changed.append((folder.name, stage, path))
    db.commit()
    return changed
