"""One trial: train a model with a meta-layer and treatments, report telemetry (DESIGN §6).

`train_trial(config, report_fn, checkpoint_dir)` is a plain function: it runs without Ray (tests,
debugging, the orchestration benchmark) and Ray Tune wraps it in `tune_runner`. The metric names
it reports are `svdablate.schema.Metric`'s.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from svdablate.data.datasets import build_datasets
from svdablate.metalayers import MetaLayerFailure
from svdablate.models import SVDNet
from svdablate.schema import Metric, ResultKey, TrialResult, TrialStatus
from svdablate.spec.config import TrialConfig
from svdablate.training import faults
from svdablate.training.batches import make_batches
from svdablate.training.checkpoint_files import STATE_FILE, load_tensors, read_trial_state
from svdablate.training.step import (
    DIVERGED,
    EpochTelemetry,
    assemble_step,
    autocast_context,
    build_network,
    to_device,
    topk_wrong,
    train_step,
)

ReportFn = Callable[[dict[str, Any], dict[str, Any]], None]


def resolve_device(requested: str | None = "auto") -> torch.device:
    """`auto` picks the GPU when one is visible to this process, else the CPU."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _metalayer_method(config: TrialConfig, epoch: int) -> str:
    """Hybrid protocol (ICCV'21 §3.4): Newton–Schulz before `switch_epoch`, the row's after."""
    if config.switch_epoch is not None and epoch < config.switch_epoch:
        return "ns"
    return config.method


def load_pretrained(model: SVDNet, path: str) -> list[str]:
    """Initialise from a trial's `state.pt` or a plain state dict (ICCV'21 FGVC); returns the
    names not loaded, which may only be the classifier's (another dataset's: it starts afresh, as
    official `model_init.py` makes a new one). A file that leaves any other tensor unloaded
    raises: a fine-tuned trial never trains from scratch (`checkpoints.check_checkpoints` says
    so before Ray starts)."""
    state = load_tensors(path)  # weights_only: a file never runs code here
    weights = state.get("model", state) if isinstance(state, dict) else state
    own = model.state_dict()
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(own) - set(usable))
    outside = [k for k in skipped if not k.startswith(model.classifier_prefix)]
    if outside:
        raise ValueError(
            f"{path} does not fit this network: {len(outside)} tensors outside the classifier "
            f"are missing or of another shape, e.g. {outside[0]}"
        )
    model.load_state_dict(usable, strict=False)
    return skipped


def _evaluate(
    model: torch.nn.Module, batches: Iterable, device: torch.device, topk: tuple, autocast: str
) -> tuple[list[float], int]:
    """Top-k validation errors in percent; a batch the meta-layer fails on counts as wrong. The
    counts stay on the device until the end."""
    model.eval()
    wrong = torch.zeros(len(topk), dtype=torch.long, device=device)
    total = 0
    failures = 0
    with torch.no_grad():
        for images, labels in batches:
            images, labels = to_device(images, device), to_device(labels, device)
            total += labels.shape[0]
            try:
                with autocast_context(autocast, device):
                    logits = model(images)
            except MetaLayerFailure:
                failures += 1
                wrong += labels.shape[0]
                continue
            wrong += topk_wrong(logits, labels, topk)
    return [100.0 * w / max(total, 1) for w in wrong.tolist()], failures


