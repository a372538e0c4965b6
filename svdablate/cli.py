"""`svdablate`: plan · run · resume · status · report · plot · analyze · fields · ui.

Thin: each command parses its options, calls the `Study` API (or the report), and prints.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from typer._click.exceptions import ClickException

from svdablate import __version__
from svdablate.orchestrator.errors import ExitCode, UserError
from svdablate.orchestrator.presets import PRESETS
from svdablate.schema import ERROR_METRICS, REPORT_FORMATS, REPORT_LAYOUTS

EXIT_CODES = (
    "Exit codes: 0 every trial finished (diverged trials are results); 1 a trial failed after "
    "its retries, or the study was interrupted; 2 bad input (nothing started); 130 Ctrl-C."
)
app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Ablation studies of SVD meta-layers (ICCV'21, ECCV'22): Ray Tune grids, MLflow records, "
    f"the papers' tables.\n\n{EXIT_CODES}",
)
analyze_app = typer.Typer(no_args_is_help=True, help="Numerical analyses of the ICCV'21 paper.")
app.add_typer(analyze_app, name="analyze")
console = Console()
err_console = Console(stderr=True)

PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]
Format = Literal[REPORT_FORMATS]  # type: ignore[valid-type]
Layout = Literal[REPORT_LAYOUTS]  # type: ignore[valid-type]
ErrorMetric = Literal[ERROR_METRICS]  # type: ignore[valid-type]


def _version(value: bool) -> None:
    if value:
        from svdablate.orchestrator.provenance import library_versions

        versions = library_versions()
        versions.pop("svdablate", None)
        libraries = ", ".join(f"{name} {version}" for name, version in versions.items())
        console.print(f"svdablate {__version__} ({libraries})")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Ablation studies of SVD meta-layers (ICCV'21, ECCV'22)."""


def _complete_presets(incomplete: str) -> list[str]:
    """Shell completion of --preset (comma-separated lists complete their last name)."""
    head, _, last = incomplete.rpartition(",")
    prefix = f"{head}," if head else ""
    return [prefix + name for name in PRESETS if name.startswith(last)]


def _complete_rows(incomplete: str) -> list[str]:
    """Shell completion of --rows: the preset rows' spellings, methods and treatments."""
    from svdablate.schema import TREATMENT_ORDER

    head, _, last = incomplete.rpartition(",")
    prefix = f"{head}," if head else ""
    rows = dict.fromkeys(r for p in PRESETS.values() for r in p.rows)
    method, plus, _ = last.partition("+")
    if plus:
        return [f"{prefix}{method}+{t}" for t in TREATMENT_ORDER]
    return [prefix + row for row in rows if row.lower().startswith(last.lower())]


