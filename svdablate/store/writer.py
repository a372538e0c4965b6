"""Driver-side MLflow writing: one parent run per study, one child run per trial (DESIGN §6).

Only the driver writes: trials report to Ray Tune, `MLflowRecorder` (a Tune callback) turns each
event into one batched operation that the driver's writer thread sends (`mlflow_queue`), so a
SQLite store on the driver's disk serves a whole cluster and a tracking server that goes away
stalls no trial. The names are `svdablate.schema`'s. A trial's child run is reused after resume,
epochs it already holds are never logged twice, and every metric is logged once per step.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from ray import tune

from svdablate.errors import UserError
from svdablate.schema import (
    EPOCH_METRICS,
    FINAL_OF,
    CreateRun,
    LogRun,
    LogText,
    RunStatus,
    SetStudyStatus,
    StudyStatus,
    Tag,
    TerminateRun,
    TrialResult,
    TrialStatus,
)
from svdablate.schema import Metric as M
from svdablate.spec.config import TrialConfig
from svdablate.store.health import DiskFull, is_disk_full
from svdablate.store.runs import PARAM_VALUE_LIMIT, child_runs, trial_tags
from svdablate.store.spool import SpooledWriter, apply_parent_status
from svdablate.store.trial_errors import ERROR_ARTIFACT, ERROR_TAG_LIMIT, trial_error

log = logging.getLogger(__name__)
DRAIN_SECONDS = 30.0  # how long the end of a study (or a resume) waits for the store's answer


class MLflowRecorder(tune.Callback):
    """Ray Tune callback that records every trial as an MLflow child run of the study's parent.

    It never waits for the store: each event becomes one operation on the study's spool, which a
    writer thread applies (`SpooledWriter`). What it decides from — which trials exist, epochs
    logged, statuses — it reads once at the start and then keeps in memory.

    A trial counts as finished only when it reported its last epoch (or diverged): a trial that
    Tune stops on an interrupt stays `running`, to be continued by `resume`. A result carrying
    `error` is a deterministic failure the trial reported instead of raising (never retried).
    """

    def __init__(
        self,
        tracking_uri: str,
        parent_run_id: str,
        spool: str | os.PathLike,
        run_names: dict[str, str] | None = None,
        datasets: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.parent_run_id = parent_run_id
        self.spool = str(spool)
        self.run_names = dict(run_names or {})  # trial id → the child run's name
        self.datasets = dict(datasets or {})  # trial id → its data (MLflow's log_input)
        self.writer: SpooledWriter | None = None
        self._grid_id = ""
        self._runs: set[str] = set()  # trials with a child run (or one on its way)
        self._next_epoch: dict[str, int] = {}
        self._status: dict[str, str] = {}
        self._diverged: set[str] = set()
        self._closed_write_seconds = 0.0
        self.epochs_logged = 0

    def __getstate__(self) -> dict[str, Any]:
        keys = ("tracking_uri", "parent_run_id", "spool", "run_names", "datasets")
        return {key: getattr(self, key) for key in keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    # ---- life --------------------------------------------------------------------------------
    def open(self) -> SpooledWriter:
        """Start the writer: replay what an earlier driver left in the spool, then read the
        study's child runs. UserError when the store does not take the spool."""
        if self.writer is not None:
            return self.writer
        client = MlflowClient(self.tracking_uri)
        runs = child_runs(client, self.parent_run_id)
        writer = SpooledWriter(self.tracking_uri, self.parent_run_id, self.spool)
        writer.start({trial: run.info.run_id for trial, run in runs.items()})
        self.writer = writer
        if writer.pending():
            left = writer.drain(DRAIN_SECONDS)
            if left:
                writer.close(0)
                self.writer = None
                raise UserError(
                    f"the MLflow store {self.tracking_uri} did not take the {left} writes an "
                    f"earlier run left in {self.spool} ({writer.last_error}): bring it back, "
                    "then resume again"
                )
            runs = child_runs(client, self.parent_run_id)
        self._grid_id = client.get_run(self.parent_run_id).data.tags.get(Tag.GRID_ID, "")
        for trial_id, run in runs.items():
            self._runs.add(trial_id)
            self._next_epoch[trial_id] = int(run.data.metrics.get(M.EPOCHS_COMPLETED, 0))
            self._status[trial_id] = run.data.tags.get(Tag.STATUS, TrialStatus.RUNNING)
            if run.data.metrics.get(M.DIVERGED):
                self._diverged.add(trial_id)
        return writer

    def close(self, drain_seconds: float | None = None) -> int:
        """Wait up to `drain_seconds` (default DRAIN_SECONDS) for the store to take every write;
        returns how many are left in the spool for `resume` (0: the spool is gone)."""
        if self.writer is None:
            return 0
        left = self.writer.close(DRAIN_SECONDS if drain_seconds is None else drain_seconds)
        self._closed_write_seconds += self.writer.write_seconds
        self.writer = None
        return left

    @property
    def write_seconds(self) -> float:
        """Seconds the writer thread spent in MLflow calls (none of them on the Tune loop)."""
        return self._closed_write_seconds + (self.writer.write_seconds if self.writer else 0.0)

    def pending_writes(self) -> int:
        """Writes waiting while the store does not answer (what the progress line shows)."""
        return self.writer.behind() if self.writer else 0

    # ---- what the study asks -----------------------------------------------------------------
    def statuses(self) -> dict[str, str]:
        """Trial id → status of every child run (read at the start, then as written)."""
        self.open()
        return dict(self._status)

    def done_trials(self) -> set[str]:
        """Trial ids that are finished or diverged: never trained again."""
        return {t for t, s in self.statuses().items() if s in TrialStatus.DONE}

    def set_study_status(self, status: str) -> None:
        """Queue the parent run's status (running, finished, failed, interrupted)."""
        self.open().submit(SetStudyStatus(status))

    # ---- writes -----------------------------------------------------------------------------
    def _submit(self, op: LogRun | LogText | TerminateRun, config: TrialConfig) -> None:
        """Queue an operation on the trial's child run, its creation first when it has none."""
        writer = self.open()
        trial_id = config.trial_id
        if trial_id not in self._runs:
            params = {k: v[:PARAM_VALUE_LIMIT] for k, v in config.as_params().items()}
            tags = trial_tags(config, self.parent_run_id, self._grid_id)
            tags[MLFLOW_RUN_NAME] = self.run_names.get(trial_id, trial_id)
            writer.submit(CreateRun(trial_id, tags, params, self.datasets.get(trial_id)))
            self._runs.add(trial_id)
            self._next_epoch[trial_id] = 0
            self._status[trial_id] = TrialStatus.RUNNING
        writer.submit(op)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        config = _config(trial)
        if self.statuses().get(config.trial_id) in TrialStatus.DONE:
            return
        self._submit(LogRun(config.trial_id, tags={Tag.STATUS: TrialStatus.RUNNING}), config)
        self._status[config.trial_id] = TrialStatus.RUNNING

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        config = _config(trial)
        trial_id = config.trial_id
        if self.statuses().get(trial_id) in TrialStatus.DONE:
            return
        reported = TrialResult.from_report(result)
        if reported.error is not None:
            self._fail(config, reported.error)
            return
        if reported.set_aside is not None:
            self._set_aside(config, reported.set_aside)
            return
        if reported.epoch is None:
            return
        epoch = reported.epoch
        if epoch < self._next_epoch.get(trial_id, 0):
            return  # replayed after a retry or resume: MLflow already holds this epoch
        now = int(time.time() * 1000)
        numbers = reported.metrics
        values = {key: numbers[key] for key in EPOCH_METRICS if key in numbers}
        values[M.EPOCHS_COMPLETED] = epoch + 1
        diverged = bool(numbers.get(M.DIVERGED))
        if epoch + 1 >= config.epochs or diverged:  # the final metrics, once, at the last step
            values |= {f: numbers[k] for f, k in FINAL_OF.items() if k in numbers}
        tags = {Tag.METHOD_USED: reported.method_used}
        if reported.device:
            tags[Tag.DEVICE] = reported.device
        if reported.eigh_device:
            tags[Tag.EIGH_DEVICE] = reported.eigh_device
        metrics = [[key, float(value), now, epoch] for key, value in values.items()]
        self._submit(LogRun(trial_id, metrics, tags), config)
        self.epochs_logged += 1
        self._next_epoch[trial_id] = epoch + 1
        if diverged:
            self._diverged.add(trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        config = _config(trial)
        trial_id = config.trial_id
        if self.statuses().get(trial_id) in (*TrialStatus.DONE, TrialStatus.FAILED):
            return
        diverged = trial_id in self._diverged
        if not diverged and self._next_epoch.get(trial_id, 0) < config.epochs:
            return  # stopped before its last epoch (an interrupt): left for `resume`
        status = TrialStatus.DIVERGED if diverged else TrialStatus.FINISHED
        self._submit(LogRun(trial_id, tags={Tag.STATUS: status}), config)
        self._submit(TerminateRun(trial_id, RunStatus.FINISHED), config)
        self._status[trial_id] = status

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        summary, _ = trial_error(trial)
        if is_disk_full(summary):  # a retry would fail the same way: stop the study instead
            raise DiskFull(None, summary)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        summary, trace = trial_error(trial)
        if is_disk_full(summary):
            raise DiskFull(None, summary)
        self._fail(_config(trial), summary, trace)

    def stop_on_full_disk(self) -> bool:
        """The disk filled: stop writing (the unsent writes stay in the spool), free the space
        kept for this, and mark the study interrupted in the store directly; False when the
        store cannot take even that (it is on the full disk too)."""
        if self.writer is not None:
            self.writer.abandon()
            self.writer = None
        try:
            apply_parent_status(
                MlflowClient(self.tracking_uri), self.parent_run_id, StudyStatus.INTERRUPTED
            )
        except Exception:
            return False
        return True

    def _fail(self, config: TrialConfig, error: str, trace: str = "") -> None:
        tags = {Tag.STATUS: TrialStatus.FAILED, Tag.ERROR: error[:ERROR_TAG_LIMIT]}
        self._submit(LogRun(config.trial_id, tags=tags), config)
        if trace:
            self._submit(LogText(config.trial_id, trace, ERROR_ARTIFACT), config)
        self._submit(TerminateRun(config.trial_id, RunStatus.FAILED), config)
        self._status[config.trial_id] = TrialStatus.FAILED

    def _set_aside(self, config: TrialConfig, note: str) -> None:
        """A trial's unreadable checkpoint was kept aside and it starts again: say so, once."""
        log.warning(
            "trial %s: its checkpoint could not be read, kept as %s; it starts again from scratch",
            config.trial_id,
            note,
        )  # the epochs MLflow holds are not logged again (the same seed retrains them alike)
        self._submit(LogRun(config.trial_id, tags={Tag.SET_ASIDE: note[:ERROR_TAG_LIMIT]}), config)


def _config(trial: Any) -> TrialConfig:
    """The TrialConfig a Tune trial runs (its param space holds the validated dict)."""
    return TrialConfig.model_validate(trial.config["trial"])
