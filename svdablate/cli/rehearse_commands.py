"""`rehearse`: a few real steps of every trial shape of a preset, and what the study will cost."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from svdablate.cli.app import (
    Address,
    GpusPerTrial,
    Preset,
    ResultsDir,
    Rows,
    Sets,
    TrackingUri,
    _examples,
    _rows,
    app,
    console,
)
from svdablate.schema.metrics import PHASES

AutocastMode = Literal["bf16", "fp16"]


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


def autocast_table(record: dict[str, Any]) -> Table:
    """One line per shape: step time and memory with autocast off and on, and the ratios."""
    shapes = [s for s in record["shapes"] if s.get("autocast")]
    mode = shapes[0]["autocast"]["mode"]
    on_cpu = record["device_type"] == "cpu"
    where = "a CPU: bf16/fp16 kernels may be slower there" if on_cpu else "the GPU"
    added = all(s["autocast"].get("memory_added_mb_off") is not None for s in shapes)
    memory = "added" if added and on_cpu else "peak"
    what = (
        "the shape's own: peak RSS above the process's at its start"
        if added and on_cpu
        else f"peak ({shapes[0]['autocast']['memory_kind']})"
    )
    table = Table(
        title=f"autocast {mode} against off on {record['device']} (measured, {where})",
        caption=f"memory: {what}; the meta-layer stays in its precision either way",
    )
    for column in ("shape", "step s off", f"step s {mode}", "step ×", f"{memory} MB off",
                   f"{memory} MB {mode}", "memory ×", f"fail/nan {mode}"):  # fmt: skip
        table.add_column(column, justify="left" if column == "shape" else "right")
    for s in shapes:
        a = s["autocast"]
        off, on = (
            (a["memory_added_mb_off"], a["memory_added_mb_on"])
            if memory == "added"
            else (a["peak_memory_mb_off"], a["peak_memory_mb_on"])
        )
        table.add_row(
            s["shape"], f"{a['step_s_off']:.3f}", f"{a['step_s_on']:.3f}",
            f"{a['step_ratio']:.2f}", f"{off:,.0f}", f"{on:,.0f}", f"{a['memory_ratio']:.2f}",
            f"{a['failures_on']}/{a['nonfinite_grad_steps_on']}",
        )  # fmt: skip
    return table


@app.command(
    epilog=_examples(
        "svdablate rehearse --preset demo",
        "svdablate rehearse --preset eccv22-dbn-cifar100 --gpus-per-trial 0 --steps 1   (a CPU)",
        "svdablate rehearse --preset eccv22-dbn-cifar100 --rows NS --compare-autocast bf16",
        "svdablate rehearse --preset iccv21-gcp-resnet50 --address ray://head:10001 "
        "--gpus-per-trial 1",
    )
)
def rehearse(
    preset: Preset = "demo",
    rows: Rows = None,
    steps: Annotated[int, typer.Option(min=1, help="Timed steps per shape (twice).")] = 3,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed steps per shape first.")] = 1,
    device: Annotated[
        str, typer.Option(help="auto (the GPU Ray gives when the trial asks for one), cpu, cuda.")
    ] = "auto",
    address: Address = None,
    gpus: Annotated[
        int | None, typer.Option(min=0, help="GPUs of the cluster (default: the Ray cluster's).")
    ] = None,
    cpus: Annotated[
        int | None, typer.Option(min=1, help="CPUs of the cluster (default: the Ray cluster's).")
    ] = None,
    gpus_per_trial: GpusPerTrial = None,
    cpus_per_trial: Annotated[float | None, typer.Option(help="CPUs per trial.")] = None,
    compare_autocast: Annotated[
        AutocastMode | None,
        typer.Option(help="Measure each shape also with the backbone under this autocast."),
    ] = None,
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
    set_: Sets = None,
) -> None:
    """Time a few real training steps of each trial shape at full size (synthetic data of the
    dataset's shape) as Ray tasks holding a trial's resources, and predict the study's
    device-hours and wall time; `plan` then uses it."""
    from svdablate.store.tracking import resolve_tracking_uri
    from svdablate.study.plan import StudyPlan
    from svdablate.study.rehearsal import rehearse_study, save_rehearsal

    study = StudyPlan.create(
        preset,
        rows=_rows(rows),
        overrides=set_,
        gpus_per_trial=gpus_per_trial,
        cpus_per_trial=cpus_per_trial,
        results_dir=results_dir,
        check=False,
    )
    uri = resolve_tracking_uri(tracking_uri, results_dir)

    def progress(shape: dict[str, Any]) -> None:
        where = shape["ran_on"]
        text = f"rehearsed {shape['shape']}: {shape['step_s']:.3f} s a step"
        if shape.get("autocast"):
            a = shape["autocast"]
            text += f" ({a['step_s_on']:.3f} s under {a['mode']} autocast)"
        text += (
            f" on Ray node {where.get('node_ip')} (pid {where['pid']}, {where.get('resources')})"
        )
        console.print(text, highlight=False, soft_wrap=True)

    record = rehearse_study(
        study, address=address, device=device, steps=steps, warmup=warmup, gpus=gpus,
        cpus=cpus, compare_autocast=compare_autocast, on_shape=progress,
    )  # fmt: skip
    path = save_rehearsal(record, results_dir, uri)
    console.print(rehearsal_table(record))
    if compare_autocast:
        console.print(autocast_table(record))
    console.print(f"recorded in {path} (read by `plan`) and MLflow {uri}, experiment "
                  "svdablate-rehearsal", highlight=False, soft_wrap=True)  # fmt: skip