def _examples(*lines: str) -> str:
    """A command's examples, shown under its --help."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)


ResultsDir = Annotated[
    Path,
    typer.Option(
        "--results-dir", help="Where the study's MLflow store, Ray state and manifests live."
    ),
]
TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
        "sqlite:///<results-dir>/mlflow.db).",
    ),
]
Seeds = Annotated[int | None, typer.Option(help="Seeds per row (default: the preset's).")]
Rows = Annotated[
    str | None,
    typer.Option(
        help="Comma-separated rows, e.g. 'SVD,SVD+NOG' (method + treatments, any order/case).",
        autocompletion=_complete_rows,
    ),
]
Epochs = Annotated[int | None, typer.Option(help="Epochs per trial (default: the preset's).")]
Smoke = Annotated[bool, typer.Option(help="Every trial on fake data, 2 steps, on CPU.")]
GpusPerTrial = Annotated[float | None, typer.Option(help="GPUs per trial; 0.25 packs four.")]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a trial-config field: key=value (README, Trial config)."),
]


def _rows(text: str | None) -> tuple[str, ...] | None:
    """None when --rows is absent; an empty --rows is kept so that it is refused, not ignored."""
    return None if text is None else tuple(text.split(","))


def _warn(lines: list[str]) -> None:
    for line in lines:
        err_console.print(f"[yellow]warning[/]: {line}", soft_wrap=True, highlight=False)


@app.command(
    epilog=_examples(
        "svdablate plan --preset eccv22-dbn-cifar100",
        "svdablate plan --preset demo --epochs 30 --set milestones=[0.5,0.75]",
    )
)
def plan(
    preset: Annotated[PresetName, typer.Option("--preset", help="The preset.")] = "demo",
    seeds: Seeds = None,
    rows: Rows = None,
    epochs: Epochs = None,
    smoke: Smoke = False,
    gpus_per_trial: GpusPerTrial = None,
    set_: Sets = None,
) -> None:
    """Print the trial list, the effective schedule, resources and GPU-hours; nothing runs."""
    from svdablate.orchestrator.cost import plan_table
    from svdablate.orchestrator.study import Study

    study = Study.create(
        preset,
        seeds=seeds,
        rows=_rows(rows),
        epochs=epochs,
        smoke=smoke,
        overrides=set_,
        gpus_per_trial=gpus_per_trial,
        check=False,
    )
    _warn(study.warnings)
    console.print(plan_table(study.preset, study.configs, study.resources))


@app.command(
    "fields", epilog=_examples("svdablate fields", "svdablate fields --markdown > fields.md")
)
def fields_cmd(
    markdown: Annotated[bool, typer.Option(help="Print the README's markdown table.")] = False,
) -> None:
    """Every trial-config field `--set` accepts: type, default, allowed range, unit, meaning."""
    from rich.table import Table

    from svdablate.orchestrator.config import field_reference, reference_markdown

    if markdown:
        sys.stdout.write(reference_markdown() + "\n")
        return
    table = Table(title="Trial config: svdablate run --set KEY=VALUE")
    for column in ("key", "type", "default", "allowed", "unit", "meaning"):
        table.add_column(column, overflow="fold")
    for row in field_reference():
        table.add_row(*(row[k] for k in ("key", "type", "default", "range", "unit", "meaning")))
    console.print(table)


def _print_outcome(study: Any, outcome: Any, *, report: bool, metric: str) -> None:
    console.print(
        f"{outcome.name}: {outcome.trials} trials — {outcome.finished} finished, "
        f"{outcome.diverged} diverged, {outcome.failed} failed, {outcome.unfinished} unfinished "
        f"({outcome.skipped} already finished before) in {outcome.seconds} s; MLflow writes "
        f"{outcome.mlflow_write_seconds} s for {outcome.epochs_logged} epochs",
        highlight=False,
    )
    if report and not outcome.interrupted_by and not outcome.unsent_writes:
        _print_report(study.tracking_uri, [outcome.parent_run_id], fmt="rich", metric=metric)
    left = outcome.unfinished + outcome.failed
    if outcome.exit_code != ExitCode.OK and (left or outcome.interrupted_by):
        what = "interrupted" if outcome.interrupted_by or outcome.unfinished else "failed"
        if outcome.failed:
            err_console.print(
                f"{outcome.failed} trial(s) failed: their errors are the "
                "svdablate.error tag of their MLflow runs",
                highlight=False,
                soft_wrap=True,
            )
        err_console.print(
            f"{what}: {left} trial(s) left; continue with `{outcome.resume_command}`",
            highlight=False,
            soft_wrap=True,
        )
    if outcome.unsent_writes:  # the last line: where the unsent records wait
        err_console.print(outcome.unsent_line, highlight=False, soft_wrap=True)


@app.command(
    epilog=_examples(
        "svdablate run                                   (the demo: digits, CPU, minutes)",
        "svdablate run --preset demo --rows SVD,SVD+NOG --seeds 5 --set lr=0.1",
        "svdablate run --preset eccv22-dbn-cifar100 --data-dir /data --address ray://head:10001 "
        "--gpus-per-trial 0.25 --tracking-uri http://mlflow:5000",
        "svdablate run --preset demo --extend RUN_ID --seeds 10",
        EXIT_CODES,
    )
)
def run(
    preset: Annotated[
        str,
        typer.Option(
            "--preset",
            help=f"Preset name(s), comma-separated: {', '.join(PRESETS)}.",
            autocompletion=_complete_presets,
        ),
    ] = "demo",
    seeds: Seeds = None,
    rows: Rows = None,
    epochs: Epochs = None,
    smoke: Smoke = False,
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
    experiment: Annotated[
        str | None,
        typer.Option(
            help="MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else the preset's name)."
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster address: host:port, ray://host:10001, 'auto' (the last `ray start` "
            "cluster) or 'local' (default: $RAY_ADDRESS, else a local Ray of this command's own)."
        ),
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
        str | None, typer.Option(help="Add seeds/rows to this study (its parent run id).")
    ] = None,
    set_: Sets = None,
    report: Annotated[bool, typer.Option(help="Print the study's table at the end.")] = True,
    metric: Annotated[
        ErrorMetric,
        typer.Option(help="Error of each run in the table: best epoch (the papers') or final."),
    ] = "best",
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
    from svdablate.orchestrator.study import Study

    names = [n.strip() for n in preset.split(",") if n.strip()]
    if not names:
        raise UserError("--preset is empty: name a preset, e.g. --preset demo")
    if extend:
        if len(names) != 1:
            raise UserError("--extend takes one study: name one --preset")
        study = Study.load(results_dir, extend)
        outcome = study.extend(
            seeds=seeds,
            rows=_rows(rows),
            epochs=epochs,
            overrides=set_,
            progress=progress,
            console=console,
            release_ray=True,
        )
        console.print(f"extended study {study.parent_run_id} with {outcome.trials} new trials")
        _print_outcome(study, outcome, report=report, metric=metric)
        raise typer.Exit(outcome.exit_code)
    studies = [  # every grid is checked before Ray starts
        Study.create(
            name,
            seeds=seeds,
            rows=_rows(rows),
            epochs=epochs,
            smoke=smoke,
            overrides=set_,
            results_dir=results_dir,
            tracking_uri=tracking_uri,
            storage_path=storage_path,
            address=address,
            experiment=experiment,
            data_dir=data_dir,
            download=download,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            max_concurrent=max_concurrent,
            max_failures=max_failures,
        )
        for name in names
    ]
    for study in studies:
        _warn(study.warnings)
    code = ExitCode.OK
    for index, study in enumerate(studies):
        outcome = study.run(
            progress=progress,
            keep_checkpoints=keep_checkpoints,
            console=console,
            release_ray=index == len(studies) - 1,  # Ray stops while the last study publishes
        )
        console.print(
            f"study [bold]{study.name}[/]: {outcome.trials} trials, parent run "
            f"{study.parent_run_id}, tracking {study.tracking_uri}"
        )
        _print_outcome(study, outcome, report=report, metric=metric)
        code = max(code, outcome.exit_code)
        if outcome.interrupted_by:
            break
    raise typer.Exit(code)


@app.command(
    epilog=_examples(
        "svdablate resume --latest",
        "svdablate resume RUN_ID --results-dir /shared/results --address ray://head:10001",
        EXIT_CODES,
    )
)
def resume(
    run_id: Annotated[str | None, typer.Argument(help="Parent run id of the study.")] = None,
    latest: Annotated[bool, typer.Option(help="The newest study under --results-dir.")] = False,
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
    report: Annotated[bool, typer.Option(help="Print the study's table at the end.")] = True,
    metric: Annotated[
        ErrorMetric, typer.Option(help="Error of each run: best epoch (the papers') or final.")
    ] = "best",
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Continue an interrupted study: finished trials are not re-run, MLflow runs are reused."""
    from svdablate.orchestrator.study import Study

    if run_id is None and not latest:
        raise UserError("name the study: `svdablate resume RUN_ID` or `svdablate resume --latest`")
    study = Study.load(results_dir, None if latest else run_id, tracking_uri=tracking_uri)
    if address:
        study.address = address
    console.print(f"resuming study [bold]{study.name}[/] ({study.parent_run_id})")
    outcome = study.resume(progress=progress, console=console, release_ray=True)
    _print_outcome(study, outcome, report=report, metric=metric)
    raise typer.Exit(outcome.exit_code)


