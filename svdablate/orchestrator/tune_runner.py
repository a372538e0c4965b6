"""Ray Tune runs the grid; the driver records it in MLflow; a manifest makes it resumable.

A study lives in `<results-dir>`: `mlflow.db` (unless `--tracking-uri`), `ray/` (Tune's
experiment state and the trials' checkpoints, unless `--storage-path`) and
`studies/<parent-run-id>.json`, the manifest that `resume`, `--extend` and `status` read.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ray import tune

from .errors import UserError


@dataclass
class Resources:
    """What each trial asks of the cluster, and how many run at once."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 2


@dataclass
class Study:
    """A study's manifest: enough to resume, extend or inspect it from another process."""

    parent_run_id: str
    name: str
    grid_id: str
    tracking_uri: str
    storage_path: str
    results_dir: str
    resources: dict[str, Any]
    configs: list[dict[str, Any]]
    tune_experiments: list[str] = field(default_factory=list)
    address: str | None = None

    def save(self) -> Path:
        path = manifest_path(self.results_dir, self.parent_run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, default=str))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, results_dir: str | os.PathLike, run_id: str | None = None) -> Study:
        """The manifest of `run_id`, or of the newest study under `results_dir`."""
        folder = Path(results_dir) / "studies"
        if run_id is None:
            candidates = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
            if not candidates:
                raise UserError(f"no study under {folder}: run `svdablate run` first")
            path = candidates[-1]
        else:
            path = manifest_path(results_dir, run_id)
            if not path.exists():
                raise UserError(
                    f"no study {run_id} under {folder}: pass the --results-dir it was run with"
                )
        return cls(**json.loads(path.read_text()))


def manifest_path(results_dir: str | os.PathLike, run_id: str) -> Path:
    return Path(results_dir) / "studies" / f"{run_id}.json"


def default_tracking_uri(results_dir: str | os.PathLike) -> str:
    """`sqlite:///<results-dir>/mlflow.db`, absolute, resolved on the driver."""
    return f"sqlite:///{Path(results_dir).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None, results_dir: str | os.PathLike) -> str:
    """Default SQLite store; relative SQLite paths made absolute; servers checked as reachable."""
    if not uri:
        Path(results_dir).mkdir(parents=True, exist_ok=True)
        return default_tracking_uri(results_dir)
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        raw = uri[len("sqlite:///") :]
        path = Path(raw) if raw.startswith("/") else Path.cwd() / raw
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path.resolve()}"
    if parsed.scheme in ("http", "https"):
        _check_reachable(
            parsed.hostname or "",
            parsed.port or 80,
            "MLflow tracking server",
            uri,
            "start it with `mlflow server` or omit --tracking-uri for the local store",
        )
    return uri


def _check_reachable(host: str, port: int, what: str, address: str, fix: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=5):
            return
    except OSError as exc:
        raise UserError(
            f"cannot reach the {what} at {address} ({exc.strerror or exc}): {fix}"
        ) from None


