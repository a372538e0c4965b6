"""What Ray Tune + MLflow cost on top of the training itself (issue 15, items 1 and 5).

A demo study runs through `svdablate run` (a fresh process: imports, local Ray, MLflow store,
Tune, the parent run's report, shutdown — everything a user waits for). Its overhead is

    (wall × slots − Σ the trials' epoch seconds) / trials        slot-seconds a trial

with the epoch seconds read back from the trials' own MLflow metrics. The wall is then split by the
child runs' start/end times into start-up (until the first trial starts), in-trial work that is not
an epoch (model build, data, checkpoints), idle slots between trials, and the tail (report,
publish, shutdown). The same trials then run as a bare loop of `train_trial` in a pool of `slots`
processes (one thread each, as under Ray): what a perfect scheduler with no Ray and no MLflow does.

    .venv/bin/python benchmarks/orchestration_overhead.py                 # demo --seeds 2 (10)
    .venv/bin/python benchmarks/orchestration_overhead.py --study demo    # the full `make demo`
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from rich.console import Console
from rich.table import Table

from svdablate.schema import Metric
from svdablate.study.plan import StudyPlan

STUDIES = {"demo10": ("--seeds", "2"), "demo": ()}
TARGETS = {"demo10": 2.0, "demo": 1.0}  # slot-seconds a trial (issue 15)


@dataclass
class Orchestrated:
    wall: float
    trials: int
    epoch_seconds: float  # Σ over every epoch of every trial
    startup: float  # process start → the first child run starts
    in_trial: float  # Σ (child run duration − its epoch seconds)
    tail: float  # the last child run ends → the process exits
    slots: int

    @property
    def overhead(self) -> float:
        return (self.wall * self.slots - self.epoch_seconds) / self.trials

    @property
    def idle(self) -> float:
        """Slot-seconds between trials: what scheduling and actor start-up leave unused."""
        busy = self.epoch_seconds + self.in_trial
        return self.wall * self.slots - busy - (self.startup + self.tail) * self.slots


def run_orchestrated(study: str, results: Path, slots: int) -> Orchestrated:
    """`svdablate run` in a fresh process; the timings read back from its MLflow runs."""
    from mlflow import MlflowClient

    from svdablate.store.runs import child_runs
    from svdablate.study.study import Study

    command = [
        sys.executable, "-m", "svdablate.cli", "run", "--preset", "demo", *STUDIES[study],
        "--results-dir", str(results), "--no-progress", "--no-report",
    ]  # fmt: skip
    began = time.time()
    subprocess.run(command, capture_output=True, text=True, check=True)
    ended = time.time()
    loaded = Study.load(results)
    client = MlflowClient(loaded.tracking_uri)
    runs = list(child_runs(client, loaded.parent_run_id).values())
    epoch_seconds = 0.0
    in_trial = 0.0
    for run in runs:
        history = client.get_metric_history(run.info.run_id, Metric.EPOCH_SECONDS)
        seconds = sum(m.value for m in history)
        epoch_seconds += seconds
        in_trial += (run.info.end_time - run.info.start_time) / 1000 - seconds
    first = min(r.info.start_time for r in runs) / 1000
    last = max(r.info.end_time for r in runs) / 1000
    return Orchestrated(
        wall=ended - began,
        trials=len(runs),
        epoch_seconds=epoch_seconds,
        startup=first - began,
        in_trial=in_trial,
        tail=ended - last,
        slots=slots,
    )


def _bare_trial(config) -> float:
    """One trial as a bare `train_trial` call on one thread; its epoch seconds."""
    import torch

    from svdablate.training.loop import train_trial

    torch.set_num_threads(1)
    seconds: list[float] = []
    train_trial(config, lambda metrics, state: seconds.append(metrics[Metric.EPOCH_SECONDS]))
    return sum(seconds)


def run_loop(study: str, slots: int) -> tuple[float, float]:
    """The same trials in a pool of `slots` processes: (wall, Σ epoch seconds)."""
    seeds = int(STUDIES[study][1]) if STUDIES[study] else None
    configs = StudyPlan.create(preset="demo", seeds=seeds, check=False).configs
    began = time.perf_counter()
    with ProcessPoolExecutor(slots, mp_context=get_context("spawn")) as pool:
        seconds = list(pool.map(_bare_trial, configs))
    return time.perf_counter() - began, sum(seconds)


def main(argv: list[str] | None = None) -> Orchestrated:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", choices=sorted(STUDIES), default="demo10")
    parser.add_argument("--no-loop", action="store_true", help="skip the bare-loop reference")
    args = parser.parse_args(argv)
    slots = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as results:
        study = run_orchestrated(args.study, Path(results), slots)
    loop = None if args.no_loop else run_loop(args.study, slots)
    target = TARGETS[args.study]
    table = Table(
        title=f"orchestration overhead: {args.study}, {study.trials} trials, {slots} slots"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("svdablate run wall, s", f"{study.wall:.1f}")
    table.add_row("Σ the trials' epoch seconds", f"{study.epoch_seconds:.1f}")
    table.add_row(
        f"overhead, slot-s a trial (target ≤ {target:g})",
        f"{study.overhead:.2f} ({study.overhead / target:.2f}× target)",
    )
    table.add_row(
        "  start-up: process, imports, store, Ray, first actor, s", f"{study.startup:.1f}"
    )
    table.add_row(
        "  in trials, not epochs (build, data, checkpoints), slot-s", f"{study.in_trial:.1f}"
    )
    table.add_row("  idle slots between trials, slot-s", f"{study.idle:.1f}")
    table.add_row("  tail: publish, report, shutdown, s", f"{study.tail:.1f}")
    if loop is not None:
        loop_wall, loop_epochs = loop
        table.add_row(f"bare train_trial loop in {slots} processes, wall s", f"{loop_wall:.1f}")
        table.add_row("  its Σ epoch seconds", f"{loop_epochs:.1f}")
        table.add_row("svdablate run / bare loop (wall)", f"{study.wall / loop_wall:.2f}")
    Console(width=110).print(table)
    return study


if __name__ == "__main__":
    main()
