"""A training step that never waits for the device: accumulators on the device, read rarely.

`train_trial`'s loop used to read the loss every step (``float(loss)``), which makes the host wait
for the device to finish the step before it can queue the next. Here every per-step quantity
stays on the device until someone needs it:

* the loss, its finiteness and the gradient norms are summed on the device
  (:class:`EpochTelemetry`); the sums are read once, at the epoch's end;
* divergence (a non-finite loss) is a device flag, read at the κ sampling steps, when the
  meta-layer reports a failure (a failure in the steps after a non-finite loss is divergence, not
  a solver failure) and at the epoch's end: a diverged trial stops within ``kappa_every`` steps
  and is reported as before (``diverged = 1``, the epoch's loss over its finite steps);
* κ is sampled on the κ steps only (the meta-layer's ``record_stats``), as before.

What still synchronises: the meta-layer's own failure checks (one read per forward and one per
backward, ``registry.check_finite``; a solver failure must skip that step's update), an eigh on
the CPU (``eigh_device``) and OLR's learning rate (a Python float the optimizer needs).

Mixed precision (TrialConfig ``autocast``): the backbone's forward under ``torch.autocast``
(bf16, or fp16 with a ``GradScaler``), the meta-layer in its own precision (it turns autocast off
inside), the loss in float32.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from svdablate.data.datasets import DataInfo
from svdablate.metalayers import MetaLayerFailure
from svdablate.models import SVDNet, build_model
from svdablate.schema import Metric
from svdablate.training.update import Update, apply_update, make_optimizer
from svdablate.treatments import attach_treatments
from svdablate.treatments.handle import PreSVDTreatments

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_context(mode: str, device: torch.device) -> AbstractContextManager:
    """``torch.autocast`` of `mode` (off, bf16, fp16) on `device`'s type."""
    if mode == "off":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[mode])


def grad_scaler(mode: str, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 needs its loss scaled (a step whose gradients overflow is skipped); bf16 does not."""
    return torch.amp.GradScaler(device.type) if mode == "fp16" else None


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy without waiting (from pinned memory the copy overlaps the previous step)."""
    return tensor.to(device, non_blocking=True)


class _DeviceMean:
    """A running sum on the device (float64) and its count; read once."""

    def __init__(self, device: torch.device) -> None:
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, value: torch.Tensor, weight: torch.Tensor | float = 1.0) -> None:
        self.total += value.detach().to(torch.float64) * weight
        self.count += weight

    def read(self) -> float:
        count = float(self.count)
        return float(self.total) / count if count else float("nan")


class EpochTelemetry:
    """Per-epoch quantities of DESIGN §6: device sums of the per-step ones, κ samples."""

    def __init__(self, device: torch.device) -> None:
        self.loss = _DeviceMean(device)
        self.grad_norm = _DeviceMean(device)
        self.pre_svd_grad_norm = _DeviceMean(device)
        self.clipped = False
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        self.kappas: list[float] = []
        self.ridged_kappas: list[float] = []
        self.ratios: list[float] = []
        self.lrs: list[float] = []
        self.failures = 0

    def watch(self, loss: torch.Tensor) -> None:
        """Note on the device whether a step's loss is finite (read by :meth:`diverged`)."""
        self.nonfinite |= ~torch.isfinite(loss.detach())

    def diverged(self) -> bool:
        """Whether any loss so far was non-finite: one host read."""
        return bool(self.nonfinite)

    def record_update(self, update: Update, loss: torch.Tensor) -> None:
        """Add a step's loss (where finite), gradient norms and lr to the epoch's sums."""
        finite = torch.isfinite(loss.detach())
        self.loss.add(torch.where(finite, loss.detach(), 0.0), finite.to(torch.float64))
        if update.grad_norm is not None:
            self.clipped = True
            self.grad_norm.add(update.grad_norm)
        if update.pre_svd_grad_norm is not None:
            self.pre_svd_grad_norm.add(update.pre_svd_grad_norm)
        self.lrs.append(update.pre_svd_lr)

    def record(self, stats: dict[str, float] | None) -> None:
        """Keep one κ sample of the meta-layer (`last_stats` of its training forward)."""
        if not stats:
            return
        self.kappas.append(stats["kappa"])
        self.ratios.append(stats["lambda_ratio"])
        if "kappa_ridged" in stats:
            self.ridged_kappas.append(stats["kappa_ridged"])

    def summary(self) -> dict[str, float]:
        """The epoch's metrics (the device sums read here, once)."""

        def agg(values: list[float], fn: Callable[[list[float]], Any]) -> float:
            return float(fn(values)) if values else float("nan")

        summary = {
            Metric.TRAIN_LOSS: self.loss.read(),
            Metric.KAPPA_MEAN: agg(self.kappas, statistics.fmean),
            Metric.KAPPA_MEDIAN: agg(self.kappas, statistics.median),
            Metric.KAPPA_MAX: agg(self.kappas, max),
            Metric.LAMBDA_RATIO: agg(self.ratios, statistics.median),
            Metric.PRE_SVD_GRAD_NORM: self.pre_svd_grad_norm.read(),
            Metric.PRE_SVD_LR: agg(self.lrs, statistics.fmean),
            Metric.FAILURES: float(self.failures),
        }
        if self.ridged_kappas:  # only where the meta-layer whitens P + εI (dbn)
            summary[Metric.KAPPA_RIDGED_MEDIAN] = statistics.median(self.ridged_kappas)
        if self.clipped:  # only where the recipe clips the gradient norm
            summary[Metric.GRAD_NORM] = self.grad_norm.read()
        return summary


