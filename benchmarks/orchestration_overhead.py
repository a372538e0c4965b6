"""What Ray Tune + MLflow cost on top of the training itself (issue: orchestrator at cluster scale).

The same 8 demo trials (4 rows × 2 seeds) run (a) by calling `train_trial` in a plain loop and
(b) through `svdablate run` (local Ray, 1 CPU a trial, driver-side MLflow writer). Each trial gets
one thread in both, so (a)/slots is what a perfect scheduler could do with this machine's cores.
Epochs are calibrated so that a trial takes about `--trial-seconds` (30 by default).

Prints (b)/(a) (target on 2 cores: ≤ 1.3), (b) against the ideal parallel time, the overhead per
trial in seconds, and the MLflow write cost per logged epoch.

    .venv/bin/python benchmarks/orchestration_overhead.py [--trial-seconds 30]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import torch
from rich.console import Console
from rich.table import Table

from svdablate.orchestrator.config import StudySpec
from svdablate.orchestrator.grid import expand
from svdablate.orchestrator.trial import train_trial

ROWS = ("SVD", "SVD+NOG", "SVD+OW", "NS")
SEEDS = 2


def grid(epochs: int) -> StudySpec:
    """The benchmark's 8 trials: 4 demo rows × 2 seeds."""
    return StudySpec(preset="demo", rows=ROWS, seeds=SEEDS, epochs=epochs)


def run_loop(epochs: int) -> float:
    """(a): the trials one after another in this process, one thread each (as under Ray)."""
    torch.set_num_threads(1)
    began = time.perf_counter()
    for config in expand(grid(epochs)):
        train_trial(config, lambda metrics, state: None)
    return time.perf_counter() - began


def calibrate(trial_seconds: float) -> int:
    """Epochs that make one demo trial last about `trial_seconds` on one thread."""
    torch.set_num_threads(1)
    config = expand(grid(3))[0]
    times: list[float] = []
    train_trial(config, lambda metrics, state: times.append(metrics["epoch_seconds"]))
    return max(1, round(trial_seconds / min(times)))


def run_orchestrated(epochs: int, results: str) -> tuple[float, float, int]:
    """(b): `svdablate run` through Ray Tune and MLflow; wall time and MLflow write cost."""
    command = [
        sys.executable, "-m", "svdablate.cli", "run", "--preset", "demo",
        "--rows", ",".join(ROWS), "--seeds", str(SEEDS), "--epochs", str(epochs),
        "--results-dir", results, "--no-progress", "--no-report",
    ]  # fmt: skip
    began = time.perf_counter()
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - began
    match = re.search(r"MLflow writes ([\d.]+) s\s+for\s+(\d+) epochs", " ".join(output.split()))
    write_s, epochs_logged = (float(match[1]), int(match[2])) if match else (float("nan"), 0)
    return wall, write_s, epochs_logged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trial-seconds", type=float, default=30.0)
    parser.add_argument("--epochs", type=int, default=None, help="overrides the calibration")
    args = parser.parse_args()
    epochs = args.epochs or calibrate(args.trial_seconds)
    trials = len(expand(grid(epochs)))
    slots = min(os.cpu_count() or 1, trials)
    loop_s = run_loop(epochs)
    with tempfile.TemporaryDirectory() as results:
        ray_s, write_s, epochs_logged = run_orchestrated(epochs, results)
    table = Table(title=f"orchestration overhead: {trials} demo trials × {epochs} epochs")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("(a) train_trial loop, s", f"{loop_s:.1f} ({loop_s / trials:.1f} s a trial)")
    table.add_row("(b) svdablate run (Ray Tune + MLflow), s", f"{ray_s:.1f}")
    table.add_row("(b)/(a), target ≤ 1.3", f"{ray_s / loop_s:.2f}")
    table.add_row(
        f"(b)/((a)/{slots}): against a perfect {slots}-slot scheduler",
        f"{ray_s * slots / loop_s:.2f}",
    )
    table.add_row(
        "overhead per trial, s (slot-seconds beyond the loop)",
        f"{(ray_s * slots - loop_s) / trials:.2f}",
    )
    per_epoch = write_s / epochs_logged * 1000 if epochs_logged else float("nan")
    table.add_row("MLflow write per logged epoch, ms", f"{per_epoch:.1f} ({epochs_logged} epochs)")
    Console().print(table)


if __name__ == "__main__":
    main()
