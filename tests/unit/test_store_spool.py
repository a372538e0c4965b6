"""The recorder's spool (issue 14, item 2), with the store's failures injected where the writer
thread sends an operation: the Tune callbacks never wait for the store, writes wait in the spool
in order, nothing is written twice when replies are lost or a later driver replays what an
earlier one left, and one driver owns a study's spool at a time.

The real tracking server killed and restarted mid-study is tests/e2e/test_store_outage.py (slow).
"""

import json
import shutil
import time
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from svdablate.errors import ExitCode, UserError
from svdablate.runtime.progress import RichProgress
from svdablate.schema import EPOCH_METRICS, FINAL_OF, StudyStatus, Tag, TrialStatus, spool_record
from svdablate.store.runs import child_runs, create_parent_run
from svdablate.store.tracking import check_store
from svdablate.store.writer import MLflowRecorder
from svdablate.study.plan import StudyPlan
from svdablate.study.study import StudyOutcome

EPOCHS = 3


def _trial(config):
    return SimpleNamespace(config={"trial": config.model_dump()}, trial_id=config.trial_id)


def _result(epoch):
    return {"epoch": epoch, "val_err": 50.0 - epoch, "kappa_median": 10.0 + epoch, "diverged": 0.0}


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """A migrated, empty SQLite store, made once (migrating one takes seconds)."""
    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    check_store(f"sqlite:///{db}")
    return db


@pytest.fixture
def study(tmp_path, empty_store):
    """A parent run in a fresh SQLite store, two trials of 3 epochs, and the spool's path."""
    db = tmp_path / "mlflow.db"
    shutil.copy(empty_store, db)
    uri = f"sqlite:///{db}"
    parent = create_parent_run(uri, "spool-test", {Tag.GRID_ID: "g"}, {"trials": "2"})
    configs = StudyPlan.create(
        preset="demo", rows=("SVD", "NS"), seeds=1, epochs=EPOCHS, check=False
    ).configs
    return SimpleNamespace(
        db=db, uri=uri, parent=parent, configs=configs, spool=tmp_path / "spool.jsonl"
    )


def _train(recorder, configs, epochs=range(EPOCHS), complete=True) -> float:
    """Every Tune event of `configs` for `epochs`; the longest any one callback took."""
    slowest = 0.0
    for config in configs:
        trial = _trial(config)
        for event, args in (
            [("on_trial_start", ())]
            + [("on_trial_result", (_result(e),)) for e in epochs]
            + ([("on_trial_complete", ())] if complete else [])
        ):
            began = time.perf_counter()
            getattr(recorder, event)(0, [], trial, *args)
            slowest = max(slowest, time.perf_counter() - began)
    return slowest


def _assert_recorded_once(uri, parent, n_trials):
    """One child run per trial, finished, each metric once per epoch, final metrics once."""
    client = MlflowClient(uri)
    experiment = client.get_run(parent).info.experiment_id
    assert len(client.search_runs([experiment])) == n_trials + 1, "one child run per trial"
    runs = child_runs(client, parent)
    for run in runs.values():
        assert run.data.tags[Tag.STATUS] == TrialStatus.FINISHED
        assert run.info.status == "FINISHED"
        for key in run.data.metrics:
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            expected = [EPOCHS - 1] if key in FINAL_OF else list(range(EPOCHS))
            assert key in FINAL_OF or key in EPOCH_METRICS or key == "epochs_completed", key
            assert steps == expected, (key, steps)


WRITES = ("create_run", "log_batch", "set_terminated", "update_run", "set_tag")


class Faults:
    """The store as the writer thread's MLflow client meets it: `down` (nothing answers) or
    `lose_replies` (each write is done, then its reply is lost: the writer cannot know it was)."""

    def __init__(self):
        self.down = False
        self.lose_replies = False
        self.attempts = 0
        self.lost = 0

    def wrap(self, write):
        def faulty(client, *args, **kwargs):
            self.attempts += 1
            if self.down:
                raise ConnectionError("the store does not answer")
            result = write(client, *args, **kwargs)
            if self.lose_replies and self.attempts % 2:
                self.lost += 1
                raise ConnectionError("the reply was lost")
            return result

        return faulty


@pytest.fixture
def faults(monkeypatch):
    faults = Faults()
    for name in WRITES:
        monkeypatch.setattr(MlflowClient, name, faults.wrap(getattr(MlflowClient, name)))
    return faults


