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
from typing import Any

import torch

from svdablate.schema import Metric
from svdablate.training.update import Update

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
