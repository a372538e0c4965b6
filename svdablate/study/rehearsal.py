"""`svdablate rehearse`: a study's cost measured before it is spent.

For each distinct trial shape of a study (network, dataset and its image size, batch, method,
precision, autocast: `spec.cost.shape_key`) it runs `training.rehearse.rehearse_shape` as a Ray
task that asks for exactly what `run` asks for a trial (`Resources`: its CPUs and its, possibly
fractional, GPUs) on the cluster `run` would join (`--address`, else `RAY_ADDRESS`, else a fresh
local Ray: `runtime.ray_cluster`, as `study.preflight.join_ray` joins, with its one-line errors).
So on a GPU cluster the numbers come from the GPU worker Ray gives a trial, with the trial's CPUs
as torch threads, as the runner sets them; a GPU preset on a CPU cluster is refused (one line:
`--gpus-per-trial 0` rehearses it on the CPU). Shapes run one at a time (they do not disturb
one another), each in a fresh worker process (`max_calls=1`: on a CPU the peak memory is the
process's own). Then it predicts every trial's training seconds from the measured step times
(`spec.cost`), the study's device-hours and its wall time on the cluster (default: the Ray
cluster's GPUs and CPUs).

`--compare-autocast bf16|fp16` measures each shape twice, autocast off and on (the meta-layer
stays in its precision either way), and records the ratios of the step times and of the memory
(on a GPU the allocator's peak; on a CPU what the shape added to its worker's RSS).

The record goes to `<results-dir>/rehearsals/<preset>.json` (what `plan` reads) and to MLflow, in
the experiment `svdablate-rehearsal` (one parent run per rehearsal, one child per shape), both
written here on the driver, so runs on different GPUs can be compared in one place.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from svdablate.errors import UserError
from svdablate.spec.config import Resources, TrialConfig
from svdablate.spec.cost import rehearsal_path, rehearsed_seconds, shape_key
from svdablate.training.loop import resolve_device
from svdablate.training.rehearse import rehearse_shape

EXPERIMENT = "svdablate-rehearsal"
AUTOCAST_MODES = ("bf16", "fp16")


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


def cluster_seen(gpus: int | None = None, cpus: int | None = None) -> Cluster:
    """The joined Ray cluster's whole GPUs and CPUs, either replaced where given."""
    import ray

    seen = ray.cluster_resources()
    return Cluster(
        int(seen.get("GPU", 0)) if gpus is None else gpus,
        int(seen.get("CPU", 1)) if cpus is None else cpus,
    )


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


def with_autocast(config: TrialConfig, mode: str) -> TrialConfig:
    """The trial with the backbone under `mode` autocast (validated whole)."""
    return TrialConfig.model_validate({**config.model_dump(), "autocast": mode})


def measure_shape(
    config: TrialConfig, device: str, steps: int, warmup: int, resources: Resources
) -> dict[str, Any]:
    """One shape's rehearsal where this runs (a Ray worker holding the trial's resources): the
    trial's CPUs as torch threads, `auto` the GPU Ray gave when the trial asks for one; the
    record names the node, process and resources it ran on."""
    torch.set_num_threads(max(1, int(resources.cpus_per_trial)))
    wants_gpu = resources.gpus_per_trial > 0
    target = resolve_device(device if device != "auto" or wants_gpu else "cpu")
    result = rehearse_shape(config, target, steps=steps, warmup=warmup)
    return {
        **result.as_dict(),
        "memory_fraction": result.memory_fraction,
        "device_type": target.type,
        "threads": torch.get_num_threads(),
        "ran_on": _where_this_runs(),
    }


def _where_this_runs() -> dict[str, Any]:
    """The Ray node, worker process and resources of the task running this (empty outside Ray)."""
    import ray

    where: dict[str, Any] = {"hostname": socket.gethostname(), "pid": os.getpid()}
    if not ray.is_initialized():
        return where
    context = ray.get_runtime_context()
    return {
        **where,
        "node_id": context.get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "worker_id": context.get_worker_id(),
        "resources": context.get_assigned_resources(),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
    }


def autocast_saving(off: dict[str, Any], on: dict[str, Any], mode: str) -> dict[str, Any]:
    """What autocast changed, measured: step seconds and peak memory both ways and on/off."""
    return {
        "mode": mode,
        "step_s_off": off["step_s"],
        "step_s_on": on["step_s"],
        "step_ratio": on["step_s"] / off["step_s"],
        "peak_memory_mb_off": off["peak_memory_mb"],
        "peak_memory_mb_on": on["peak_memory_mb"],
        "memory_added_mb_off": off.get("memory_added_mb"),
        "memory_added_mb_on": on.get("memory_added_mb"),
        "memory_ratio": _ratio(on, off, "memory_added_mb") or _ratio(on, off, "peak_memory_mb"),
        "memory_kind": on["memory_kind"],
        "failures_on": on["failures"],
        "nonfinite_grad_steps_on": on["nonfinite_grad_steps"],
    }


