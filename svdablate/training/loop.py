"""One trial: train a model with a meta-layer and treatments, report telemetry (DESIGN §6).

`train_trial(config, report_fn, checkpoint_dir)` is a plain function: it runs without Ray (tests,
debugging, the orchestration benchmark) and Ray Tune wraps it in `tune_runner`. The metric names
it reports are `svdablate.schema.Metric`'s.
"""

from __future__ import annotations

import math
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from svdablate.data.datasets import build_datasets
from svdablate.metalayers import MetaLayerFailure
from svdablate.models import SVDNet, build_model
from svdablate.schema import Metric, ResultKey, TrialResult, TrialStatus
from svdablate.spec.config import TrialConfig
from svdablate.training import faults
from svdablate.training.update import Update, apply_update, make_optimizer
from svdablate.treatments import attach_treatments

ReportFn = Callable[[dict[str, Any], dict[str, Any]], None]
STATE_FILE = "state.pt"


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


def topk_errors(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...]) -> list[int]:
    """Number of samples whose label is not among the k highest logits, for each k."""
    top = logits.topk(max(ks), dim=1).indices
    hit = top.eq(target.unsqueeze(1))
    return [int((~hit[:, :k].any(dim=1)).sum()) for k in ks]


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
    state = torch.load(path, map_location="cpu", weights_only=False)
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


class _Telemetry:
    """Per-epoch accumulators of the quantities of DESIGN §6."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.kappas: list[float] = []
        self.ridged_kappas: list[float] = []
        self.ratios: list[float] = []
        self.grad_norms: list[float] = []
        self.total_grad_norms: list[float] = []
        self.lrs: list[float] = []
        self.failures = 0

    def summary(self) -> dict[str, float]:
        def agg(values: list[float], fn: Callable[[list[float]], float]) -> float:
            return float(fn(values)) if values else float("nan")

        summary = {
            Metric.TRAIN_LOSS: agg(self.losses, statistics.fmean),
            Metric.KAPPA_MEAN: agg(self.kappas, statistics.fmean),
            Metric.KAPPA_MEDIAN: agg(self.kappas, statistics.median),
            Metric.KAPPA_MAX: agg(self.kappas, max),
            Metric.LAMBDA_RATIO: agg(self.ratios, statistics.median),
            Metric.PRE_SVD_GRAD_NORM: agg(self.grad_norms, statistics.fmean),
            Metric.PRE_SVD_LR: agg(self.lrs, statistics.fmean),
            Metric.FAILURES: float(self.failures),
        }
        if self.ridged_kappas:  # only where the meta-layer whitens P + εI (dbn)
            summary[Metric.KAPPA_RIDGED_MEDIAN] = statistics.median(self.ridged_kappas)
        if self.total_grad_norms:  # only where the recipe clips the gradient norm
            summary[Metric.GRAD_NORM] = statistics.fmean(self.total_grad_norms)
        return summary

    def record_update(self, update: Update) -> None:
        """Keep a step's gradient norms (before clipping; the Pre-SVD one before NOG) and lr."""
        if update.grad_norm is not None:
            self.total_grad_norms.append(update.grad_norm)
        if update.pre_svd_grad_norm is not None:
            self.grad_norms.append(update.pre_svd_grad_norm)
        self.lrs.append(update.pre_svd_lr)

    def record(self, stats: dict[str, float] | None) -> None:
        """Keep one κ sample of the meta-layer (`last_stats` of its training forward)."""
        if not stats:
            return
        self.kappas.append(stats["kappa"])
        self.ratios.append(stats["lambda_ratio"])
        if "kappa_ridged" in stats:
            self.ridged_kappas.append(stats["kappa_ridged"])


