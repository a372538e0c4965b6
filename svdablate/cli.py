"""`svdablate`: plan · run · resume · status · report · plot · analyze · ui."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from svdablate.orchestrator.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Ablation studies of SVD meta-layers (ICCV'21, ECCV'22): Ray Tune grids, MLflow records, "
    "the papers' tables.",
)
analyze_app = typer.Typer(no_args_is_help=True, help="Numerical analyses of the ICCV'21 paper.")
app.add_typer(analyze_app, name="analyze")
console = Console()
err_console = Console(stderr=True)

ResultsDir = Annotated[
    Path,
    typer.Option(
        "--results-dir", help="Where the study's MLflow store, Ray state and manifests live."
    ),
]
TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri", help="MLflow tracking URI (default sqlite:///<results-dir>/mlflow.db)."
    ),
]

Seeds = Annotated[int | None, typer.Option(help="Seeds per row (default: the preset's).")]
Rows = Annotated[str | None, typer.Option(help="Comma-separated rows, e.g. 'SVD,SVD+NOG'.")]
Epochs = Annotated[int | None, typer.Option(help="Epochs per trial (default: the preset's).")]
Smoke = Annotated[bool, typer.Option(help="Every trial on fake data, 2 steps, on CPU.")]
GpusPerTrial = Annotated[float | None, typer.Option(help="GPUs per trial; 0.25 packs four.")]


def _parse_sets(values: list[str] | None) -> dict[str, Any]:
    """`--set key=value` overrides of trial config entries (value parsed as JSON when it can be)."""
    import json

    out: dict[str, Any] = {}
    for item in values or []:
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _rows(text: str | None) -> tuple[str, ...] | None:
    return tuple(r.strip() for r in text.split(",") if r.strip()) if text else None


@app.command()
def plan(
    preset: Annotated[str, typer.Option("--preset", help="A preset name (see README).")] = "demo",
    seeds: Seeds = None,
    rows: Rows = None,
    epochs: Epochs = None,
    smoke: Smoke = False,
    gpus_per_trial: GpusPerTrial = None,
) -> None:
    """Print the trial list, resources per trial and the estimated GPU-hours; nothing runs."""
    from svdablate.orchestrator.cost import plan_table
    from svdablate.orchestrator.grid import GridSpec, expand, resolve_preset, warnings_for

    spec = GridSpec(preset=preset, seeds=seeds, rows=_rows(rows), epochs=epochs, smoke=smoke)
    configs = expand(spec)
    for line in warnings_for(spec):
        err_console.print(f"[yellow]warning[/]: {line}", soft_wrap=True)
    console.print(plan_table(resolve_preset(spec), configs, gpus_per_trial))


@app.command()
def run(
    preset: Annotated[
        str, typer.Option("--preset", help="Preset name(s), comma-separated (see README).")
    ] = "demo",
    seeds: Seeds = None,
    rows: Rows = None,
    epochs: Epochs = None,
    smoke: Smoke = False,
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
    address: Annotated[
        str | None,
        typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)."),
    ] = None,
    storage_path: Annotated[
        str | None,
        typer.Option(help="Ray Tune storage (shared FS or s3://, gs://) for multi-node."),
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Dataset root (CIFAR files, ImageFolder trees).")
    ] = None,
    download: Annotated[
        bool, typer.Option(help="Download CIFAR where the network allows.")
    ] = False,
    gpus_per_trial: GpusPerTrial = None,
    cpus_per_trial: Annotated[float | None, typer.Option(help="CPUs per trial.")] = None,
    max_concurrent: Annotated[
        int | None, typer.Option(help="At most this many trials at once.")
    ] = None,
    max_failures: Annotated[
        int, typer.Option(help="Retries of a crashed trial from its checkpoint.")
    ] = 2,
    extend: Annotated[
        str | None, typer.Option(help="Add seeds/rows to this finished study (its parent run id).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a trial config entry: key=value.")
    ] = None,
    report: Annotated[bool, typer.Option(help="Print the study's table at the end.")] = True,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
    keep_checkpoints: Annotated[
        bool | None,
        typer.Option(
            help="Keep finished trials' last checkpoints (default: yes, except with --smoke)."
        ),
    ] = None,
) -> None:
    """Run presets' grids through Ray Tune, record them in MLflow and print their tables.

    `--preset a,b` runs several studies (one MLflow parent each) in one Ray session.
    """
    from svdablate.orchestrator import tune_runner as tr
    from svdablate.orchestrator.grid import GridSpec, expand, resolve_preset, warnings_for
    from svdablate.orchestrator.study import check_data

    names = [n.strip() for n in preset.split(",") if n.strip()]
    if extend and len(names) != 1:
        raise UserError("--extend takes one study: name one --preset")
    planned = []
    for name in names:  # every grid is checked before Ray starts
        spec = GridSpec(
            preset=name,
            seeds=seeds,
            rows=_rows(rows),
            epochs=epochs,
            smoke=smoke,
            data_dir=data_dir,
            download=download,
            overrides=_parse_sets(set_),
        )
        configs = expand(spec)
        for line in warnings_for(spec):
            err_console.print(f"[yellow]warning[/]: {line}", soft_wrap=True)
        check_data(configs)
        planned.append((resolve_preset(spec), configs))
    uri = tr.resolve_tracking_uri(tracking_uri, results_dir)
    tr.connect_ray(address)
    for chosen, configs in planned:
        resources = tr.Resources(
            cpus_per_trial=cpus_per_trial if cpus_per_trial is not None else chosen.cpus_per_trial,
            gpus_per_trial=gpus_per_trial if gpus_per_trial is not None else chosen.gpus_per_trial,
            max_concurrent=max_concurrent,
            max_failures=max_failures,
        )
        tr.check_resources(resources)
        if extend:
            study = tr.Study.load(results_dir, extend)
            configs = tr.extend_study(study, configs)
            console.print(f"extending study {study.parent_run_id}: {len(configs)} new trials")
        else:
            study = tr.new_study(
                chosen.name,
                configs,
                results_dir=str(results_dir),
                tracking_uri=uri,
                storage_path=storage_path,
                resources=resources,
                parent_tags={
                    "preset": chosen.name,
                    "rows": _json(_row_labels(configs)),
                    "application": chosen.application,
                    "dataset": ",".join(chosen.datasets),
                    "model": chosen.model,
                    "protocol": ",".join(chosen.protocols),
                    "smoke": str(smoke).lower(),
                },
                address=address,
            )
        console.print(
            f"study [bold]{study.name}[/]: {len(configs)} trials, parent run "
            f"{study.parent_run_id}, tracking {study.tracking_uri}"
        )
        _run_and_report(
            study,
            configs,
            resources,
            restore=False,
            report=report,
            progress=progress,
            keep_checkpoints=not smoke if keep_checkpoints is None else keep_checkpoints,
        )


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _row_labels(configs: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(c["row"] for c in configs))


def _run_and_report(
    study, configs, resources, *, restore: bool, report: bool, progress: bool, keep_checkpoints=True
):
    from svdablate.orchestrator import tune_runner as tr

    try:
        counts = tr.run_configs(
            study,
            configs,
            resources,
            restore=restore,
            show_progress=progress,
            keep_checkpoints=keep_checkpoints,
        )
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: finished trials are recorded; continue with "
            f"`svdablate resume {study.parent_run_id} --results-dir {study.results_dir}`"
        )
        raise typer.Exit(130) from None
    tr.finish_study(study, counts)
    console.print(
        f"done: {counts['trials']} trials ({counts.get('skipped_finished', 0)} already finished, "
        f"{counts.get('errored', 0)} failed) in {counts.get('seconds', 0)} s; "
        f"MLflow writes {counts.get('mlflow_write_seconds', 0)} s for "
        f"{counts.get('epochs_logged', 0)} epochs"
    )
    if report:
        _print_report(study.tracking_uri, study.parent_run_id, fmt="rich", out=None)


@app.command()
def resume(
    run_id: Annotated[str | None, typer.Argument(help="Parent run id of the study.")] = None,
    latest: Annotated[bool, typer.Option(help="The newest study under --results-dir.")] = False,
    results_dir: ResultsDir = Path("results"),
    address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
    report: Annotated[bool, typer.Option(help="Print the study's table at the end.")] = True,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Continue an interrupted study: finished trials are not re-run, MLflow runs are reused."""
    from svdablate.orchestrator import tune_runner as tr

    if run_id is None and not latest:
        raise UserError("name the study: `svdablate resume RUN_ID` or `svdablate resume --latest`")
    study = tr.Study.load(results_dir, None if latest else run_id)
    resources = tr.Resources(**study.resources)
    tr.connect_ray(address or study.address)
    tr.check_resources(resources)
    console.print(f"resuming study [bold]{study.name}[/] ({study.parent_run_id})")
    _run_and_report(study, study.configs, resources, restore=True, report=report, progress=progress)


