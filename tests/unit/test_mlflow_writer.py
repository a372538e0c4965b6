"""The driver-side MLflow writer: one child run per trial, no epoch twice, resume reuses runs.

The recorder queues its writes; `close()` waits until the store holds them."""

from types import SimpleNamespace

from mlflow.tracking import MlflowClient

from svdablate.schema import Tag
from svdablate.store.runs import child_runs, create_parent_run
from svdablate.store.writer import MLflowRecorder
from svdablate.study.plan import StudyPlan


def _trial(config):
    return SimpleNamespace(config={"trial": config.model_dump()}, trial_id=config.trial_id)


def _result(epoch, val_err):
    return {"epoch": epoch, "val_err": val_err, "kappa_median": 10.0 + epoch, "diverged": 0.0}


def _setup(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = create_parent_run(uri, "writer-test", {Tag.GRID_ID: "g"}, {"trials": "1"})
    config = StudyPlan.create(preset="demo", rows=("SVD",), seeds=1, epochs=3, check=False).configs[
        0
    ]
    return uri, parent, config


def _recorder(uri, parent, tmp_path):
    return MLflowRecorder(uri, parent, tmp_path / "spool.jsonl")


def _history(uri, run_id, key="val_err"):
    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def _one_trial(tmp_path, results):
    """A study of one trial whose `results` Tune reports in order before it completes: returns
    (store URI, parent run, the recorder after close(), close()'s code, the trial's child run)."""
    uri, parent, config = _setup(tmp_path)
    recorder = _recorder(uri, parent, tmp_path)
    trial = _trial(config)
    recorder.on_trial_start(0, [], trial)
    for result in results:
        recorder.on_trial_result(0, [], trial, result)
    recorder.on_trial_complete(0, [], trial)
    code = recorder.close()
    (run,) = child_runs(MlflowClient(uri), parent).values()
    return uri, parent, recorder, code, run


def test_replayed_epochs_are_not_logged_twice(tmp_path):
    epochs = [(0, 50.0), (1, 40.0), (1, 39.0), (2, 30.0)]
    uri, _, recorder, code, run = _one_trial(tmp_path, [_result(e, err) for e, err in epochs])
    assert code == 0
    assert recorder.write_seconds > 0, "the writer's time outlives it (the study reports it)"
    assert _history(uri, run.info.run_id) == [(0, 50.0), (1, 40.0), (2, 30.0)]
    assert run.data.tags["svdablate.status"] == "finished"
    assert run.data.metrics["final_val_err"] == 30.0 and run.data.metrics["final_kappa"] == 12.0


def test_a_restarted_driver_reuses_the_child_run_and_skips_logged_epochs(tmp_path):
    uri, parent, config = _setup(tmp_path)
    trial = _trial(config)
    first = _recorder(uri, parent, tmp_path)
    first.on_trial_start(0, [], trial)
    first.on_trial_result(0, [], trial, _result(0, 50.0))
    first.on_trial_result(0, [], trial, _result(1, 40.0))
    first.close()
    second = _recorder(uri, parent, tmp_path)  # the driver died; Tune's state was one epoch older
    second.on_trial_start(0, [], trial)
    for epoch, err in [(1, 41.0), (2, 30.0)]:
        second.on_trial_result(0, [], trial, _result(epoch, err))
    second.on_trial_complete(0, [], trial)
    second.close()
    runs = child_runs(MlflowClient(uri), parent)
    assert len(runs) == 1
    (run,) = runs.values()
    assert _history(uri, run.info.run_id) == [(0, 50.0), (1, 40.0), (2, 30.0)]
    third = _recorder(uri, parent, tmp_path)
    assert third.done_trials() == {config.trial_id}
    third.close()


def test_every_metric_is_logged_once_per_step(tmp_path):
    results = [
        {**_result(epoch, 50.0 - epoch), "best_val_err": 50.0 - epoch, "failures_total": 0.0}
        for epoch in range(3)
    ]
    uri, _, _, code, run = _one_trial(tmp_path, results)
    assert code == 0
    client = MlflowClient(uri)
    for key in run.data.metrics:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert len(steps) == len(set(steps)), (key, steps)
    assert run.data.metrics["final_val_err"] == 48.0 and run.data.metrics["best_val_err"] == 48.0


def test_a_trial_stopped_before_its_last_epoch_stays_resumable(tmp_path):
    # Tune stopped it (an interrupt) after epoch 0 of 3
    uri, parent, _, _, run = _one_trial(tmp_path, [_result(0, 50.0)])
    assert run.data.tags[Tag.STATUS] == "running"
    again = _recorder(uri, parent, tmp_path)
    assert again.done_trials() == set()
    again.close()


def test_a_reported_error_fails_the_trial_without_a_retry(tmp_path):
    _, _, _, code, run = _one_trial(tmp_path, [{"error": "ValueError: bad"}])
    assert code == 0
    assert run.data.tags[Tag.STATUS] == "failed" and "bad" in run.data.tags[Tag.ERROR]
