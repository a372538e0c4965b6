"""Driver-side MLflow writing: one parent run per study, one child run per trial (DESIGN §6).

Only the driver writes: trials report to Ray Tune, `MLflowRecorder` (a Tune callback) turns each
event into one batched write, so a SQLite store on the driver's disk serves a whole cluster. The
names are `svdablate.schema`'s. A trial's child run is reused after resume, epochs it already
holds are never logged twice, and every metric is logged once per step.
"""

from __future__ import annotations

import time
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from ray import tune

from svdablate.schema import (
    EPOCH_METRICS,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    FINAL_OF,
    Role,
    StudyStatus,
    Tag,
    TrialStatus,
)
from svdablate.schema import Metric as M

from .config import TrialConfig

PARAM_BATCH = 100  # MLflow's limit of params per log_batch
PARAM_VALUE_LIMIT = 6000


def get_or_create_experiment(
    client: MlflowClient, name: str, artifact_location: str | None = None
) -> str:
    """Experiment id of `name`, created if missing (artifacts where given, else the store's),
    tagged as model training so that the MLflow UI opens it on its runs."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        experiment_id = client.create_experiment(name, artifact_location=artifact_location)
    else:
        experiment_id = experiment.experiment_id
    if experiment is None or EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment_id


def create_parent_run(
    tracking_uri: str,
    experiment: str,
    tags: dict[str, str],
    params: dict[str, str],
    artifact_location: str | None = None,
    run_name: str | None = None,
) -> str:
    """Create the study's parent run and return its id."""
    client = MlflowClient(tracking_uri)
    experiment_id = get_or_create_experiment(client, experiment, artifact_location)
    run = client.create_run(experiment_id, tags={**tags, Tag.ROLE: Role.PARENT}, run_name=run_name)
    client.log_batch(
        run.info.run_id,
        params=[Param(k, v[:PARAM_VALUE_LIMIT]) for k, v in params.items()],
    )
    return run.info.run_id


def child_runs(client: MlflowClient, parent_run_id: str) -> dict[str, Any]:
    """Existing child runs of a parent, keyed by trial id."""
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'",
        max_results=50000,
    )
    return {r.data.tags.get(Tag.TRIAL_ID): r for r in runs}


def set_parent_status(tracking_uri: str, parent_run_id: str, status: str) -> None:
    """Mark the parent run running, finished, failed or interrupted (MLflow's KILLED)."""
    client = MlflowClient(tracking_uri)
    mlflow_status = {
        StudyStatus.RUNNING: "RUNNING",
        StudyStatus.FINISHED: "FINISHED",
        StudyStatus.FAILED: "FAILED",
        StudyStatus.INTERRUPTED: "KILLED",
    }[status]
    if status == StudyStatus.RUNNING:
        client.update_run(parent_run_id, status=mlflow_status)
    else:
        client.set_terminated(parent_run_id, mlflow_status)
    client.set_tag(parent_run_id, Tag.STATUS, status)


def trial_tags(config: TrialConfig, parent_run_id: str, grid_id: str) -> dict[str, str]:
    """The tags of a trial's child run (what the report reads)."""
    return {
        MLFLOW_PARENT_RUN_ID: parent_run_id,
        MLFLOW_RUN_NAME: config.trial_id,
        Tag.ROLE: Role.TRIAL,
        Tag.ROW: config.row,
        Tag.SEED: str(config.seed),
        Tag.CONFIG_HASH: config.config_hash,
        Tag.TRIAL_ID: config.trial_id,
        Tag.STATUS: TrialStatus.RUNNING,
        Tag.METHOD: config.method,
        Tag.PROTOCOL: config.protocol,
        Tag.DATASET: config.reported_dataset,
        Tag.PRECISION: config.precision,
        Tag.APPLICATION: config.application,
        Tag.MODEL: config.model,
        Tag.GRID_ID: grid_id,
    }