@app.command(epilog=_examples("svdablate status", "svdablate status RUN_ID --results-dir DIR"))
def status(
    run_id: Annotated[
        str | None, typer.Argument(help="Parent run id (default: the newest).")
    ] = None,
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
) -> None:
    """Trial counts of a study that may be running elsewhere (reads its MLflow runs).

    Exit code 1 when a trial failed or the study was interrupted, else 0.
    """
    from rich.table import Table

    from svdablate.orchestrator.study import Study
    from svdablate.schema import StudyStatus, TrialStatus

    counts = Study.load(results_dir, run_id, tracking_uri=tracking_uri).status()
    console.print(f"{counts['study']} · parent run {counts['parent_run_id']}", highlight=False)
    table = Table(show_header=False)
    table.add_column("", no_wrap=True)
    table.add_column("", justify="right", no_wrap=True)
    for key in ["study_status", "trials", "pending", *TrialStatus.ALL, "epochs_logged"]:
        table.add_row(key.replace("_", " "), str(counts[key]))
    console.print(table)
    bad = counts[TrialStatus.FAILED] or counts["study_status"] in (
        StudyStatus.INTERRUPTED,
        StudyStatus.FAILED,
    )
    raise typer.Exit(ExitCode.FAILED if bad else ExitCode.OK)


