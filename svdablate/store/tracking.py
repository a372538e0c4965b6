"""The MLflow store a study writes to: which one, and that it is usable before any trial starts.

Precedence: `--tracking-uri` > `MLFLOW_TRACKING_URI` > `sqlite:///<results-dir>/mlflow.db`.

A SQLite store is created and migrated by one process at a time: under an exclusive lock on
`<db>.lock` beside it (MLflow's own migration is not safe against a second process doing the
same). A store whose creation was cut short (half-migrated, holding no run) is made afresh; one
that holds runs but not this MLflow's schema is named in one line with its fix. A new store is a
copy of this MLflow's empty store, cached once per MLflow version (its migrations take 2.0–2.5 s,
a copy 0.1 s).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

from svdablate.cache import cache_dir, write_atomically
from svdablate.errors import UserError
from svdablate.store.health import probe_server
from svdablate.study.manifest import STORE_FILE, default_tracking_uri

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
LOCK_SUFFIX = ".lock"
TMP_TABLE_PREFIX = "_alembic_tmp_"  # alembic's copy of a table while SQLite migrates it
log = logging.getLogger(__name__)


def results_folder(results_dir: str | os.PathLike, *, create: bool) -> Path:
    """The results dir, created when asked; UserError when it is a file or cannot be made."""
    path = Path(results_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"--results-dir {path} is a file, not a folder: pass a folder")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or exc
            raise UserError(
                f"cannot create --results-dir {path} ({reason}): pass a writable folder"
            ) from None
    return path


def resolve_tracking_uri(
    uri: str | None, results_dir: str | os.PathLike, *, create: bool = True
) -> str:
    """The store's URI: flag, else MLFLOW_TRACKING_URI, else the results dir's SQLite file.

    Relative SQLite paths are made absolute (resolved on the driver); a server URI is checked
    as reachable; without `create`, a missing default store is a UserError naming the fix.
    """
    uri = uri or os.environ.get(TRACKING_URI_ENV) or None
    if not uri:
        folder = results_folder(results_dir, create=create)
        if not create and not (folder / STORE_FILE).exists():
            raise UserError(
                f"no MLflow store at {folder / STORE_FILE}: pass the --results-dir of a study "
                f"or --tracking-uri (or set {TRACKING_URI_ENV})"
            )
        return default_tracking_uri(folder)
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        raw = uri[len("sqlite:///") :]
        path = Path(raw) if raw.startswith("/") else Path.cwd() / raw
        if create:
            results_folder(path.parent, create=True)
        elif not path.exists():
            raise UserError(f"no MLflow store at {path}: pass the --tracking-uri of a study")
        return f"sqlite:///{path.resolve()}"
    if parsed.scheme in ("http", "https"):
        probe_server(
            uri, "start it with `mlflow server` or omit --tracking-uri for the local store"
        )
    return uri


def check_store(uri: str, *, open_now: bool = True) -> None:
    """Make sure the store is usable (creating or migrating a SQLite file, one process at a
    time); UserError when it is not. A SQLite file that sqlite3 finds current is opened through
    MLflow only with `open_now` (else by `opening_store`, while Ray starts)."""
    if uri.startswith("sqlite:///"):
        prepare_sqlite_store(uri)
        if not open_now:
            return
    _open_store(uri)


@contextlib.contextmanager
def opening_store(uri: str) -> Iterator[None]:
    """MLflow opens the store (its import and engine: ≈2.5 s) on a thread while the body runs
    (Ray starting, which mostly waits on its processes); its UserError is raised at the end."""
    failure: list[BaseException] = []

    def open_store() -> None:
        try:
            _open_store(uri)
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)

    import click  # noqa: F401  (the one module ray.init and MLflow both import: loaded first)

    thread = threading.Thread(target=open_store, name="svdablate-open-store")
    thread.start()
    try:
        yield
    finally:
        thread.join()
    if failure and isinstance(failure[0], UserError):
        raise failure[0]
    if failure:  # not the store's fault (an import racing the body's): open it here instead
        _open_store(uri)


def _open_store(uri: str) -> None:
    from mlflow import MlflowClient

    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except Exception as exc:  # SQLAlchemy/MLflow errors of a corrupt or foreign file
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"the MLflow store {uri} cannot be opened ({reason}): move the file away or pass "
            "another --results-dir / --tracking-uri"
        ) from None


@dataclass(frozen=True)
class StoreState:
    """What a SQLite store file holds, read without MLflow (which would migrate it)."""

    tables: frozenset[str]
    revision: str | None  # alembic's, None when no migration has been recorded
    records: int  # runs, and experiments besides MLflow's Default

    @property
    def leftovers(self) -> list[str]:
        return sorted(t for t in self.tables if t.startswith(TMP_TABLE_PREFIX))

    @property
    def pristine(self) -> bool:
        """A whole empty store as MLflow makes it: migrated, no half-done migration, no records."""
        return bool(self.revision) and not self.leftovers and not self.records

    @property
    def current(self) -> bool:
        """Created and migrated to this MLflow's schema (or not created at all)."""
        if not self.tables:
            return False
        return self.revision == schema_head() and not self.leftovers