@app.command()
def status(
    run_id: Annotated[
        str | None, typer.Argument(help="Parent run id (default: the newest).")
    ] = None,
    results_dir: ResultsDir = Path("results"),
) -> None:
    """Trial counts of a study that may be running elsewhere (reads its MLflow runs)."""
    from svdablate.orchestrator import tune_runner as tr
    from svdablate.orchestrator.study import study_status

    study = tr.Study.load(results_dir, run_id)
    console.print(study_status(study))


def _print_report(tracking_uri: str, run_id: str, *, fmt: str, out: Path | None, **kw: Any) -> None:
    from svdablate.report import make_report

    run_ids = [r for r in run_id.split(",") if r] if run_id else None
    make_report(tracking_uri, run_ids, fmt=fmt, out=out, console=console, **kw)
    if out is not None:
        console.print(f"wrote {out}")


def _tracking(tracking_uri: str | None, results_dir: Path) -> str:
    from svdablate.orchestrator.tune_runner import resolve_tracking_uri

    if tracking_uri is None and not (results_dir / "mlflow.db").exists():
        raise UserError(
            f"no MLflow store at {results_dir / 'mlflow.db'}: pass --results-dir or --tracking-uri"
        )
    return resolve_tracking_uri(tracking_uri, results_dir)


@app.command("report")
def report_cmd(
    run_id: Annotated[str | None, typer.Argument(help="Parent run id(s), comma-separated.")] = None,
    latest: Annotated[bool, typer.Option(help="The newest study in the store.")] = False,
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
    fmt: Annotated[
        str, typer.Option("--format", help="rich (terminal), markdown, latex, csv or html.")
    ] = "rich",
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    layout: Annotated[
        str | None, typer.Option(help="Paper table layout (default: chosen from the study).")
    ] = None,
) -> None:
    """The study's table in the paper's layout, beside the published numbers, with statistics."""
    uri = _tracking(tracking_uri, results_dir)
    _print_report(uri, None if latest else run_id, fmt=fmt, out=out, layout=layout)