def test_callbacks_never_wait_for_a_store_that_does_not_answer(study, faults, wait_for):
    recorder = MLflowRecorder(study.uri, study.parent, study.spool)
    recorder.statuses()  # the start of a study reads the store while it answers
    progress = RichProgress(2, "spool-test", pending_writes=recorder.pending_writes)
    faults.down = True
    slowest = _train(recorder, study.configs)
    assert slowest < 0.5, f"a Tune callback waited {slowest:.1f} s for the store"
    assert wait_for(lambda: recorder.pending_writes() > 0, 10), "no write reported waiting"
    shown = progress.progress.columns[-1].render(None).plain
    assert shown == f"{recorder.pending_writes()} MLflow writes pending"
    assert study.spool.stat().st_size > 0, "waiting writes are in the spool file"
    time.sleep(2)
    assert faults.attempts <= 4, "the writer backs off while the store does not answer"
    faults.down = False
    assert recorder.close() == 0, "the store came back: everything was sent"
    assert not study.spool.exists()
    _assert_recorded_once(study.uri, study.parent, 2)


def test_a_write_the_sql_store_fails_prints_no_traceback(study, monkeypatch, wait_for):
    """MLflow's SQL store logs a traceback before it raises a failed write (SQLite's "database
    or disk is full"); the writer retries it or reports it in one line of its own."""
    import logging

    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append
    store_log = logging.getLogger("mlflow.store.db.utils")  # MLflow's handler is its parent's
    store_log.addHandler(handler)
    recorder = MLflowRecorder(study.uri, study.parent, study.spool)
    recorder.statuses()
    attempts = []

    def disk_full(*args, **kwargs):
        attempts.append(1)
        raise OperationalError("INSERT INTO tags", {}, Exception("database or disk is full"))

    try:
        monkeypatch.setattr(Session, "commit", disk_full)  # as SQLite fails a full disk's write
        _train(recorder, study.configs[:1], epochs=range(1), complete=False)
        assert wait_for(lambda: attempts, 10), "the writer never tried the write"
        monkeypatch.undo()
        recorder.close()
        logging.getLogger("mlflow.store.db.utils").error("from another thread: kept")
    finally:
        store_log.removeHandler(handler)
    assert [r.getMessage() for r in logged] == ["from another thread: kept"]


def test_writes_left_when_the_store_never_answers_are_sent_by_the_next_driver(study, faults):
    first = MLflowRecorder(study.uri, study.parent, study.spool)
    first.statuses()
    faults.down = True
    _train(first, study.configs)
    left = first.close(drain_seconds=0.5)
    assert left > 0 and study.spool.exists()
    faults.down = False
    outcome = StudyOutcome("demo", study.parent, "results", trials=2, finished=2)
    outcome.unsent_writes, outcome.spool = left, str(study.spool)
    assert outcome.exit_code == ExitCode.FAILED
    line = outcome.unsent_line
    assert str(study.spool) in line and f"svdablate resume {study.parent}" in line
    assert "\n" not in line
    second = MLflowRecorder(study.uri, study.parent, study.spool)  # `resume`: replays first
    assert second.done_trials() == {c.trial_id for c in study.configs}
    assert second.close() == 0 and not study.spool.exists()
    _assert_recorded_once(study.uri, study.parent, 2)


def test_a_write_whose_reply_was_lost_is_not_written_twice(study, faults, monkeypatch):
    monkeypatch.setattr("svdablate.store.spool.BACKOFF_S", (0.05,))
    faults.lose_replies = True  # every other write lands in the store, then looks failed
    recorder = MLflowRecorder(study.uri, study.parent, study.spool)
    _train(recorder, study.configs)
    assert recorder.close() == 0
    assert faults.lost > 3, "replies were lost"
    _assert_recorded_once(study.uri, study.parent, 2)


class _Capture:
    """Stands in for the writer: keeps the operations the recorder submits."""

    def __init__(self):
        self.ops = []

    def submit(self, op):
        self.ops.append(op)


