"""Driver-side MLflow writing: one parent run per study, one child run per trial (DESIGN §6).

Only the driver writes: trials report to Ray Tune and this callback turns each result into one
batched `log_batch` call, so a SQLite store on the driver's disk serves a whole cluster.
"""

from __future__ import annotations

import json
import time
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from ray import tune

EPOCH_METRICS = (
    "train_loss",
    "val_err",
    "val_err5",
    "best_val_err",
    "best_val_err5",
    "kappa_mean",
    "kappa_median",
    "kappa_max",
    "lambda_ratio",
    "failures",
    "failures_total",
    "pre_svd_grad_norm",
    "pre_svd_lr",
    "epoch_seconds",
    "diverged",
)
TAG = "svdablate."


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config → flat `a.b` keys with string values (MLflow params)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return flat


def get_or_create_experiment(
    client: MlflowClient, name: str, artifact_location: str | None = None
) -> str:
    """Experiment id of `name`, created if missing (artifacts where given, else the store's)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location)


def create_parent_run(
    tracking_uri: str,
    experiment: str,
    tags: dict[str, str],
    params: dict[str, Any],
    artifact_location: str | None = None,
) -> str:
    """Create the study's parent run and return its id."""
    client = MlflowClient(tracking_uri)
    experiment_id = get_or_create_experiment(client, experiment, artifact_location)
    run = client.create_run(experiment_id, tags={**tags, TAG + "role": "parent"})
    flat = flatten(params)
    client.log_batch(run.info.run_id, params=[Param(k, v[:6000]) for k, v in flat.items()])
    return run.info.run_id


def child_runs(client: MlflowClient, parent_run_id: str) -> dict[str, Any]:
    """Existing child runs of a parent, keyed by trial id."""
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'",
        max_results=50000,
    )
    return {r.data.tags.get(TAG + "trial_id"): r for r in runs}


