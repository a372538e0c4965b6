"""`svdablate rehearse`: a study's cost measured before it is spent.

For each distinct trial shape of a study (network, dataset and its image size, batch, method,
precision, autocast: `spec.cost.shape_key`) it runs `training.rehearse.rehearse_shape` on the
device the study's trials would get (the GPU when this machine has one and the preset asks for
GPUs, else the CPU, with the trial's CPUs as torch threads, as the runner sets them), then
predicts every trial's training seconds from the measured step times (`spec.cost`), the study's
device-hours and its wall time on the cluster given (default: this machine's GPUs or CPUs).

The record goes to `<results-dir>/rehearsals/<preset>.json` (what `plan` reads) and to MLflow, in
the experiment `svdablate-rehearsal` (one parent run per rehearsal, one child per shape), so runs
on different GPUs can be compared in one place. Unlike `run`, it runs in this process, not
through Ray: a few steps per shape do not need a scheduler.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from svdablate.spec.config import Resources, TrialConfig
from svdablate.spec.cost import rehearsal_path, rehearsed_seconds, shape_key
from svdablate.training.loop import resolve_device
from svdablate.training.rehearse import ShapeRehearsal, rehearse_shape

EXPERIMENT = "svdablate-rehearsal"


def distinct_shapes(configs: list[TrialConfig]) -> dict[str, TrialConfig]:
    """The first trial of each shape, in the grid's order (a hybrid trial's NS epochs are the
    NS row's shape)."""
    shapes: dict[str, TrialConfig] = {}
    for config in configs:
        shapes.setdefault(shape_key(config), config)
    return shapes


@dataclass(frozen=True)
class Cluster:
    """What the study would run on: whole GPUs and CPUs."""

    gpus: int
    cpus: int

    def concurrency(self, resources: Resources, on_gpu: bool) -> int:
        """Trials at once: by GPUs when the trials use one, else by CPUs."""
        if on_gpu and resources.gpus_per_trial > 0:
            return max(1, math.floor(self.gpus / resources.gpus_per_trial))
        return max(1, math.floor(self.cpus / resources.cpus_per_trial))


def this_machine() -> Cluster:
    return Cluster(torch.cuda.device_count(), os.cpu_count() or 1)


def predict(
    configs: list[TrialConfig],
    measured: dict[str, float],
    resources: Resources,
    cluster: Cluster,
    on_gpu: bool,
) -> dict[str, Any]:
    """Device-hours (GPU-hours, or CPU-core-hours) and wall hours of the study's training steps
    from the measured seconds per step by shape; wall time is the larger of the work spread over
    the concurrent trials and the longest trial."""
    seconds = [rehearsed_seconds(c, measured) for c in configs]
    known = [s for s in seconds if s is not None]
    share = resources.gpus_per_trial if on_gpu and resources.gpus_per_trial > 0 else None
    share = share or resources.cpus_per_trial
    concurrency = cluster.concurrency(resources, on_gpu)
    wall = max(sum(known) / concurrency, max(known, default=0.0))
    return {
        "trials": len(configs),
        "trials_predicted": len(known),
        "device_hours": sum(known) * share / 3600,
        "unit": "GPU-hours" if on_gpu else "CPU-core-hours",
        "wall_hours": wall / 3600,
        "concurrency": concurrency,
        "cluster": f"{cluster.gpus} GPUs, {cluster.cpus} CPUs",
    }


def _shape_record(result: ShapeRehearsal) -> dict[str, Any]:
    return {**result.as_dict(), "memory_fraction": result.memory_fraction}


def rehearse_study(
    study: Any,
    *,
    device: str = "auto",
    steps: int = 3,
    warmup: int = 1,
    cluster: Cluster | None = None,
    on_shape: Any = None,
) -> dict[str, Any]:
    """Rehearse every shape of `study` (a `Study`) and predict its cost; returns the record
    (also written for `plan` and logged to MLflow by :func:`save_rehearsal`)."""
    resources: Resources = study.resources
    wants_gpu = resources.gpus_per_trial > 0
    target = resolve_device(device if device != "auto" or wants_gpu else "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(int(resources.cpus_per_trial), os.cpu_count() or 1)))
    try:
        results = []
        for config in distinct_shapes(study.configs).values():
            result = rehearse_shape(config, target, steps=steps, warmup=warmup)
            results.append(result)
            if on_shape:
                on_shape(result)
    finally:
        torch.set_num_threads(threads)
    measured = {r.shape: r.step_s for r in results}
    on_gpu = target.type == "cuda"
    return {
        "preset": study.name,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": results[0].device if results else str(target),
        "device_type": target.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads() if not on_gpu else None,
        "steps": steps,
        "shapes": [_shape_record(r) for r in results],
        **predict(study.configs, measured, resources, cluster or this_machine(), on_gpu),
    }


def save_rehearsal(record: dict[str, Any], results_dir: str | Path, tracking_uri: str) -> Path:
    """Write the record where `plan` finds it and log it to MLflow (EXPERIMENT)."""
    path = rehearsal_path(results_dir, record["preset"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    _log_to_mlflow(record, tracking_uri)
    return path


def _log_to_mlflow(record: dict[str, Any], uri: str) -> None:
    from mlflow import MlflowClient

    from svdablate.schema import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
    from svdablate.store.tracking import check_store

    check_store(uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(EXPERIMENT, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    )
    params = {k: str(record[k]) for k in ("preset", "device", "torch", "steps", "cluster", "unit")}
    parent = client.create_run(
        experiment_id, run_name=f"{record['preset']} on {record['device']}"
    ).info.run_id
    client.log_batch(parent, params=_params(params), metrics=_metrics(record, _PREDICTIONS))
    for shape in record["shapes"]:
        child = client.create_run(
            experiment_id, run_name=shape["shape"], tags={"mlflow.parentRunId": parent}
        ).info.run_id
        values = {**shape, **{f"{p}_s": v for p, v in shape["phases"].items()}}
        client.log_batch(
            child,
            params=_params({"shape": shape["shape"], "row": shape["row"], "feed": shape["feed"],
                            "eigh_device": shape["eigh_device"], "device": shape["device"]}),
            metrics=_metrics(values, _SHAPE_METRICS),
        )  # fmt: skip
        client.set_terminated(child)
    client.set_terminated(parent)


_PREDICTIONS = ("device_hours", "wall_hours", "trials", "concurrency")
_SHAPE_METRICS = (
    "step_s", "data_s", "forward_s", "metalayer_s", "backward_s", "optimizer_s", "peak_memory_mb",
    "memory_fraction", "loader_images_per_s", "demand_images_per_s", "failures",
    "nonfinite_grad_steps", "busy_fraction",
)  # fmt: skip


def _params(values: dict[str, Any]) -> list:
    from mlflow.entities import Param

    return [Param(k, str(v)) for k, v in values.items() if v is not None]


def _metrics(values: dict[str, Any], names: tuple[str, ...]) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [
        Metric(name, float(values[name]), now, 0)
        for name in names
        if isinstance(values.get(name), int | float)
    ]