@app.command()
def plot(
    run_id: Annotated[
        str | None, typer.Argument(help="Parent run id (default: the newest).")
    ] = None,
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
    out_dir: Annotated[Path | None, typer.Option(help="Folder for the PNG/PDF figures.")] = None,
) -> None:
    """κ over training (median, min–max band) and validation error per row, as PNG and PDF."""
    from svdablate.report import latest_parent, plot_study

    uri = _tracking(tracking_uri, results_dir)
    run_id = run_id or latest_parent(uri)
    folder = out_dir or results_dir / "figures" / run_id
    result = plot_study(uri, run_id, folder)
    for path in result.get("paths", []):
        console.print(f"wrote {path}")


@app.command()
def ui(
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
) -> None:
    """Start the MLflow UI on the study's tracking store."""
    uri = _tracking(tracking_uri, results_dir)
    console.print(f"MLflow UI on http://{host}:{port} for {uri} (Ctrl-C stops it)")
    os.execvp(
        sys.executable,
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--backend-store-uri",
            uri,
            "--host",
            host,
            "--port",
            str(port),
        ],
    )


def _published(table: int) -> dict[tuple[str, str], float]:
    """ICCV'21 published values of one analysis table, keyed by (method, metric)."""
    from svdablate.report import load_published

    rows = load_published()
    rows = rows[(rows.paper == "iccv21") & (rows.table == table)]
    return {(r.method, r.metric): float(r.value) for r in rows.itertuples()}