@cache
def schema_head() -> str:
    """This MLflow's head schema revision, read from its cached empty store (named by MLflow
    version, made by MLflow itself) when there is one: no 0.8 s alembic walk per command."""
    cached = read_store_state(empty_store_path())
    if cached is not None and cached.pristine:
        return cached.revision
    return schema_revisions()[0]


@cache
def schema_revisions() -> tuple[str, frozenset[str]]:
    """This MLflow's schema: its head revision and every revision it knows."""
    import mlflow
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option(
        "script_location", str(Path(mlflow.__file__).parent / "store" / "db_migrations")
    )
    script = ScriptDirectory.from_config(config)
    return script.get_current_head() or "", frozenset(s.revision for s in script.walk_revisions())


def read_store_state(db: Path) -> StoreState | None:
    """The state of the SQLite file `db` (None when it is absent, empty or not SQLite)."""
    if not db.exists() or db.stat().st_size == 0:
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as c:
            tables = frozenset(
                r[0] for r in c.execute("select name from sqlite_master where type = 'table'")
            )
            revision = None
            if "alembic_version" in tables:
                row = c.execute("select version_num from alembic_version").fetchone()
                revision = row[0] if row else None
            records = sum(
                c.execute(f"select count(*) from {t}").fetchone()[0]
                for t in ("runs", TMP_TABLE_PREFIX + "runs")
                if t in tables
            )
            if "experiments" in tables:
                query = "select count(*) from experiments where experiment_id != 0"
                records += c.execute(query).fetchone()[0]
    except sqlite3.DatabaseError:
        return None  # not SQLite, or unreadable: opening it says so
    return StoreState(tables, revision, records)