def _evaluate(model: torch.nn.Module, loader: DataLoader, device: torch.device, topk: tuple):
    """Top-k validation errors in percent; a batch the meta-layer fails on counts as wrong."""
    model.eval()
    wrong = [0] * len(topk)
    total = 0
    failures = 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            total += labels.numel()
            try:
                logits = model(images)
            except MetaLayerFailure:
                failures += 1
                wrong = [w + labels.numel() for w in wrong]
                continue
            wrong = [w + e for w, e in zip(wrong, topk_errors(logits, labels, topk), strict=True)]
    return [100.0 * w / max(total, 1) for w in wrong], failures


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
    failure skips that step's update and is counted; a non-finite loss stops the trial, which
    reports `diverged = 1` and returns normally (it is a result, not a crash). `gpu_fraction`
    caps this process's share of the GPU's memory (fractional GPUs under Ray).
    """
    if not isinstance(config, TrialConfig):
        config = TrialConfig.model_validate(config)
    seed_everything(config.seed)
    hooks = faults.faults_for(config.row)
    device = resolve_device(config.device)
    if device.type == "cuda" and gpu_fraction:
        torch.cuda.set_per_process_memory_fraction(float(gpu_fraction), device)

    train_set, val_set, info = build_datasets(
        config.dataset,
        data_dir=config.data_dir,
        download=config.download,
        smoke=config.smoke,
        like=config.fake_like,
        normalization=config.normalization,
    )
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        generator=generator,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
    )
    val_loader = DataLoader(val_set, batch_size=config.batch_size, num_workers=config.num_workers)
    topk = (1, 5) if info.num_classes >= 5 else (1,)

    model = build_model(
        config.model,
        application=config.application,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        image_size=info.image_size,
        method=_metalayer_method(config, 0),
        precision=config.precision,
        options=config.model_options,
    )
    state_path = Path(checkpoint_dir) / STATE_FILE if checkpoint_dir else None
    resuming = state_path is not None and state_path.exists()
    if config.init_checkpoint and not resuming:  # a resumed trial has its own weights
        load_pretrained(model, config.init_checkpoint)
    treatments = attach_treatments(
        model.pre_svd_layer,
        config.treatments,
        ol_weight=config.ol_weight,
        ow_map=config.ow_map,
    )
    # OW as Skew Orthogonal Convolution replaces the conv itself (a no-op for the other maps)
    model.body.set_submodule(model.pre_svd_path, treatments.layer)
    model.to(device)
    optimizer, scheduler = make_optimizer(model, treatments, config)

    start_epoch, best = 0, {"val_err": math.inf, "val_err5": math.inf}
    failures_total = 0
    if resuming:
        state = torch.load(state_path, map_location=device, weights_only=False)
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
        tele = _Telemetry()
        diverged = False
        for step, (images, labels) in enumerate(train_loader):
            if config.max_steps_per_epoch is not None and step >= config.max_steps_per_epoch:
                break
            images, labels = images.to(device), labels.to(device)
            model.metalayer.record_stats = step % config.kappa_every == 0
            optimizer.zero_grad(set_to_none=True)
            try:
                loss = F.cross_entropy(model(images), labels) + treatments.regularizer()
                if nan_epoch is not None and epoch == int(nan_epoch):
                    loss = loss * float("nan")
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    diverged = True
                    break
                loss.backward()
            except MetaLayerFailure:
                tele.failures += 1
                continue
            if model.metalayer.record_stats:
                tele.record(getattr(model.metalayer, "last_stats", None))
            update = apply_update(model, treatments, optimizer, config)  # clip, NOG, OLR, step
            tele.record_update(update)
            tele.losses.append(loss_value)
        model.metalayer.record_stats = False
        scheduler.step()
        failures_total += tele.failures

        metrics: dict[str, float] = tele.summary()
        used = {"epoch": epoch, "method_used": model.metalayer.method, "device": str(device)}
        if diverged:
            metrics[Metric.DIVERGED] = 1.0
            metrics[Metric.FAILURES_TOTAL] = float(failures_total)
            metrics[Metric.EPOCH_SECONDS] = time.perf_counter() - began
            report = TrialResult(metrics=metrics, **used).as_report()
            report_fn(report, None)
            faults.log_event(hooks, "completion_log", config.trial_id, TrialStatus.DIVERGED)
            return {**report, ResultKey.STATUS: TrialStatus.DIVERGED}
        errors, eval_failures = _evaluate(model, val_loader, device, topk)
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
