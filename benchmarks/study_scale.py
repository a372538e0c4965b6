"""Scale: a study of 1,000 smoke trials through Ray Tune and MLflow on this machine (issue 14).

The demo preset's 5 rows × 200 seeds, `--smoke` (FakeData, 2 steps), 1 epoch: each trial is a
fraction of a second of work, so what the study costs beyond it is the orchestration — Tune's
scheduling, a checkpoint per epoch, the driver's MLflow writes (a child run, its params, the
epoch, the status) — and `svdablate report` over 1,000 runs. The study runs in this process, so
this process is the driver whose memory is measured.

Checks that every trial is recorded exactly once (one child run per trial, one value per (key,
step)), then prints the driver's peak RSS, the study's wall time, the per-trial overhead in
slot-seconds beyond the trials' own epoch seconds, the time of `svdablate report --latest
--format csv`, and the distance from Ray Tune's published bookkeeping benchmark.

    .venv/bin/python benchmarks/study_scale.py [--seeds 200] [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from svdablate.schema import Metric, Tag
from svdablate.study.plan import StudyPlan

ROWS = ("SVD", "SVD+NOG", "SVD+OW", "SVD+NOG+OW+OLR", "NS")
# Ray Tune's "bookkeeping overhead" benchmark (docs: Tune scalability): 10,000 trials of 1 s,
# one result each, on one 16-CPU node: 715.27 s observed against 625 s minimum.
RAY_TRIALS, RAY_SLOTS, RAY_TRIAL_S, RAY_OBSERVED_S = 10_000, 16, 1.0, 715.27
REPORT_TARGET_S = 10.0


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def recorded(db: Path, parent_run_id: str) -> dict[str, float]:
    """From the SQLite store itself: child runs, distinct trials, (run, key, step) pairs held
    more than once, and the trials' own epoch seconds."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        c.execute(
            "create temp table children as select run_uuid from tags "
            "where key = 'mlflow.parentRunId' and value = ?",
            (parent_run_id,),
        )
        (runs,) = c.execute("select count(*) from children").fetchone()
        (trials,) = c.execute(
            "select count(distinct value) from tags where key = ? and run_uuid in children",
            (Tag.TRIAL_ID,),
        ).fetchone()
        (twice,) = c.execute(
            "select count(*) from (select 1 from metrics where run_uuid in children "
            "group by run_uuid, key, step having count(*) > 1)"
        ).fetchone()
        (epoch_s,) = c.execute(
            "select coalesce(sum(value), 0) from metrics where key = ? and run_uuid in children",
            (Metric.EPOCH_SECONDS,),
        ).fetchone()
    return {"runs": runs, "trials": trials, "twice": twice, "epoch_s": epoch_s}


def time_report(results: Path) -> tuple[float, int]:
    """`svdablate report --latest --format csv` on the study, as a user runs it."""
    command = [sys.executable, "-m", "svdablate.cli", "report", "--latest", "--format", "csv"]
    began = time.perf_counter()
    done = subprocess.run([*command, "--results-dir", str(results)], capture_output=True, text=True)
    return time.perf_counter() - began, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200, help="seeds per row (5 rows)")
    parser.add_argument("--results-dir", type=Path, default=None, help="default: a temp dir")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be 1 or more")
    folder = args.results_dir or Path(tempfile.mkdtemp(prefix="study-scale-"))
    console = Console()

    rss_before = peak_rss_mb()
    study = StudyPlan.create("demo", seeds=args.seeds, rows=ROWS, epochs=1, smoke=True,
                             results_dir=folder).start()  # fmt: skip
    began = time.perf_counter()
    outcome = study.run()
    wall_s = time.perf_counter() - began
    rss_peak = peak_rss_mb()
    import ray

    slots = int(ray.cluster_resources().get("CPU", 1) // study.resources.cpus_per_trial)
    if study.resources.max_concurrent:
        slots = min(slots, study.resources.max_concurrent)
    n = len(study.configs)
    counts = recorded(folder / "mlflow.db", outcome.parent_run_id)
    report_s, report_rc = time_report(folder)

    ideal_s = counts["epoch_s"] / slots
    overhead_per_trial = (outcome.seconds * slots - counts["epoch_s"]) / n
    ray_ideal_s = RAY_TRIALS * RAY_TRIAL_S / RAY_SLOTS
    ray_overhead_per_trial = (RAY_OBSERVED_S * RAY_SLOTS - RAY_TRIALS * RAY_TRIAL_S) / RAY_TRIALS
    table = Table(title=f"{n} smoke trials, {slots} slots, results in {folder}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("trials finished / failed / unfinished",
         f"{outcome.finished} / {outcome.failed} / {outcome.unfinished}"),
        ("child runs / distinct trials", f"{counts['runs']} / {counts['trials']}"),
        ("(run, key, step) held twice", str(counts["twice"])),
        ("driver peak RSS, MiB (before the study)", f"{rss_peak:.0f} ({rss_before:.0f})"),
        ("study wall time, s (Ray start to exit)", f"{wall_s:.1f}"),
        ("Tune fit time, s", f"{outcome.seconds:.1f}"),
        ("trials' own epoch seconds (sum), s", f"{counts['epoch_s']:.1f}"),
        ("ideal time (sum / slots), s", f"{ideal_s:.1f}"),
        ("over the ideal", f"{outcome.seconds / ideal_s - 1:.0%}"),
        ("per-trial overhead, slot-s", f"{overhead_per_trial:.2f}"),
        ("MLflow writer thread, s", f"{outcome.mlflow_write_seconds:.1f}"),
        (f"`svdablate report` on {n} runs, s (target < {REPORT_TARGET_S:g})",
         f"{report_s:.1f}" + ("" if report_rc == 0 else f" (exit {report_rc})")),
        ("Ray Tune benchmark: over the ideal",
         f"{RAY_OBSERVED_S / ray_ideal_s - 1:.0%} ({RAY_TRIALS} × {RAY_TRIAL_S:g} s trials, "
         f"{RAY_SLOTS} CPUs)"),
        ("Ray Tune benchmark: per-trial overhead, slot-s", f"{ray_overhead_per_trial:.2f}"),
    ]  # fmt: skip
    for measure, value in rows:
        table.add_row(measure, value)
    console.print(table)
    problems = []
    if counts["runs"] != n or counts["trials"] != n:
        problems.append(f"{counts['runs']} child runs for {n} trials")
    if counts["twice"]:
        problems.append(f"{counts['twice']} (run, key, step) pairs held twice")
    if outcome.finished != n:
        problems.append(f"{n - outcome.finished} trials did not finish")
    if report_rc != 0:
        problems.append(f"`svdablate report` exited {report_rc}")
    for problem in problems:
        console.print(f"[red]FAILED[/]: {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
