"""The plain progress lines of a study whose output is not a terminal (`log_lines.TrialLog`)."""

import io
from types import SimpleNamespace

from svdablate.runtime.log_lines import TrialLog
from svdablate.spec.config import TrialConfig


def _trial(row: str = "SVD") -> SimpleNamespace:
    config = TrialConfig(row=row, seed=0, epochs=4)
    return SimpleNamespace(config={"trial": config.model_dump(mode="json")}, error_msg=""), config


def _log(every: float, trial_ids: list[str]) -> tuple[TrialLog, io.StringIO]:
    stream = io.StringIO()
    names = {t: f"name-{i}" for i, t in enumerate(trial_ids)}
    log = TrialLog(stream, names, dict.fromkeys(trial_ids, 4), total=2, epoch_every_s=every)
    return log, stream


def test_epoch_lines_are_rate_limited_per_trial_and_the_end_is_counted():
    trial, config = _trial()
    log, stream = _log(3600.0, [config.trial_id])
    log.on_trial_start(0, [], trial)
    for epoch in range(4):
        result = {"epoch": epoch, "val_err": 50.0 - epoch, "best_val_err": 50.0 - epoch}
        log.on_trial_result(0, [], trial, result)
    log.on_trial_complete(0, [], trial)
    lines = [line.split(" ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == [
        "trial name-0 started",
        "trial name-0 epoch 1/4: val_err 50.00%, best 50.00%, 0.0 s/epoch",
        "trial name-0 finished: best val_err 47.00% in 4 epochs [1/2 done]",
    ]


def test_every_epoch_but_the_last_gets_a_line_without_a_limit():
    trial, config = _trial()
    log, stream = _log(0.0, [config.trial_id])
    for epoch in range(4):
        log.on_trial_result(0, [], trial, {"epoch": epoch, "val_err": 1.0})
    assert stream.getvalue().count(" epoch ") == 3


def test_failures_stops_and_retries_are_one_line_each():
    failing, failing_config = _trial("SVD")
    stopped, stopped_config = _trial("NS")
    log, stream = _log(0.0, [failing_config.trial_id, stopped_config.trial_id])
    failing.error_msg = "Traceback (most recent call last):\n  ...\nRuntimeError: node lost\n"
    log.on_trial_recover(0, [], failing)
    log.on_trial_error(0, [], failing)
    log.on_trial_result(0, [], stopped, {"epoch": 0})
    log.on_trial_complete(0, [], stopped)
    lines = [line.split(" ", 1)[1] for line in stream.getvalue().splitlines()]
    assert (
        lines[0]
        == "trial name-0 crashed, retried from its last checkpoint: RuntimeError: node lost"
    )
    assert lines[1] == "trial name-0 failed: RuntimeError: node lost [1/2 done]"
    assert lines[-1] == "trial name-1 stopped at epoch 1/4 (resume continues it)"


def test_a_reported_error_ends_the_trial_once():
    trial, config = _trial()
    log, stream = _log(0.0, [config.trial_id])
    log.on_trial_result(0, [], trial, {"error": "ValueError: bad"})
    log.on_trial_complete(0, [], trial)
    assert stream.getvalue().count("failed: ValueError: bad [1/2 done]") == 1
    assert "stopped" not in stream.getvalue()