def _print_report(
    tracking_uri: str, run_ids: list[str] | None, *, fmt: str, out: Path | None = None, **kw: Any
) -> int:
    """Print (or write) the report; exit code 1 when a reported trial failed."""
    from svdablate.report import make_report
    from svdablate.schema import TrialStatus

    report = make_report(tracking_uri, run_ids, fmt=fmt, out=out, console=console, **kw)
    if out is not None:
        console.print(f"wrote {out}")
    return ExitCode.FAILED if report.table.statuses.get(TrialStatus.FAILED) else ExitCode.OK


def _store(tracking_uri: str | None, results_dir: Path) -> str:
    from svdablate.orchestrator.manifest import default_tracking_uri
    from svdablate.orchestrator.relocate import relocate_artifacts
    from svdablate.orchestrator.tracking import check_store, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri, results_dir, create=False)
    check_store(uri)
    if uri == default_tracking_uri(results_dir):
        relocate_artifacts(results_dir)  # a copied or moved folder writes into itself
    return uri


@app.command(
    "report",
    epilog=_examples(
        "svdablate report --latest",
        "svdablate report RUN_ID --format latex --out table4.tex",
        "svdablate report RUN_A,RUN_B --layout eccv22-t2 --metric final",
        "svdablate report --format html --out report.html",
    ),
)
def report_cmd(
    run_id: Annotated[str | None, typer.Argument(help="Parent run id(s), comma-separated.")] = None,
    latest: Annotated[bool, typer.Option(help="The newest study in the store.")] = False,
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
    fmt: Annotated[
        Format, typer.Option("--format", help="rich is the terminal's; html a page of its own.")
    ] = "rich",
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None,
    layout: Annotated[
        Layout | None, typer.Option(help="Paper table layout (default: chosen from the study).")
    ] = None,
    metric: Annotated[
        ErrorMetric, typer.Option(help="Error of each run: best epoch (the papers') or final.")
    ] = "best",
    experiment: Annotated[
        str | None,
        typer.Option(help="Newest study of this experiment (default: $MLFLOW_EXPERIMENT_NAME)."),
    ] = None,
) -> None:
    """The study's table in the paper's layout, beside the published numbers, with statistics.

    Exit code 1 when a trial of the study failed (the table is still printed).
    """
    uri = _store(tracking_uri, results_dir)
    ids = None if latest or not run_id else [r for r in run_id.split(",") if r]
    experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME")
    code = _print_report(
        uri, ids, fmt=fmt, out=out, layout=layout, metric=metric, experiment=experiment
    )
    raise typer.Exit(code)