def _ratio(on: dict[str, Any], off: dict[str, Any], key: str) -> float | None:
    if not on.get(key) or not off.get(key) or off[key] <= 0:
        return None
    return on[key] / off[key]


def rehearse_study(
    study: Any,
    *,
    address: str | None = None,
    device: str = "auto",
    steps: int = 3,
    warmup: int = 1,
    gpus: int | None = None,
    cpus: int | None = None,
    compare_autocast: str | None = None,
    on_shape: Any = None,
) -> dict[str, Any]:
    """Rehearse every shape of `study` (a `StudyPlan`) through Ray and predict its cost; returns
    the record (written for `plan` and logged to MLflow by :func:`save_rehearsal`)."""
    import ray

    from svdablate.runtime.ray_cluster import check_resources, connect_ray

    resources: Resources = study.resources
    connect_ray(address)  # as `run` joins (join_ray): a bad address is one line, exit 2
    if resources.gpus_per_trial > 0 and not ray.cluster_resources().get("GPU"):
        raise UserError(
            f"the Ray cluster has no GPU but each trial asks for {resources.gpus_per_trial:g}: "
            "rehearse on the CPU with --gpus-per-trial 0, or join a GPU cluster with --address"
        )
    check_resources(resources)  # as `run`: a trial that no node can hold is one line, exit 2
    task = ray.remote(
        num_cpus=resources.cpus_per_trial, num_gpus=resources.gpus_per_trial, max_calls=1
    )(measure_shape)

    def measure(config: TrialConfig) -> dict[str, Any]:
        return ray.get(task.remote(config, device, steps, warmup, resources))

    shapes = []
    for config in distinct_shapes(study.configs).values():
        record = measure(config)
        if compare_autocast:  # the trial's own autocast is one of the two ways, or neither
            own = config.autocast
            off = record if own == "off" else measure(with_autocast(config, "off"))
            on = (
                record
                if own == compare_autocast
                else measure(with_autocast(config, compare_autocast))
            )
            record["autocast"] = autocast_saving(off, on, compare_autocast)
        shapes.append(record)
        if on_shape:
            on_shape(record)
    measured = {r["shape"]: r["step_s"] for r in shapes}
    on_gpu = bool(shapes) and shapes[0]["device_type"] == "cuda"
    cluster = cluster_seen(gpus, cpus)
    return {
        "preset": study.name,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": shapes[0]["device"] if shapes else "-",
        "device_type": "cuda" if on_gpu else "cpu",
        "torch": torch.__version__,
        "threads": None if on_gpu else shapes[0]["threads"] if shapes else None,
        "steps": steps,
        "ray": {
            "address": address or os.environ.get("RAY_ADDRESS") or "local",
            "resources_per_trial": {
                "CPU": resources.cpus_per_trial,
                "GPU": resources.gpus_per_trial,
            },
        },
        "shapes": shapes,
        **predict(study.configs, measured, resources, cluster, on_gpu),
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
    params["ray_address"] = record.get("ray", {}).get("address")
    parent = client.create_run(
        experiment_id, run_name=f"{record['preset']} on {record['device']}"
    ).info.run_id
    client.log_batch(parent, params=_params(params), metrics=_metrics(record, _PREDICTIONS))
    for shape in record["shapes"]:
        child = client.create_run(
            experiment_id, run_name=shape["shape"], tags={"mlflow.parentRunId": parent}
        ).info.run_id
        values = {**shape, **{f"{p}_s": v for p, v in shape["phases"].items()}}
        saving = shape.get("autocast") or {}
        values.update({f"autocast_{k}": v for k, v in saving.items()})
        ran_on = shape.get("ran_on", {})
        client.log_batch(
            child,
            params=_params({"shape": shape["shape"], "row": shape["row"], "feed": shape["feed"],
                            "eigh_device": shape["eigh_device"], "device": shape["device"],
                            "node_ip": ran_on.get("node_ip"), "hostname": ran_on.get("hostname"),
                            "ray_resources": ran_on.get("resources"),
                            "autocast_compared": saving.get("mode")}),
            metrics=_metrics(values, _SHAPE_METRICS),
        )  # fmt: skip
        client.set_terminated(child)
    client.set_terminated(parent)


_PREDICTIONS = ("device_hours", "wall_hours", "trials", "concurrency")
_SHAPE_METRICS = (
    "step_s", "data_s", "forward_s", "metalayer_s", "backward_s", "optimizer_s", "peak_memory_mb",
    "memory_fraction", "loader_images_per_s", "demand_images_per_s", "failures",
    "nonfinite_grad_steps", "busy_fraction", "autocast_step_s_on", "autocast_step_ratio",
    "autocast_peak_memory_mb_on", "autocast_memory_ratio", "memory_added_mb",
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
