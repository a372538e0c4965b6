"""What κ sampling costs a trial: `train_trial` with telemetry against the same loop without it.

Issue 15's target: at the presets' default (`kappa_every`, TrialConfig) a demo epoch takes at most
3 % longer than with no κ at all. Three arms train the same demo trial (one row, seed 0, one torch
thread, CPU), interleaved over ``--rounds`` rounds in a rotating order so that load changes on a
shared machine fall on every arm alike:

  * ``off``:     no κ at all: ``kappa_every`` beyond any epoch's steps and the meta-layer's
                 ``_maybe_record`` a no-op (step 0 of every epoch would sample otherwise; the
                 config has no switch that turns κ off). Checked: it reports no κ.
  * ``default``: ``kappa_every`` as the demo preset sets it (every 10 steps).
  * ``every``:   ``kappa_every=1`` (for information).

Times are the trial's own ``epoch_seconds`` (wall clock, training and validation of one epoch)
and, beside them, the CPU seconds of this thread from one epoch's report to the next (every epoch
but a trial's first; with one torch thread and no loader workers all the work runs on it): the
work the epoch did, which other processes' load barely changes, where wall time moves by ±20 %
on a shared machine. The table gives each arm's median seconds per epoch over all rounds, its
ratio to ``off`` (target for the default ≤ 1.03), and the per-round ratios' median, its 95 %
bootstrap interval (what the A/B can resolve on this machine today) and their range.
A last line measures the κ path inside one more trial at ``kappa_every=1`` (each
``_maybe_record`` that samples, timed): its cost per sample and per epoch at both settings, as a
share of the ``off`` epoch: the overhead without the epoch-to-epoch noise.

    python benchmarks/telemetry_overhead.py [--rounds 10] [--epochs 3] [--row SVD]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from scipy import stats

from svdablate.errors import UserError
from svdablate.metalayers.modules import _MetaLayerBase
from svdablate.schema import Metric
from svdablate.spec.config import TrialConfig
from svdablate.study.plan import StudyPlan
from svdablate.training.loop import train_trial

TARGET = 1.03
NEVER = 10**9  # kappa_every beyond any epoch's steps


@dataclass
class Trial:
    """What one `train_trial` reported, epoch by epoch."""

    seconds: list[float] = field(default_factory=list)  # epoch_seconds, wall
    cpu_seconds: list[float] = field(default_factory=list)  # report to report, from epoch 1
    losses: list[float] = field(default_factory=list)
    kappas: list[float] = field(default_factory=list)


@dataclass
class Arm:
    """One way of running the trial and its trials, round by round."""

    name: str
    kappa_every: int | None  # None: no κ
    trials: list[Trial] = field(default_factory=list)

    def median(self, clock: str) -> float:
        """Median seconds per epoch over all rounds; `clock` is "seconds" or "cpu_seconds"."""
        values = [s for trial in self.trials for s in getattr(trial, clock)]
        return statistics.median(values) if values else math.nan

    def per_round_ratios(self, off: Arm, clock: str) -> list[float]:
        """Median epoch of this arm over the median epoch of `off`, in each round."""
        pairs = zip(self.trials, off.trials, strict=True)
        return [
            statistics.median(getattr(a, clock)) / statistics.median(getattr(o, clock))
            for a, o in pairs
            if getattr(a, clock) and getattr(o, clock)
        ]


def demo_config(
    row: str, epochs: int, kappa_every: int | None = None, steps: int | None = None
) -> TrialConfig:
    """The demo preset's trial of `row` (seed 0) on the CPU; `kappa_every` and the cap on the
    steps of an epoch replaced where given."""
    config = StudyPlan.create(
        preset="demo", rows=(row,), seeds=1, epochs=epochs, check=False
    ).configs[0]
    update: dict[str, Any] = {"device": "cpu"}
    if kappa_every is not None:
        update["kappa_every"] = kappa_every
    if steps is not None:
        update["max_steps_per_epoch"] = steps
    return TrialConfig.model_validate({**config.model_dump(), **update})


@contextmanager
def no_kappa() -> Iterator[None]:
    """The meta-layer records no spectrum, whatever `record_stats` says."""
    with mock.patch.object(_MetaLayerBase, "_maybe_record", lambda self, P, ridge=None: None):
        yield


def train(config: TrialConfig, off: bool) -> Trial:
    """One `train_trial`, with the meta-layer's κ path removed when `off`."""
    trial = Trial()
    last_cpu: list[float] = []

    def report(metrics: dict[str, Any], state: Any) -> None:
        cpu = time.thread_time()
        if last_cpu:
            trial.cpu_seconds.append(cpu - last_cpu[-1])
        last_cpu.append(cpu)
        trial.seconds.append(metrics[Metric.EPOCH_SECONDS])
        trial.losses.append(metrics[Metric.TRAIN_LOSS])
        trial.kappas.append(metrics[Metric.KAPPA_MEDIAN])

    with no_kappa() if off else nullcontext():
        train_trial(config, report)
    return trial