def test_a_spool_an_earlier_driver_left_half_sent_is_replayed_once(study, caplog):
    capture = _Capture()
    recorder = MLflowRecorder(study.uri, study.parent, study.spool)
    recorder.writer = capture  # what the first driver queued, in order
    _train(recorder, study.configs)
    ops = capture.ops
    # The first driver sent the first two thirds of its operations, then died before it could
    # empty its spool: the file still holds all of them (and a line torn by the kill).
    sent = MLflowRecorder(study.uri, study.parent, tmp_spool := study.spool.with_suffix(".a"))
    sent.open()
    for op in ops[: 2 * len(ops) // 3]:
        sent.writer.submit(op)
    assert sent.close() == 0 and not tmp_spool.exists()
    study.spool.write_text(
        "".join(json.dumps(spool_record(op)) + "\n" for op in ops) + '{"op": "lo'
    )
    resumed = MLflowRecorder(study.uri, study.parent, study.spool)
    assert resumed.done_trials() == {c.trial_id for c in study.configs}
    resumed.set_study_status(StudyStatus.FINISHED)  # appended after the torn line: not lost
    assert resumed.close() == 0
    _assert_recorded_once(study.uri, study.parent, 2)
    parent = MlflowClient(study.uri).get_run(study.parent)
    assert parent.data.tags[Tag.STATUS] == StudyStatus.FINISHED
    assert "dropped" not in caplog.text, "the torn line is not an operation"


def test_one_driver_owns_a_studys_spool(study):
    first = MLflowRecorder(study.uri, study.parent, study.spool)
    first.statuses()
    second = MLflowRecorder(study.uri, study.parent, study.spool)
    with pytest.raises(UserError, match="another process is running this study"):
        second.statuses()
    assert first.close() == 0


def _log_batches(monkeypatch):
    """Count the writer's log_batch calls that carry metrics (one per request to the store)."""
    calls = []
    write = MlflowClient.log_batch

    def counted(client, run_id, metrics=(), params=(), tags=(), **kwargs):
        if metrics:
            calls.append(sorted({m.step for m in metrics}))
        return write(client, run_id, metrics=metrics, params=params, tags=tags, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", counted)
    return calls


def test_a_backlog_of_epochs_drains_in_one_request_a_trial(study, faults, monkeypatch):
    recorder = MLflowRecorder(study.uri, study.parent, study.spool)
    recorder.statuses()
    faults.down = True
    _train(recorder, study.configs, complete=False)  # 2 trials × 3 epochs wait in the spool
    calls = _log_batches(monkeypatch)
    faults.down = False
    _train(recorder, study.configs, epochs=(), complete=True)
    assert recorder.close() == 0
    _assert_recorded_once(study.uri, study.parent, 2)
    assert calls == [[0, 1, 2], [0, 1, 2]], "each trial's 3 epochs went as one log_batch"


def test_a_merged_batch_the_store_refuses_is_sent_again_one_epoch_at_a_time(
    study, faults, monkeypatch, caplog
):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    recorder = MLflowRecorder(study.uri, study.parent, study.spool)
    recorder.statuses()
    faults.down = True
    _train(recorder, study.configs[:1], complete=False)
    write = MlflowClient.log_batch
    sent = []

    def refuses_epoch_1(client, run_id, metrics=(), params=(), tags=(), **kwargs):
        steps = {m.step for m in metrics}
        if 1 in steps:  # as a store refuses a bad value: the whole batch, for good
            raise MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE)
        if steps:
            sent.append(sorted(steps))
        return write(client, run_id, metrics=metrics, params=params, tags=tags, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", refuses_epoch_1)
    faults.down = False
    assert recorder.close() == 0
    assert sent == [[0], [2]], "the batch was split and only the refused epoch dropped"
    assert "dropped" in caplog.text


def test_two_first_studies_tagging_one_new_experiment_both_go_on(tmp_path):
    """Two first studies into one fresh store both find the experiment untagged; SQLite's UNIQUE
    refuses the second tag (CI: `UNIQUE constraint failed: experiment_tags`): once the tag is
    there, the refused study goes on; a refusal that left no tag is raised."""
    from mlflow.exceptions import MlflowException

    from svdablate.schema import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
    from svdablate.store.runs import get_or_create_experiment

    real = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment_id = real.create_experiment("demo")

    class Racing:
        """Reads the experiment as the other study saw it (untagged), then loses the insert."""

        def __init__(self, other_tags: bool) -> None:
            self.other_tags = other_tags

        def get_experiment_by_name(self, name):
            return SimpleNamespace(experiment_id=experiment_id, tags={})

        def set_experiment_tag(self, *args):
            if self.other_tags:
                real.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed")

        def get_experiment(self, experiment_id):
            return real.get_experiment(experiment_id)

    with pytest.raises(MlflowException, match="UNIQUE"):
        get_or_create_experiment(Racing(other_tags=False), "demo")
    assert get_or_create_experiment(Racing(other_tags=True), "demo") == experiment_id