class MLflowRecorder(tune.Callback):
    """Ray Tune callback that records every trial as an MLflow child run of the study's parent.

    A trial counts as finished only when it reported its last epoch (or diverged): a trial that
    Tune stops on an interrupt stays `running`, to be continued by `resume`. A result carrying
    `error` is a deterministic failure the trial reported instead of raising (never retried).
    """

    def __init__(self, tracking_uri: str, parent_run_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.parent_run_id = parent_run_id
        self._client: MlflowClient | None = None
        self._grid_id = ""
        self._runs: dict[str, str] = {}
        self._next_epoch: dict[str, int] = {}
        self._status: dict[str, str] = {}
        self._last: dict[str, dict[str, Any]] = {}
        self.write_seconds = 0.0
        self.epochs_logged = 0

    def __getstate__(self) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri, "parent_run_id": self.parent_run_id}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["tracking_uri"], state["parent_run_id"])  # type: ignore[misc]

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
            self._load_existing()
        return self._client

    def _load_existing(self) -> None:
        assert self._client is not None
        parent = self._client.get_run(self.parent_run_id)
        self._grid_id = parent.data.tags.get(Tag.GRID_ID, "")
        for trial_id, run in child_runs(self._client, self.parent_run_id).items():
            self._runs[trial_id] = run.info.run_id
            self._next_epoch[trial_id] = int(run.data.metrics.get(M.EPOCHS_COMPLETED, 0))
            self._status[trial_id] = run.data.tags.get(Tag.STATUS, TrialStatus.RUNNING)

    # ---- what the study asks -----------------------------------------------------------------
    def statuses(self) -> dict[str, str]:
        """Trial id → status of every child run (as recorded in MLflow)."""
        _ = self.client
        return dict(self._status)

    def done_trials(self) -> set[str]:
        """Trial ids that are finished or diverged: never trained again."""
        return {t for t, s in self.statuses().items() if s in TrialStatus.DONE}

    # ---- writes -----------------------------------------------------------------------------
    def _run_id(self, config: TrialConfig) -> str:
        trial_id = config.trial_id
        client = self.client  # loads existing runs first
        if trial_id in self._runs:
            return self._runs[trial_id]
        run = client.create_run(
            client.get_run(self.parent_run_id).info.experiment_id,
            tags=trial_tags(config, self.parent_run_id, self._grid_id),
            run_name=trial_id,
        )
        params = [Param(k, v[:PARAM_VALUE_LIMIT]) for k, v in config.as_params().items()]
        for i in range(0, len(params), PARAM_BATCH):
            client.log_batch(run.info.run_id, params=params[i : i + PARAM_BATCH])
        self._runs[trial_id] = run.info.run_id
        self._next_epoch[trial_id] = 0
        self._status[trial_id] = TrialStatus.RUNNING
        return run.info.run_id

    def _timed(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        began = time.perf_counter()
        fn(*args, **kwargs)
        self.write_seconds += time.perf_counter() - began

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        config = _config(trial)
        if self.statuses().get(config.trial_id) in TrialStatus.DONE:
            return
        run_id = self._run_id(config)
        self._timed(self.client.set_tag, run_id, Tag.STATUS, TrialStatus.RUNNING)
        self._status[config.trial_id] = TrialStatus.RUNNING

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        config = _config(trial)
        trial_id = config.trial_id
        if self._status.get(trial_id) in TrialStatus.DONE:
            return
        if result.get("error"):
            self._fail(config, str(result["error"]))
            return
        if "epoch" not in result:
            return
        epoch = int(result["epoch"])
        run_id = self._run_id(config)
        if epoch < self._next_epoch.get(trial_id, 0):
            return  # replayed after a retry or resume: MLflow already holds this epoch
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(result[key]), now, epoch)
            for key in EPOCH_METRICS
            if isinstance(result.get(key), int | float)
        ]
        metrics.append(Metric(M.EPOCHS_COMPLETED, float(epoch + 1), now, epoch))
        done = epoch + 1 >= config.epochs or bool(result.get(M.DIVERGED))
        tags = [RunTag(Tag.METHOD_USED, str(result.get("method_used", "")))]
        if result.get("device"):
            tags.append(RunTag(Tag.DEVICE, str(result["device"])))
        if done:  # the final metrics, once, at the last epoch's step
            metrics += [
                Metric(final, float(result[key]), now, epoch)
                for final, key in FINAL_OF.items()
                if isinstance(result.get(key), int | float)
            ]
        self._timed(self.client.log_batch, run_id, metrics=metrics, tags=tags)
        self.epochs_logged += 1
        self._next_epoch[trial_id] = epoch + 1
        self._last[trial_id] = dict(result)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        config = _config(trial)
        trial_id = config.trial_id
        if self._status.get(trial_id) in (*TrialStatus.DONE, TrialStatus.FAILED):
            return
        last = self._last.get(trial_id, {})
        diverged = bool(last.get(M.DIVERGED)) or self._logged_diverged(trial_id)
        if not diverged and self._next_epoch.get(trial_id, 0) < config.epochs:
            return  # stopped before its last epoch (an interrupt): left for `resume`
        status = TrialStatus.DIVERGED if diverged else TrialStatus.FINISHED
        run_id = self._run_id(config)
        self._timed(self.client.set_tag, run_id, Tag.STATUS, status)
        self._timed(self.client.set_terminated, run_id, "FINISHED")
        self._status[trial_id] = status

    def _logged_diverged(self, trial_id: str) -> bool:
        run_id = self._runs.get(trial_id)
        if run_id is None:
            return False
        return bool(self.client.get_run(run_id).data.metrics.get(M.DIVERGED))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = str(getattr(trial, "error_msg", "") or "")
        self._fail(_config(trial), error)

    def _fail(self, config: TrialConfig, error: str) -> None:
        run_id = self._run_id(config)
        tags = [RunTag(Tag.STATUS, TrialStatus.FAILED), RunTag(Tag.ERROR, error[-500:])]
        self._timed(self.client.log_batch, run_id, tags=tags)
        self._timed(self.client.set_terminated, run_id, "FAILED")
        self._status[config.trial_id] = TrialStatus.FAILED


def _config(trial: Any) -> TrialConfig:
    """The TrialConfig a Tune trial runs (its param space holds the validated dict)."""
    return TrialConfig.model_validate(trial.config["trial"])