@contextlib.contextmanager
def store_lock(db: Path) -> Iterator[None]:
    """An exclusive lock on `<db>.lock`: the one process that may create or migrate `db`."""
    path = db.with_name(db.name + LOCK_SUFFIX)
    try:
        handle = open(path, "a")  # noqa: SIM115 (closed below, after the lock)
    except OSError as exc:
        raise UserError(
            f"cannot lock the MLflow store {db} ({exc.strerror or exc}): pass a writable "
            "--results-dir"
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_sqlite_store(uri: str) -> None:
    """Make the SQLite store of `uri` current, one process at a time: created when absent, made
    afresh when its creation was cut short; UserError naming the fix when it holds runs under a
    schema that is not this MLflow's."""
    db = Path(uri[len("sqlite:///") :].split("?", 1)[0])
    state = read_store_state(db)
    if state is not None and state.current:
        return  # the usual case: no lock, so a read-only results dir reads too
    if state is not None and state.tables and state.records:
        raise UserError(store_problem(uri, state))
    with store_lock(db):
        state = read_store_state(db)  # another process may have made it meanwhile
        if state is not None and state.current:
            return
        if state is not None and state.tables:
            if state.records:
                raise UserError(store_problem(uri, state))
            log.warning(
                "the MLflow store %s was left half-made (schema %s, expected %s): made afresh",
                db,
                state.revision or "none",
                schema_head(),
            )
            _remove_store(uri, db)
        if state is None and db.exists() and db.stat().st_size:
            _open_store(uri)  # not SQLite, or unreadable: says so in one line
        else:
            _create_store(uri, db)


def store_problem(uri: str, state: StoreState) -> str:
    """One line naming what is wrong with a store that holds runs, and its fix."""
    head, known = schema_revisions()
    where = f"the MLflow store {uri}"
    if state.leftovers:
        return (
            f"{where} is half-migrated (schema {state.revision}, expected {head}; leftover "
            f"{', '.join(state.leftovers)}) and holds {state.records} runs/experiments: restore "
            "it from a backup, or move it away to start a fresh store"
        )
    if state.revision in known:
        return (
            f"{where} has an older schema ({state.revision}, this MLflow's is {head}): back it "
            f"up, then run `mlflow db upgrade {uri}`"
        )
    return (
        f"{where} has schema {state.revision}, unknown to this MLflow (head {head}): open it "
        "with the MLflow that wrote it, or pass another --results-dir"
    )


def _create_store(uri: str, db: Path) -> None:
    """Make the store in a file beside `db`, then move it into place: no process (a reader
    polling the results dir, `mlflow ui`) ever opens a half-made store."""
    staging = db.with_name(f"{db.name}.creating-{os.getpid()}")
    try:
        if not copy_empty_store(staging):
            _open_store(f"sqlite:///{staging}")  # MLflow creates and migrates it
            _dispose_engine(f"sqlite:///{staging}")
            save_empty_store(staging)
        os.replace(staging, db)
        _dispose_engine(uri)  # one this process kept on a store deleted since: its file is gone
    finally:
        _remove_files(staging)


def empty_store_path() -> Path:
    """Where this MLflow's empty store is cached: one file per MLflow version (its schema)."""
    from importlib.metadata import version

    return cache_dir() / f"mlflow-store-{version('mlflow')}.db"


def copy_empty_store(target: Path) -> bool:
    """Copy the cached empty store to `target` (False when there is none, or it is damaged,
    half-made or holds records). Its Default experiment is pointed where MLflow would put it."""
    cached = empty_store_path()
    state = read_store_state(cached)
    if state is None or not state.pristine:
        return False  # the file's name says its MLflow (no 0.7 s alembic walk to check the head)
    try:
        shutil.copyfile(cached, target)
        with contextlib.closing(sqlite3.connect(target)) as connection, connection:
            connection.execute(  # as MLflow does for a client without an artifact root
                "update experiments set artifact_location = ? where experiment_id = 0",
                (str(Path.cwd() / "mlruns" / "0"),),
            )
    except (OSError, sqlite3.Error):
        _remove_files(target)
        return False
    return True


def save_empty_store(store: Path) -> None:
    """Cache a store MLflow has just made (empty, current) for the next new store."""
    write_atomically(empty_store_path(), lambda partial: shutil.copyfile(store, partial))


def _remove_store(uri: str, db: Path) -> None:
    """Delete a store that holds nothing, and any engine this process keeps open on it."""
    _dispose_engine(uri)
    _remove_files(db)


def _dispose_engine(uri: str) -> None:
    """Close the engine MLflow caches for `uri` in this process, if any: its pooled connections
    hold the file they opened, and SQLite refuses their writes once another file takes the path
    ("attempt to write a readonly database"). Imports nothing: no MLflow loaded, no engine."""
    module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    if module is None:
        return
    engine = module.SqlAlchemyStore._engine_map.pop(uri, None)  # MLflow's engine cache
    if engine is not None:
        engine.dispose()


def _remove_files(db: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