def connect_ray(address: str | None) -> None:
    """Join the Ray cluster at `address` (or RAY_ADDRESS); start a local one without either."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address not in ("auto", "local"):
        parsed = urlparse(address if "://" in address else f"ray://{address}")
        default_port = 10001 if address.startswith("ray://") else 6379
        _check_reachable(
            parsed.hostname or "",
            parsed.port or default_port,
            "Ray cluster",
            address,
            "start one with `ray start --head` or omit --address for a local Ray",
        )
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    local = address in (None, "local")
    host = "" if local else urlparse(f"//{address.split('://')[-1]}").hostname or ""
    loopback = local or host.startswith("127.") or host == "localhost"
    if loopback:
        # Ray resolves "this node" to the first non-loopback interface unless told otherwise;
        # a local (or loopback) cluster then talks over loopback only.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(
        address=None if local else address,
        # A Ray started here listens on loopback only; a loopback cluster is joined on loopback.
        _node_ip_address="127.0.0.1" if loopback else None,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        configure_logging=True,
    )


def _trainable(config: dict[str, Any], done: frozenset[str] = frozenset()) -> None:
    """Ray Tune trainable around `train_trial`: a checkpoint every epoch, resumes from one."""
    import torch

    from .trial import save_state, train_trial

    trial_config = config["trial"]
    if trial_config["trial_id"] in done:
        return  # finished before a driver restart: never train it twice
    torch.set_num_threads(max(1, int(trial_config.get("cpus") or 1)))

    def report(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as folder:
            save_state(state, folder)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        train_trial(trial_config, report)
    else:
        with checkpoint.as_directory() as folder:
            train_trial(trial_config, report, folder)


class RichProgress:
    """One rich progress bar over trials with running/finished/failed/diverged counts and ETA."""

    def __init__(self, total: int, description: str, already_done: int = 0) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self.counts: Counter[str] = Counter()
        self.task = self.progress.add_task(description, total=total, counts="", completed=0)
        self.progress.update(self.task, completed=already_done)

    def update(self, counts: Counter[str], completed: int) -> None:
        text = " ".join(f"{k}={counts[k]}" for k in ("running", "finished", "failed", "diverged"))
        self.progress.update(self.task, completed=completed, counts=text)


class ProgressCallback(tune.Callback):
    """Feeds trial state changes to the progress bar; pickles to a no-op (Tune saves it)."""

    def __init__(self, progress: RichProgress | None, base_done: int) -> None:
        self.progress = progress
        self.base_done = base_done
        self.status: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"status": self.status, "base_done": self.base_done}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.progress, self.status, self.base_done = None, state["status"], state["base_done"]

    def _set(self, trial, status: str) -> None:
        self.status[trial.trial_id] = status
        if self.progress is not None:
            counts = Counter(self.status.values())
            done = counts["finished"] + counts["failed"] + counts["diverged"]
            self.progress.update(counts, self.base_done + done)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._set(trial, "running")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("diverged"):
            self._set(trial, "diverged")

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.status.get(trial.trial_id) != "diverged":
            self._set(trial, "finished")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._set(trial, "failed")


def check_resources(resources: Resources) -> None:
    import ray

    available = ray.cluster_resources()
    if resources.gpus_per_trial > 0 and available.get("GPU", 0) <= 0:
        raise UserError(
            f"the Ray cluster has no GPU but each trial asks for {resources.gpus_per_trial}: "
            "pass --gpus-per-trial 0 (CPU) or --smoke, or connect to a GPU cluster with --address"
        )
    if resources.cpus_per_trial > available.get("CPU", 0):
        raise UserError(
            f"each trial asks for {resources.cpus_per_trial} CPUs but the Ray cluster has "
            f"{available.get('CPU', 0):g}: lower --cpus-per-trial"
        )


def run_configs(
    study: Study,
    configs: list[dict[str, Any]],
    resources: Resources,
    *,
    restore: bool = False,
    show_progress: bool = True,
    keep_checkpoints: bool = True,
) -> dict[str, int]:
    """Run (or restore) one Tune experiment of `configs` under the study's MLflow parent run."""
    from .mlflow_writer import MLflowRecorder, set_parent_status

    recorder = MLflowRecorder(study.tracking_uri, study.parent_run_id)
    done = frozenset(recorder.finished_trials())
    todo = [c for c in configs if c["trial_id"] not in done]
    set_parent_status(study.tracking_uri, study.parent_run_id, "running")
    counts = {"trials": len(configs), "skipped_finished": len(configs) - len(todo)}
    if not todo:
        return counts
    for config in todo:
        config["cpus"] = resources.cpus_per_trial
        config["gpu_fraction"] = (
            resources.gpus_per_trial if 0 < resources.gpus_per_trial < 1 else None
        )
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, done=done),
        {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial},
    )
    progress = RichProgress(len(configs), study.name, already_done=len(configs) - len(todo))
    callbacks = [recorder, ProgressCallback(progress, len(configs) - len(todo))]
    experiment = study.tune_experiments[-1]
    path = _join(study.storage_path, experiment)
    began = time.perf_counter()
    with _maybe_live(progress, show_progress):
        if restore and _tune_state_exists(path):
            tuner = tune.Tuner.restore(
                path,
                trainable=trainable,
                resume_unfinished=True,
                resume_errored=True,
            )
        else:
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search(todo)},
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=resources.max_concurrent,
                    reuse_actors=True,  # a process per slot imports torch once, not per trial
                    trial_name_creator=lambda t: t.config["trial"]["trial_id"],
                    trial_dirname_creator=lambda t: t.config["trial"]["trial_id"],
                ),
                run_config=tune.RunConfig(
                    name=experiment,
                    storage_path=study.storage_path,
                    failure_config=tune.FailureConfig(max_failures=resources.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    callbacks=callbacks,
                    verbose=0,
                ),
            )
        if restore and _tune_state_exists(path):
            # Tuner.restore unpickles the old driver's callbacks; give it ones bound to this driver.
            tuner._local_tuner.get_run_config().callbacks = callbacks
        results = tuner.fit()
    errors = sum(1 for r in results if r.error is not None)
    if not keep_checkpoints:
        counts["checkpoints_removed"] = prune_checkpoints(
            r.path for r in results if r.error is None
        )
    counts.update(errored=errors, seconds=round(time.perf_counter() - began, 1))
    counts["mlflow_write_seconds"] = round(recorder.write_seconds, 3)
    counts["epochs_logged"] = recorder.epochs_logged
    return counts