def _sci(value: Any) -> str:
    if value is None:
        return "/"
    return f"{value:.2g}" if isinstance(value, float) else str(value)


@analyze_app.command("approx")
def analyze_approx(
    degree: Annotated[int, typer.Option(help="Taylor degree; Padé is [degree/2, degree/2].")] = 100,
) -> None:
    """ICCV'21 Table 6: Taylor and Padé error against 1/(1−x) (float64, mpmath) beside the paper."""
    from rich.table import Table

    from svdablate.metalayers.analysis import approximation_errors, pade_degeneracy

    paper = _published(6)
    table = Table(title=f"ICCV'21 Table 6: |approximation − 1/(1−x)|, degree {degree}")
    for column in ("method", "x", "float64", "mpmath", "paper"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in approximation_errors(degree=degree):
        table.add_row(
            row["method"],
            f"{row['x']:g}",
            _sci(row["float64"]),
            _sci(row["mpmath"]),
            _sci(paper.get((row["method"], row["metric"]))) if degree == 100 else "",
        )
    console.print(table)
    note = Table(
        title="Why SVD-Padé equals the exact gradient: the [M/N] Padé table of the rational "
        "1/(1−x) is degenerate",
        caption="mpmath's pade() returns one noise-selected member: P/Q ≡ 1/(1−x) up to "
        "round-off, with an arbitrary value at x = 1 (README, 'SVD-Padé').",
    )
    for column in ("quantity", "float64", "mpmath"):
        note.add_column(column, justify="left" if column == "quantity" else "right")
    for row in pade_degeneracy(degree):
        note.add_row(str(row["quantity"]), _sci(row["float64"]), _sci(row["mpmath"]))
    console.print(note)


@analyze_app.command("bounds")
def analyze_bounds(
    eps: Annotated[
        float | None, typer.Option(help="Eigenvalue floor (default: float64 machine epsilon).")
    ] = None,
) -> None:
    """ICCV'21 Table 7: the largest |K_ij| each backward rule can produce, measured and analytic."""
    from rich.table import Table

    from svdablate.metalayers.analysis import gradient_bounds

    paper = _published(7)
    rows = gradient_bounds() if eps is None else gradient_bounds(eps=eps)
    table = Table(title=f"ICCV'21 Table 7: upper bound of K_ij at eps = {rows[0]['eps']:.3g}")
    for column in ("method", "analytic form", "trigger", "measured", "analytic", "paper"):
        table.add_column(
            column, justify="right" if column in ("measured", "analytic", "paper") else "left"
        )
    for row in rows:
        table.add_row(
            row["method"],
            row["analytic_form"],
            row["trigger"],
            _sci(row["measured"]),
            _sci(row["analytic"]),
            _sci(paper.get((row["method"], row["metric"]))),
        )
    console.print(table)


def main() -> None:
    """Entry point: user mistakes are one line on stderr and exit code 2, never a traceback."""
    try:
        app()
    except (UserError, ValueError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        err_console.print(f"[bold red]error[/]: {message}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
