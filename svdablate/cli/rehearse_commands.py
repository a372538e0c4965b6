"""`rehearse`: a few real steps of every trial shape of a preset, and what the study will cost."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from svdablate.cli.app import (
    GpusPerTrial,
    PresetName,
    ResultsDir,
    Rows,
    Sets,
    TrackingUri,
    _examples,
    _rows,
    app,
    console,
)
from svdablate.training.rehearse import PHASES


def rehearsal_table(record: dict[str, Any]) -> Table:
    """One line per shape: seconds per step and its phases, memory, the feed, failures."""
    table = Table(
        title=f"rehearsal of {record['preset']} on {record['device']} "
        f"({record['steps']} timed steps a shape; {record['when']})",
        caption=(
            f"{record['trials']} trials: {record['device_hours']:,.1f} {record['unit']} and "
            f"{record['wall_hours']:,.1f} h of wall time on {record['cluster']} "
            f"({record['concurrency']} trials at once; training steps only)"
        ),
    )
    for column in ("shape", "step s", *PHASES, "peak MB", "feed img/s", "need img/s", "fail/nan"):
        table.add_column(column, justify="left" if column == "shape" else "right")
    for s in record["shapes"]:
        memory = f"{s['peak_memory_mb']:,.0f}"
        if s.get("memory_fraction") is not None:
            memory += f" ({s['memory_fraction']:.0%})"
        table.add_row(
            f"{s['shape']}\n[dim]{s['row']} · {s['feed']} · eigh {s['eigh_device'] or '-'}[/]",
            f"{s['step_s']:.3f}",
            *(f"{s['phases'][p]:.3f}" for p in PHASES),
            memory,
            f"{s['loader_images_per_s']:,.0f}",
            f"{s['demand_images_per_s']:,.0f}",
            f"{s['failures']}/{s['nonfinite_grad_steps']}",
        )
    return table


@app.command(
    epilog=_examples(
        "svdablate rehearse --preset demo",
        "svdablate rehearse --preset eccv22-dbn-cifar100 --rows SVD,NS --steps 2",
        "svdablate rehearse --preset iccv21-gcp-resnet50 --gpus 8   (a cluster of 8 GPUs)",
    )
)
def rehearse(
    preset: Annotated[PresetName, typer.Option("--preset", help="The preset.")] = "demo",
    rows: Rows = None,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per shape (twice).")] = 3,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed steps per shape first.")] = 1,
    device: Annotated[
        str, typer.Option(help="auto (the GPU when the preset asks for one), cpu, cuda.")
    ] = "auto",
    gpus: Annotated[
        int | None, typer.Option(min=0, help="GPUs of the cluster (default: this machine's).")
    ] = None,
    cpus: Annotated[
        int | None, typer.Option(min=1, help="CPUs of the cluster (default: this machine's).")
    ] = None,
    gpus_per_trial: GpusPerTrial = None,
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
    set_: Sets = None,
) -> None:
    """Time a few real training steps of each trial shape at full size (synthetic data of the
    dataset's shape) and predict the study's device-hours and wall time; `plan` then uses it."""
    from svdablate.store.tracking import resolve_tracking_uri
    from svdablate.study.plan import StudyPlan
    from svdablate.study.rehearsal import Cluster, rehearse_study, save_rehearsal, this_machine

    study = StudyPlan.create(
        preset,
        rows=_rows(rows),
        overrides=set_,
        gpus_per_trial=gpus_per_trial,
        results_dir=results_dir,
        check=False,
    )
    here = this_machine()
    cluster = Cluster(here.gpus if gpus is None else gpus, here.cpus if cpus is None else cpus)
    uri = resolve_tracking_uri(tracking_uri, results_dir)

    def progress(result: Any) -> None:
        console.print(f"rehearsed {result.shape}: {result.step_s:.3f} s a step", highlight=False)

    record = rehearse_study(
        study, device=device, steps=steps, warmup=warmup, cluster=cluster, on_shape=progress
    )
    path = save_rehearsal(record, results_dir, uri)
    console.print(rehearsal_table(record))
    console.print(f"recorded in {path} (read by `plan`) and MLflow {uri}, experiment "
                  "svdablate-rehearsal", highlight=False, soft_wrap=True)  # fmt: skip