def prune_checkpoints(trial_paths) -> int:
    """Delete the checkpoints of finished trials (local storage); returns how many went."""
    removed = 0
    for path in trial_paths:
        if not path or "://" in str(path):
            continue  # remote storage: its own lifecycle rules apply
        for checkpoint in Path(path).glob("checkpoint_*"):
            shutil.rmtree(checkpoint, ignore_errors=True)
            removed += 1
    return removed


def _maybe_live(progress: RichProgress, show: bool):
    import contextlib

    return progress.progress if show else contextlib.nullcontext()


def _join(storage_path: str, name: str) -> str:
    return f"{storage_path.rstrip('/')}/{name}"


def _tune_state_exists(path: str) -> bool:
    if "://" in path:
        return True
    return Path(path).exists() and any(Path(path).glob("experiment_state*.json"))


def new_study(
    name: str,
    configs: list[dict[str, Any]],
    *,
    results_dir: str,
    tracking_uri: str,
    storage_path: str | None,
    resources: Resources,
    parent_tags: dict[str, str],
    address: str | None = None,
) -> Study:
    """Create the MLflow parent run and the manifest of a new study."""
    from .mlflow_writer import create_parent_run

    grid_id = uuid.uuid4().hex[:8]
    storage = storage_path or str((Path(results_dir) / "ray").resolve())
    tags = {f"svdablate.{k}": v for k, v in parent_tags.items()}
    tags["svdablate.grid_id"] = grid_id
    tags["svdablate.results_dir"] = str(Path(results_dir).resolve())
    # A local store keeps its artifacts (tables, figures) beside it, not in the caller's cwd.
    artifacts = (
        (Path(results_dir) / "mlartifacts").resolve().as_uri()
        if tracking_uri.startswith("sqlite:")
        else None
    )
    parent = create_parent_run(
        tracking_uri,
        name,
        tags,
        {"trials": len(configs), "resources": asdict(resources), "grid_id": grid_id},
        artifact_location=artifacts,
    )
    study = Study(
        parent_run_id=parent,
        name=name,
        grid_id=grid_id,
        tracking_uri=tracking_uri,
        storage_path=storage,
        results_dir=str(Path(results_dir).resolve()),
        resources=asdict(resources),
        configs=configs,
        tune_experiments=[f"{name}-{grid_id}"],
        address=address,
    )
    study.save()
    _log_grid(study)
    return study


def _log_grid(study: Study) -> None:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "grid.json"
        path.write_text(json.dumps(study.configs, indent=1, default=str))
        MlflowClient(study.tracking_uri).log_artifact(study.parent_run_id, str(path))


def extend_study(study: Study, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add the configs not yet in the study (new seeds or rows) as a new Tune experiment."""
    known = {c["trial_id"] for c in study.configs}
    added = [c for c in configs if c["trial_id"] not in known]
    study.configs.extend(added)
    study.tune_experiments.append(f"{study.name}-{study.grid_id}-ext{len(study.tune_experiments)}")
    study.save()
    _log_grid(study)
    return added


def finish_study(study: Study, counts: dict[str, int]) -> None:
    from .mlflow_writer import set_parent_status

    set_parent_status(
        study.tracking_uri,
        study.parent_run_id,
        "finished" if not counts.get("errored") else "failed",
    )
