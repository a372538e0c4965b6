"""What a trial reports to Tune after each epoch (`TrialResult`, its keys `ResultKey`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from svdablate.schema.metrics import Metric


class ResultKey:
    """Keys of a trial's report to Tune besides its metrics (`TrialResult`)."""

    EPOCH = "epoch"  # the epoch just trained, from 0
    ERROR = "error"  # a deterministic failure, reported instead of raised (never retried)
    METHOD_USED = "method_used"  # the meta-layer solver the epoch ran (`ns` before a hybrid switch)
    DEVICE = "device"  # the device the trial resolved
    EIGH_DEVICE = "eigh_device"  # where its eigendecomposition ran (`eigh_device`), and why
    STATUS = "status"  # of `train_trial`'s return: finished or diverged
    SET_ASIDE = "checkpoint_set_aside"  # its unreadable checkpoint was kept there: it restarts


@dataclass(frozen=True)
class TrialResult:
    """What a trial reports to Tune after an epoch (or instead of one: `error`), and what the
    driver's MLflow writer reads back from Tune's flat result dict."""

    epoch: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # `Metric` names
    method_used: str = ""
    device: str = ""
    eigh_device: str = ""
    error: str | None = None
    set_aside: str | None = None  # where its unreadable checkpoint was kept (and why)

    def as_report(self) -> dict[str, Any]:
        """The flat dict Tune takes (`tune.report`)."""
        if self.error is not None:
            return {ResultKey.ERROR: self.error}
        if self.set_aside is not None:
            return {ResultKey.SET_ASIDE: self.set_aside}
        return {
            ResultKey.EPOCH: self.epoch,
            **self.metrics,
            ResultKey.METHOD_USED: self.method_used,
            ResultKey.DEVICE: self.device,
            ResultKey.EIGH_DEVICE: self.eigh_device,
        }

    @classmethod
    def from_report(cls, result: dict[str, Any]) -> TrialResult:
        """A result Tune hands a callback: its epoch, its `Metric` values (numbers only; Tune's
        own keys are left out), the solver and device, or the error, or a set-aside checkpoint."""
        if result.get(ResultKey.ERROR):
            return cls(error=str(result[ResultKey.ERROR]))
        if result.get(ResultKey.SET_ASIDE):
            return cls(set_aside=str(result[ResultKey.SET_ASIDE]))
        names = {v for k, v in vars(Metric).items() if k.isupper()}
        return cls(
            epoch=int(result[ResultKey.EPOCH]) if ResultKey.EPOCH in result else None,
            metrics={k: v for k, v in result.items() if k in names and isinstance(v, int | float)},
            method_used=str(result.get(ResultKey.METHOD_USED, "")),
            device=str(result.get(ResultKey.DEVICE) or ""),
            eigh_device=str(result.get(ResultKey.EIGH_DEVICE) or ""),
        )