def topk_wrong(logits: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...]) -> torch.Tensor:
    """Number of samples whose label is not among the k highest logits, for each k (a device
    tensor: an evaluation sums these and reads them once)."""
    top = logits.topk(max(ks), dim=1).indices
    hit = top.eq(target.unsqueeze(1))
    return torch.stack([(~hit[:, :k].any(dim=1)).sum() for k in ks])


@dataclass
class StepParts:
    """What a training step works on. `config` is a TrialConfig, or anything with its recipe's
    attributes (the GPU benchmark runs without pydantic)."""

    model: SVDNet
    treatments: PreSVDTreatments
    optimizer: torch.optim.Optimizer
    config: Any
    device: torch.device
    scaler: torch.amp.GradScaler | None = None


def build_network(config: Any, info: DataInfo, method: str) -> SVDNet:
    """The trial's network for a dataset of `info`'s shape, its meta-layer running `method`."""
    return build_model(
        config.model,
        application=config.application,
        num_classes=info.num_classes,
        in_channels=info.in_channels,
        image_size=info.image_size,
        method=method,
        precision=config.precision,
        options=config.model_options,
    )


def assemble_step(
    model: SVDNet, config: Any, device: torch.device
) -> tuple[StepParts, torch.optim.lr_scheduler.MultiStepLR]:
    """Treatments on the Pre-SVD layer, the network on `device` with the eigh placement asked
    for, the optimizer and its schedule (and fp16's GradScaler)."""
    treatments = attach_treatments(
        model.pre_svd_layer, config.treatments, ol_weight=config.ol_weight, ow_map=config.ow_map
    )
    # OW as Skew Orthogonal Convolution replaces the conv itself (a no-op for the other maps)
    model.body.set_submodule(model.pre_svd_path, treatments.layer)
    model.to(device)
    model.metalayer.eigh_device = config.eigh_device
    optimizer, scheduler = make_optimizer(model, treatments, config)
    scaler = grad_scaler(config.autocast, device)
    return StepParts(model, treatments, optimizer, config, device, scaler), scheduler


#: What :func:`train_step` says of a step.
STEPPED, FAILED, DIVERGED = "stepped", "failed", "diverged"


def train_step(
    parts: StepParts,
    images: torch.Tensor,
    labels: torch.Tensor,
    tele: EpochTelemetry,
    *,
    sampled: bool,
    poison: bool = False,
    mark: Callable[[str], None] | None = None,
) -> str:
    """One step: forward (autocast as configured), backward, clip/NOG/OLR and the optimizer's
    step, with no host read but on `sampled` (κ) steps and after a solver failure.

    Returns STEPPED, FAILED (a solver failure: no update, counted) or DIVERGED (a non-finite
    loss seen so far: the trial stops). `poison` multiplies the loss by NaN (the tests' hook);
    `mark(phase)` is called after the forward, the backward and the update (the rehearsal
    times the phases there).
    """
    model, config, scaler = parts.model, parts.config, parts.scaler
    model.metalayer.record_stats = sampled
    parts.optimizer.zero_grad(set_to_none=True)
    try:
        with autocast_context(config.autocast, parts.device):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels) + parts.treatments.regularizer()
        if poison:
            loss = loss * float("nan")
        tele.watch(loss)
        if mark:
            mark("forward")
        (loss if scaler is None else scaler.scale(loss)).backward()
    except MetaLayerFailure:
        if tele.diverged():  # a non-finite loss fails the backward: divergence
            return DIVERGED
        tele.failures += 1
        return FAILED
    if mark:
        mark("backward")
    if sampled:
        tele.record(getattr(model.metalayer, "last_stats", None))
    if scaler is not None:
        scaler.unscale_(parts.optimizer)
    update = apply_update(  # clip, NOG, OLR, step
        model, parts.treatments, parts.optimizer, config, step=scaler and scaler.step
    )
    if scaler is not None:
        scaler.update()
    tele.record_update(update, loss)
    if mark:
        mark("optimizer")
    return DIVERGED if sampled and tele.diverged() else STEPPED