def train_trial(
    config: TrialConfig | dict[str, Any],
    report_fn: ReportFn,
    checkpoint_dir: str | None = None,
    *,
    gpu_fraction: float | None = None,
) -> dict[str, Any]:
    """Train one trial, calling `report_fn(metrics, state)` after every epoch.

    `state` is everything needed to continue (model, optimizer, schedule, counters); a later call
    with `checkpoint_dir` holding it (`state.pt`) resumes after the last reported epoch. A solver
    failure skips that step's update and is counted; a non-finite loss stops the trial within
    `kappa_every` steps (it is read on the device there: `training.step`), which reports
    `diverged = 1` and returns normally (it is a result, not a crash). `gpu_fraction`
    caps this process's share of the GPU's memory (fractional GPUs under Ray).
    A `state.pt` that cannot be read as a trial's state raises `UnreadableCheckpoint` before
    any data loads.
    """
    if not isinstance(config, TrialConfig):
        config = TrialConfig.model_validate(config)
    seed_everything(config.seed)
    hooks = faults.faults_for(config.row)
    device = resolve_device(config.device)
    if device.type == "cuda" and gpu_fraction:
        torch.cuda.set_per_process_memory_fraction(float(gpu_fraction), device)
    state_path = Path(checkpoint_dir) / STATE_FILE if checkpoint_dir else None
    # Read first: an unreadable state (UnreadableCheckpoint) costs the caller no data loading.
    saved = read_trial_state(state_path, device) if state_path and state_path.exists() else None

    train_set, val_set, info = build_datasets(**config.data_args)
    generator = torch.Generator().manual_seed(config.seed)
    train_batches, val_batches, _ = make_batches(
        train_set,
        val_set,
        dataset=config.dataset,
        normalization=config.normalization,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        device=device,
        generator=generator,
    )
    topk = (1, 5) if info.num_classes >= 5 else (1,)

    model = build_network(config, info, _metalayer_method(config, 0))
    if config.init_checkpoint and saved is None:  # a resumed trial has its own weights
        load_pretrained(model, config.init_checkpoint)
    parts, scheduler = assemble_step(model, config, device)
    optimizer = parts.optimizer

    start_epoch, best = 0, {"val_err": math.inf, "val_err5": math.inf}
    failures_total = 0
    if saved is not None:
        state = saved
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best, failures_total = state["epoch"], state["best"], state["failures_total"]
        torch.set_rng_state(state["rng"])
        generator.set_state(state["loader_rng"])

    faults.log_event(hooks, "start_log", config.trial_id, f"start-epoch-{start_epoch}")
    faults.probe(hooks, config.trial_id, "start", str(device))
    nan_epoch = hooks.get("nan_at_epoch")
    last: dict[str, Any] = {}
    for epoch in range(start_epoch, config.epochs):
        faults.inject(hooks, epoch, config.trial_id)
        began = time.perf_counter()
        model.metalayer.method = _metalayer_method(config, epoch)
        model.train()
        tele = EpochTelemetry(device)
        diverged = False
        for step, (images, labels) in enumerate(train_batches):  # no host read but on κ steps
            if config.max_steps_per_epoch is not None and step >= config.max_steps_per_epoch:
                break
            images, labels = to_device(images, device), to_device(labels, device)
            poison = nan_epoch is not None and epoch == int(nan_epoch)
            outcome = train_step(
                parts, images, labels, tele, sampled=step % config.kappa_every == 0, poison=poison
            )
            if outcome == DIVERGED:
                diverged = True
                break
        diverged = diverged or tele.diverged()
        model.metalayer.record_stats = False
        scheduler.step()
        failures_total += tele.failures

        metrics: dict[str, float] = tele.summary()
        used = {"epoch": epoch, "method_used": model.metalayer.method, "device": str(device)}
        if model.metalayer.eigh_placement is not None:
            used["eigh_device"] = model.metalayer.eigh_placement.describe()
        if diverged:
            metrics[Metric.DIVERGED] = 1.0
            metrics[Metric.FAILURES_TOTAL] = float(failures_total)
            metrics[Metric.EPOCH_SECONDS] = time.perf_counter() - began
            report = TrialResult(metrics=metrics, **used).as_report()
            report_fn(report, None)
            faults.log_event(hooks, "completion_log", config.trial_id, TrialStatus.DIVERGED)
            return {**report, ResultKey.STATUS: TrialStatus.DIVERGED}
        errors, eval_failures = _evaluate(model, val_batches, device, topk, config.autocast)
        failures_total += eval_failures
        metrics[Metric.VAL_ERR] = errors[0]
        best["val_err"] = min(best["val_err"], errors[0])
        metrics[Metric.BEST_VAL_ERR] = best["val_err"]
        if len(errors) > 1:
            metrics[Metric.VAL_ERR5] = errors[1]
            best["val_err5"] = min(best["val_err5"], errors[1])
            metrics[Metric.BEST_VAL_ERR5] = best["val_err5"]
        metrics[Metric.FAILURES] = float(tele.failures + eval_failures)
        metrics[Metric.FAILURES_TOTAL] = float(failures_total)
        metrics[Metric.DIVERGED] = 0.0
        metrics[Metric.EPOCH_SECONDS] = time.perf_counter() - began
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch + 1,
            "best": dict(best),
            "failures_total": failures_total,
            "rng": torch.get_rng_state(),
            "loader_rng": generator.get_state(),
        }
        last = TrialResult(metrics=metrics, **used).as_report()
        report_fn(last, state)
    faults.log_event(hooks, "completion_log", config.trial_id, TrialStatus.FINISHED)
    faults.probe(hooks, config.trial_id, "end", str(device))
    return {**last, ResultKey.STATUS: TrialStatus.FINISHED}


def save_state(state: dict[str, Any], directory: str | os.PathLike) -> Path:
    """Write a trial state where `train_trial(checkpoint_dir=directory)` will find it."""
    path = Path(directory) / STATE_FILE
    torch.save(state, path)
    return path
