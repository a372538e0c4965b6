"""A SQLite store left half-migrated (issue 14, item 1) — the way two processes racing to create
it left one before the store lock: made afresh when it holds nothing, else named in one line with
its fix, and nothing in it touched.
"""

import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from svdablate.errors import UserError
from svdablate.store.tracking import check_store, read_store_state, schema_revisions

MID_REVISION = "a8c4a736bde6"  # a migration in the middle of MLflow's history


def _half_migrated(db: Path, *, with_run: bool) -> str:
    """A store whose migration stopped midway, the way two racing processes leave one: its
    schema at a middle revision, alembic's copy of a table left behind."""
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config, create_sqlalchemy_engine
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    uri = f"sqlite:///{db}"
    if with_run:
        check_store(uri)
        client = MlflowClient(uri)
        client.create_run(client.create_experiment("kept"))
        with sqlite3.connect(db) as c:
            c.execute("update alembic_version set version_num = ?", (MID_REVISION,))
    else:
        engine = create_sqlalchemy_engine(uri)
        InitialBase.metadata.create_all(engine)
        config = _get_alembic_config(uri)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, MID_REVISION)
        engine.dispose()
    with sqlite3.connect(db) as c:
        c.execute("create table _alembic_tmp_tags (key varchar(250), value varchar(5000))")
    return uri


def test_a_half_migrated_store_that_holds_nothing_is_made_afresh(tmp_path):
    uri = _half_migrated(tmp_path / "mlflow.db", with_run=False)
    assert not read_store_state(tmp_path / "mlflow.db").current
    check_store(uri)
    assert read_store_state(tmp_path / "mlflow.db").current
    client = MlflowClient(uri)
    client.create_run(client.create_experiment("afresh"))  # usable


def test_a_half_migrated_store_that_holds_runs_is_named_with_its_fix(tmp_path):
    uri = _half_migrated(tmp_path / "mlflow.db", with_run=True)
    with pytest.raises(UserError) as error:
        check_store(uri)
    line = str(error.value)
    assert "\n" not in line
    assert f"{uri} is half-migrated" in line and "_alembic_tmp_tags" in line
    assert "restore it from a backup" in line
    assert read_store_state(tmp_path / "mlflow.db").records == 2, "nothing was touched"


def test_a_store_of_an_older_schema_that_holds_runs_names_mlflow_db_upgrade(tmp_path):
    db = tmp_path / "mlflow.db"
    uri = _half_migrated(db, with_run=True)
    with sqlite3.connect(db) as c:
        c.execute("drop table _alembic_tmp_tags")
    with pytest.raises(UserError, match=rf"then run `mlflow db upgrade {uri}`"):
        check_store(uri)
    assert schema_revisions()[0] != MID_REVISION


def test_a_new_store_is_a_copy_of_the_cached_empty_store(tmp_path, monkeypatch):
    from svdablate.cache import CACHE_DIR_ENV
    from svdablate.store.tracking import empty_store_path

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    cached = empty_store_path()
    first, second = tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"
    for db in (first, second):
        db.parent.mkdir()
    check_store(f"sqlite:///{first}")  # MLflow makes it, and it is cached
    assert read_store_state(cached).current and read_store_state(cached).records == 0
    stamp = cached.stat().st_mtime_ns
    monkeypatch.chdir(tmp_path / "b")
    check_store(f"sqlite:///{second}")
    assert cached.stat().st_mtime_ns == stamp, "a cached store is copied, not remade"
    assert read_store_state(second).current
    client = MlflowClient(f"sqlite:///{second}")
    default = client.get_experiment("0")
    assert default.artifact_location == str(tmp_path / "b" / "mlruns" / "0")  # as MLflow makes it
    client.create_run(client.create_experiment("usable"))
    assert read_store_state(cached).records == 0, "the cached store stays empty"


def test_a_damaged_cached_store_is_ignored_and_replaced(tmp_path, monkeypatch):
    from svdablate.cache import CACHE_DIR_ENV
    from svdablate.store.tracking import empty_store_path

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    cached = empty_store_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not sqlite" * 100)
    check_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert read_store_state(tmp_path / "mlflow.db").current
    assert read_store_state(cached).current, "remade by MLflow and cached again"


def test_the_schema_head_is_read_from_the_cached_empty_store_without_alembic(tmp_path, monkeypatch):
    from svdablate.cache import CACHE_DIR_ENV
    from svdablate.store import tracking

    head = schema_revisions()[0]
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    tracking.schema_head.cache_clear()
    assert tracking.schema_head() == head, "no cached store: alembic's head"
    check_store(f"sqlite:///{tmp_path / 'mlflow.db'}")  # caches the empty store
    tracking.schema_head.cache_clear()

    def walk():  # the 0.8 s walk of MLflow's migration scripts
        raise AssertionError("alembic was walked")

    monkeypatch.setattr(tracking, "schema_revisions", walk)
    try:
        assert tracking.schema_head() == head
        assert read_store_state(tmp_path / "mlflow.db").current
    finally:
        tracking.schema_head.cache_clear()


def test_a_current_store_opens_through_mlflow_while_the_body_runs(tmp_path, monkeypatch):
    from svdablate.store import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    check_store(uri)
    opened: list[str] = []
    monkeypatch.setattr(tracking, "_open_store", lambda u: opened.append(u))
    check_store(uri, open_now=False)  # current by sqlite3: MLflow is left for opening_store
    assert opened == []
    with tracking.opening_store(uri):
        pass
    assert opened == [uri]


def test_a_store_mlflow_refuses_is_one_line_after_the_body(tmp_path, monkeypatch):
    from svdablate.store import tracking

    def refuse(uri):
        raise UserError(f"the MLflow store {uri} cannot be opened (refused)")

    monkeypatch.setattr(tracking, "_open_store", refuse)
    ran = []
    with pytest.raises(UserError, match="cannot be opened"), tracking.opening_store("sqlite:///x"):
        ran.append(True)
    assert ran == [True]


def test_an_open_that_fails_on_its_thread_for_another_reason_is_done_again_here(monkeypatch):
    import threading

    from svdablate.store import tracking

    calls: list[str] = []

    def racing(uri):  # e.g. an import that raced the body's on the other thread
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise ImportError("cannot import name 'x' from partially initialized module")

    monkeypatch.setattr(tracking, "_open_store", racing)
    with tracking.opening_store("sqlite:///x"):
        pass
    assert calls == ["svdablate-open-store", threading.main_thread().name]


def test_a_store_deleted_and_made_again_in_one_process_takes_writes(tmp_path):
    """MLflow caches one engine per URI; its connections hold the deleted file, which SQLite
    refuses to write ("attempt to write a readonly database"): making the store drops it."""
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    check_store(uri)
    MlflowClient(uri).create_experiment("before")
    for path in tmp_path.iterdir():
        path.unlink()
    check_store(uri)
    client = MlflowClient(uri)
    client.create_run(client.create_experiment("after"))
    assert read_store_state(db).records == 2