@app.command(epilog=_examples("svdablate plot --latest", "svdablate plot RUN_ID --out-dir figs"))
def plot(
    run_id: Annotated[
        str | None, typer.Argument(help="Parent run id (default: the newest).")
    ] = None,
    latest: Annotated[bool, typer.Option(help="The newest study in the store.")] = False,
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
    out_dir: Annotated[Path | None, typer.Option(help="Folder for the PNG/PDF figures.")] = None,
) -> None:
    """κ over training and validation error per row (median over seeds, min–max band)."""
    from svdablate.report import latest_parent, plot_study

    uri = _store(tracking_uri, results_dir)
    run_id = None if latest else run_id
    run_id = run_id or latest_parent(uri)
    folder = out_dir or results_dir / "figures" / run_id
    result = plot_study(uri, run_id, folder)
    for path in result.get("paths", []):
        console.print(f"wrote {path}")


@app.command(epilog=_examples("svdablate ui", "svdablate ui --results-dir DIR --port 5001"))
def ui(
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
) -> None:
    """Start the MLflow UI on the study's tracking store."""
    uri = _store(tracking_uri, results_dir)
    console.print(f"MLflow UI on http://{host}:{port} for {uri} (Ctrl-C stops it)")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    os.execvp(sys.executable, [*command, "--host", host, "--port", str(port)])


def _published(table: int) -> dict[tuple[str, str], float]:
    """ICCV'21 published values of one analysis table, keyed by (method, metric)."""
    from svdablate.report import load_published

    rows = load_published()
    rows = rows[(rows.paper == "iccv21") & (rows.table == table)]
    return {(r.method, r.metric): float(r.value) for r in rows.itertuples()}


def _sci(value: Any) -> str:
    """Three significant figures (Table 6's 36.2 and 904, not 36 and 9e+02)."""
    if value is None:
        return "/"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


@analyze_app.command(
    "approx", epilog=_examples("svdablate analyze approx", "svdablate analyze approx --degree 50")
)
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


@analyze_app.command(
    "bounds", epilog=_examples("svdablate analyze bounds", "svdablate analyze bounds --eps 1e-12")
)
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
    """Entry point: a user mistake is one line on stderr and exit code 2, never a traceback.

    Only `UserError` (and the report's `LookupError` for an unknown study) are user mistakes: any
    other exception is a bug and shows its traceback.
    """
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no store-migration chatter
    try:
        code = app(standalone_mode=False)
    except ClickException as exc:  # a wrong option, value or type: click's message, one line
        if exc.exit_code == 0 or type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()
            sys.exit(exc.exit_code)
        command = getattr(getattr(exc, "ctx", None), "command_path", "svdablate")
        _error(f"{exc.format_message()} (see `{command} --help`)")
        sys.exit(ExitCode.USAGE)
    except typer.Abort:
        sys.exit(ExitCode.CTRL_C)
    except (UserError, LookupError) as exc:
        if isinstance(exc, KeyError | IndexError):  # bugs, not an unknown study
            raise
        _error(str(exc))
        sys.exit(ExitCode.USAGE)
    sys.exit(code if isinstance(code, int) else ExitCode.OK)


def _error(text: str) -> None:
    """One line on stderr, whatever the terminal's width."""
    message = text.strip().splitlines()[0] if text.strip() else "error"
    err_console.print(f"[bold red]error[/]: {message}", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()