class MLflowRecorder(tune.Callback):
    """Ray Tune callback that records every trial as an MLflow child run of the study's parent.

    Resume-safe: an existing child run (same trial id under the same parent) is reused, epochs it
    already holds are never logged twice, and a trial already finished is left untouched.
    """

    def __init__(self, tracking_uri: str, parent_run_id: str) -> None:
        self.tracking_uri = tracking_uri
        self.parent_run_id = parent_run_id
        self._client: MlflowClient | None = None
        self._runs: dict[str, str] = {}
        self._next_epoch: dict[str, int] = {}
        self._closed: set[str] = set()
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
        for trial_id, run in child_runs(self._client, self.parent_run_id).items():
            self._runs[trial_id] = run.info.run_id
            self._next_epoch[trial_id] = int(run.data.metrics.get("epochs_completed", 0))
            if run.data.tags.get(TAG + "status") in ("finished", "diverged"):
                self._closed.add(trial_id)

    def finished_trials(self) -> set[str]:
        """Trial ids whose child run is already finished or diverged."""
        _ = self.client
        return set(self._closed)

    def _run_id(self, config: dict[str, Any]) -> str:
        trial_id = config["trial_id"]
        if trial_id in self._runs:
            return self._runs[trial_id]
        client = self.client
        if trial_id in self._runs:  # loaded by the first use of the client
            return self._runs[trial_id]
        parent = client.get_run(self.parent_run_id)
        tags = {
            MLFLOW_PARENT_RUN_ID: self.parent_run_id,
            MLFLOW_RUN_NAME: trial_id,
            TAG + "role": "trial",
            TAG + "row": config["row"],
            TAG + "seed": str(config["seed"]),
            TAG + "config_hash": config["config_hash"],
            TAG + "trial_id": trial_id,
            TAG + "status": "running",
            TAG + "method": config["method"],
            TAG + "protocol": config["protocol"],
            TAG + "dataset": str(config.get("fake_like") or config["dataset"]),
            TAG + "precision": config["precision"],
            TAG + "grid_id": parent.data.tags.get(TAG + "grid_id", ""),
        }
        run = client.create_run(parent.info.experiment_id, tags=tags, run_name=trial_id)
        params = [Param(k, v[:6000]) for k, v in flatten(config).items()]
        for i in range(0, len(params), 100):
            client.log_batch(run.info.run_id, params=params[i : i + 100])
        self._runs[trial_id] = run.info.run_id
        self._next_epoch[trial_id] = 0
        return run.info.run_id

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        config = trial.config["trial"]
        if config["trial_id"] in self.finished_trials():
            return
        run_id = self._run_id(config)
        self.client.set_tag(run_id, TAG + "status", "running")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        config = trial.config["trial"]
        trial_id = config["trial_id"]
        if trial_id in self._closed or "epoch" not in result:
            return
        epoch = int(result["epoch"])
        run_id = self._run_id(config)
        if epoch < self._next_epoch.get(trial_id, 0):
            return  # replayed after a retry or resume: MLflow already holds this epoch
        began = time.perf_counter()
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(result[key]), now, epoch)
            for key in EPOCH_METRICS
            if isinstance(result.get(key), int | float)
        ]
        metrics.append(Metric("epochs_completed", float(epoch + 1), now, epoch))
        tags = [RunTag(TAG + "method_used", str(result.get("method_used", "")))]
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self.write_seconds += time.perf_counter() - began
        self.epochs_logged += 1
        self._next_epoch[trial_id] = epoch + 1
        self._last[trial_id] = dict(result)

    def _final_metrics(self, run_id: str, last: dict[str, Any]) -> list[Metric]:
        now = int(time.time() * 1000)
        finals = {
            "final_val_err": last.get("val_err"),
            "final_val_err5": last.get("val_err5"),
            "best_val_err": last.get("best_val_err"),
            "best_val_err5": last.get("best_val_err5"),
            "final_kappa": last.get("kappa_median"),
            "failures_total": last.get("failures_total"),
        }
        if not last:  # resumed driver: the final epoch was logged before the restart
            run = self.client.get_run(run_id)
            history = run.data.metrics
            finals = {
                "final_val_err": history.get("val_err"),
                "final_val_err5": history.get("val_err5"),
                "best_val_err": history.get("best_val_err"),
                "best_val_err5": history.get("best_val_err5"),
                "final_kappa": history.get("kappa_median"),
                "failures_total": history.get("failures_total"),
            }
        return [Metric(k, float(v), now, 0) for k, v in finals.items() if v is not None]

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        config = trial.config["trial"]
        trial_id = config["trial_id"]
        if trial_id in self._closed:
            return
        run_id = self._run_id(config)
        last = self._last.get(trial_id, {})
        diverged = bool(last.get("diverged")) or self._logged_diverged(run_id)
        status = "diverged" if diverged else "finished"
        self.client.log_batch(
            run_id,
            metrics=self._final_metrics(run_id, last),
            tags=[RunTag(TAG + "status", status)],
        )
        self.client.set_terminated(run_id, "FINISHED")
        self._closed.add(trial_id)

    def _logged_diverged(self, run_id: str) -> bool:
        return bool(self.client.get_run(run_id).data.metrics.get("diverged"))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        run_id = self._run_id(trial.config["trial"])
        error = str(getattr(trial, "error_msg", "") or "")[:500]
        self.client.log_batch(
            run_id, tags=[RunTag(TAG + "status", "failed"), RunTag(TAG + "error", error)]
        )
        self.client.set_terminated(run_id, "FAILED")


def set_parent_status(tracking_uri: str, parent_run_id: str, status: str) -> None:
    """Mark the parent run running, finished or failed."""
    client = MlflowClient(tracking_uri)
    if status == "running":
        client.update_run(parent_run_id, status="RUNNING")
    else:
        client.set_terminated(parent_run_id, "FINISHED" if status == "finished" else "FAILED")
    client.set_tag(parent_run_id, TAG + "status", status)


__all__ = [
    "EPOCH_METRICS",
    "MLflowRecorder",
    "child_runs",
    "create_parent_run",
    "flatten",
    "get_or_create_experiment",
    "set_parent_status",
]