def run_rounds(
    arms: list[Arm], row: str, epochs: int, rounds: int, steps: int | None = None
) -> None:
    """Each round trains every arm once, the order rotated by one arm per round."""
    for r in range(rounds):
        for arm in arms[r % len(arms) :] + arms[: r % len(arms)]:
            off = arm.kappa_every is None
            trial = train(demo_config(row, epochs, NEVER if off else arm.kappa_every, steps), off)
            if off and not all(math.isnan(k) for k in trial.kappas):
                raise RuntimeError(f"the off arm recorded κ: {trial.kappas}")
            if not off and not all(math.isfinite(k) for k in trial.kappas):
                raise RuntimeError(f"arm {arm.name} recorded no κ in some epoch: {trial.kappas}")
            arm.trials.append(trial)


def kappa_path_cost(row: str, epochs: int, steps: int | None = None) -> tuple[float, float]:
    """(seconds per κ sample, training steps per epoch), timed inside a trial at kappa_every=1."""
    calls: list[float] = []  # one a training step: every step samples
    record = _MetaLayerBase._maybe_record

    def timed(self: _MetaLayerBase, P: torch.Tensor, ridge: float | None = None) -> None:
        began = time.perf_counter()
        record(self, P, ridge)
        calls.append(time.perf_counter() - began)

    with mock.patch.object(_MetaLayerBase, "_maybe_record", timed):
        train(demo_config(row, epochs, 1, steps), off=False)
    return statistics.median(calls), len(calls) / epochs


def median_ci(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median of `values` (NaN for fewer than two)."""
    if len(values) < 2:
        return math.nan, math.nan
    result = stats.bootstrap(
        (values,), np.median, confidence_level=confidence, method="percentile", rng=0
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _ratio_cells(arm: Arm, off: Arm, clock: str) -> list[str]:
    """Median s/epoch; ratio of medians to off; per-round ratios: median, 95 % CI, range."""
    cells = [f"{arm.median(clock):.3f}"]
    if arm is off:
        return [*cells, "1", "-"]
    per_round = arm.per_round_ratios(off, clock)
    if not per_round:
        return [*cells, "-", "-"]
    low, high = median_ci(per_round)
    spread = (
        f"{statistics.median(per_round):.3f} (CI {low:.2f}–{high:.2f}; "
        f"range {min(per_round):.2f}–{max(per_round):.2f})"
    )
    return [*cells, f"{arm.median(clock) / off.median(clock):.3f}", spread]


def print_table(arms: list[Arm], row: str, epochs: int, sample_s: float, steps: float) -> None:
    off = arms[0]
    title = (
        f"Telemetry overhead: demo {row}, {len(off.trials)} rounds × {epochs} epochs an arm, "
        "1 thread, CPU"
    )
    table = Table(title=title)
    for col in ("arm", "kappa_every", "κ samples/epoch",
                "wall s/epoch", "wall ratio", "wall, per round: median (95 % CI; range)",
                "CPU s/epoch", "CPU ratio", "CPU, per round: median (95 % CI; range)",
                "target"):  # fmt: skip
        table.add_column(escape(col), justify="left" if col == "arm" else "right")
    for arm in arms:
        on = arm is not off
        every = str(arm.kappa_every) if on else "-"
        samples = str(math.ceil(steps / arm.kappa_every)) if on else "0"
        target = "" if not on else f"≤ {TARGET}" if arm.name == "default" else "(info)"
        table.add_row(
            arm.name, every, samples,
            *_ratio_cells(arm, off, "seconds"), *_ratio_cells(arm, off, "cpu_seconds"), target,
        )  # fmt: skip
    console = Console(width=200)
    console.print(table)
    same = all([t.losses for t in arm.trials] == [t.losses for t in off.trials] for arm in arms)
    console.print(f"Training losses identical in every arm and round: {'yes' if same else 'NO'}")
    shares = ", ".join(
        f"kappa_every={arm.kappa_every}: {math.ceil(steps / arm.kappa_every)} × → "
        f"{100 * math.ceil(steps / arm.kappa_every) * sample_s / off.median('seconds'):.2f} %"
        for arm in arms[1:]
    )
    console.print(
        f"κ path inside a trial: {sample_s * 1e6:.0f} µs a sample (median, {steps:.0f} steps an "
        f"epoch), as a share of the off epoch (wall): {shares}"
    )


def main(argv: list[str] | None = None) -> list[Arm]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10, help="rounds of the three arms")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each trial")
    ap.add_argument("--row", default="SVD", help="demo row to train")
    ap.add_argument("--steps", type=int, default=None, help="cap on an epoch's steps (smoke)")
    args = ap.parse_args(argv)
    if min(args.rounds, args.epochs, args.steps or 1) < 1:
        ap.error("--rounds, --epochs and --steps must be 1 or more")
    try:
        default_every = demo_config(args.row, args.epochs).kappa_every
    except (UserError, ValueError) as exc:
        ap.error(str(exc))
    arms = [Arm("off", None), Arm("default", default_every), Arm("every", 1)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_rounds(arms, args.row, args.epochs, args.rounds, args.steps)
        sample_s, steps = kappa_path_cost(args.row, args.epochs, args.steps)
    finally:
        torch.set_num_threads(threads)
    print_table(arms, args.row, args.epochs, sample_s, steps)
    return arms


if __name__ == "__main__":
    main()
