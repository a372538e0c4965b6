"""Whether a store and a results dir can be used, found in a second before anything runs: a
tracking server that is down, a damaged SQLite file, a read-only or full results dir. Each is one
line (UserError) naming the path and the fix, never minutes of retries or a traceback."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from pathlib import Path

from svdablate.errors import UserError
from svdablate.study.manifest import STUDIES_DIR, TUNE_DIR

PROBE_TIMEOUT_S = 5.0  # the tracking server's answer to one request
PROBE_BYTES = 1 << 20  # written (and removed) in a results dir before a study runs there
MIN_FREE_BYTES = 16 << 20  # less free space than this is a full disk for a study
SQLITE_MAGIC, SQLITE_HEADER_BYTES = b"SQLite format 3\x00", 100


def probe_server(uri: str, fix: str) -> None:
    """One HTTP request to the tracking server (`/health`, a few seconds at most); UserError
    naming `fix` when it does not answer. MLflow's own client retries for minutes instead."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return  # it answers (a proxy's 404 or 401 is the client's to report)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        reason = getattr(reason, "strerror", None) or reason
        raise UserError(f"the MLflow tracking server at {uri} is down ({reason}): {fix}") from None


def check_readable_store(uri: str) -> None:
    """A started study's store answers and is whole, checked in a second before anything reads
    it; UserError naming the fix otherwise (a server that is down, a damaged SQLite file)."""
    if uri.startswith(("http://", "https://")):
        probe_server(uri, "start it again (or pass the --tracking-uri it moved to), then retry")
        return
    if not uri.startswith("sqlite:///"):
        return
    db = Path(uri[len("sqlite:///") :].split("?", 1)[0])
    if not db.exists():
        raise UserError(
            f"no MLflow store at {db}: pass the --results-dir or --tracking-uri of the study"
        )
    problem = sqlite_damage(db)
    if problem:
        raise UserError(
            f"the MLflow store {db} is damaged ({problem}): restore it from a backup (or move it "
            "away and pass another --results-dir to start afresh)"
        )


def sqlite_damage(db: Path) -> str | None:
    """What is wrong with the SQLite file `db` (not a database, truncated), None when its header
    and schema read. O(1): the header's page count against the file's size (SQLite format,
    §1.3), then its schema table; damage inside a page is MLflow's to report."""
    try:
        with open(db, "rb") as handle:
            header = handle.read(SQLITE_HEADER_BYTES)
        size = db.stat().st_size
    except OSError as exc:
        return exc.strerror or str(exc)
    if len(header) < SQLITE_HEADER_BYTES or not header.startswith(SQLITE_MAGIC):
        return "not an SQLite database"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    counted = header[24:28] == header[92:96]  # the page count is valid for this version
    if counted and size < pages * page_size:
        return f"truncated: {size} of its {pages * page_size} bytes"
    try:
        uri = f"{db.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
            connection.execute("select count(*) from sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None


def check_writable(results_dir: str | os.PathLike, uri: str) -> None:
    """A study about to run can write its results dir (manifest, spool, Tune's state) and its
    SQLite store, with room to spare; UserError naming the path and the fix otherwise (a
    read-only mount, `chattr +i`, a full disk)."""
    folder = Path(results_dir).resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)  # a study on a tracking server makes it here
    except OSError as exc:
        raise UserError(disk_problem(folder, exc)) from None
    targets = [folder, *(p for p in (folder / STUDIES_DIR, folder / TUNE_DIR) if p.is_dir())]
    for target in targets:
        probe_write(target)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :].split("?", 1)[0])
        if db.parent not in targets:
            probe_write(db.parent)
        if db.exists() and not os.access(db, os.W_OK):
            raise UserError(
                f"the MLflow store {db} is read-only: make it writable, or pass another "
                "--results-dir / --tracking-uri"
            )


def probe_write(folder: Path) -> None:
    """Write (and remove) PROBE_BYTES in `folder`, then check its free space; UserError naming
    the folder when it is read-only or (nearly) full."""
    probe = folder / f".svdablate-write-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise UserError(disk_problem(folder, exc)) from None
    probe.unlink(missing_ok=True)
    free = free_bytes(folder)
    if free < MIN_FREE_BYTES:
        raise UserError(
            f"{folder} has {free / 2**20:.1f} MiB free; a study needs at least "
            f"{MIN_FREE_BYTES / 2**20:.0f} MiB there (its store, checkpoints, Tune's state): "
            "free some space, or pass another --results-dir"
        )


def free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def disk_problem(path: Path, exc: OSError) -> str:
    """One line for an OSError writing under `path`: which path, what is wrong, the fix."""
    if exc.errno == errno.ENOSPC:
        existing = next(p for p in (path, *path.parents) if p.is_dir())
        free = free_bytes(existing) / 2**20
        return (
            f"no space left on the device of {path} ({free:.1f} MiB free): free some space "
            "(or pass another --results-dir)"
        )
    if exc.errno in (errno.EROFS, errno.EPERM, errno.EACCES):
        return (
            f"{path} is not writable ({exc.strerror}): make it writable (a read-only mount, "
            "`chattr +i`, permissions) or pass another --results-dir"
        )
    return f"cannot write in {path} ({exc.strerror or exc}): pass a writable --results-dir"


class DiskFull(Exception):
    """A write of the running study found no space left (the spool, a checkpoint, Tune's
    state); `path` is where, when known."""

    def __init__(self, path: str | os.PathLike | None, detail: str) -> None:
        super().__init__(detail)
        self.path = None if path is None else str(path)


def is_disk_full(error: BaseException | str) -> bool:
    """Whether an exception (or a trial's error text) is a full disk (ENOSPC)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return "No space left on device" in str(error) or "database or disk is full" in str(error)


def space_needed_line(folder: Path, trials_left: int) -> str:
    """How much the rest of a study needs under `folder` (Tune's storage): at least what a
    study starts with (MIN_FREE_BYTES), and two of its largest checkpoints per trial left (each
    keeps one, and writes the next before the last goes)."""
    sizes = [p.stat().st_size for p in folder.glob("*/*/checkpoint_*/*") if p.is_file()]
    free = free_bytes(folder) if folder.exists() else 0
    each = max(sizes, default=0)
    needed = max(MIN_FREE_BYTES, 2 * each * max(trials_left, 1))
    detail = (
        f": a checkpoint takes {each / 2**20:.1f} MiB, {trials_left} trial(s) left" if each else ""
    )
    return f"{free / 2**20:.1f} MiB free, the study needs at least {needed / 2**20:.0f} MiB{detail}"
