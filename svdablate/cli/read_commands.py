"""`status`, `report`, `plot` and `ui`: the commands that read a study's MLflow records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from svdablate.cli.app import (
    ErrorMetric,
    Layout,
    ResultsDir,
    TrackingUri,
    _error,
    _examples,
    app,
    console,
)
from svdablate.errors import ExitCode
from svdablate.report.render.formats import FORMATS


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

    from svdablate.schema import TrialStatus
    from svdablate.study.study import Study

    progress = Study.load(results_dir, run_id, tracking_uri=tracking_uri).status()
    console.print(f"{progress.study} · parent run {progress.parent_run_id}", highlight=False)
    table = Table(show_header=False)
    table.add_column("", no_wrap=True)
    table.add_column("", justify="right", no_wrap=True)
    for key in ["study_status", "trials", TrialStatus.PENDING, *TrialStatus.ALL, "epochs_logged"]:
        table.add_row(key.replace("_", " "), str(getattr(progress, key)))
    console.print(table)
    raise typer.Exit(progress.exit_code)


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
    from svdablate.store.relocate import relocate_artifacts
    from svdablate.store.tracking import check_store, resolve_tracking_uri
    from svdablate.study.manifest import default_tracking_uri

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
    fmt: Annotated[  # the report's formats when the command is built: a registered one is there
        Literal[tuple(FORMATS)],  # type: ignore[valid-type]
        typer.Option("--format", help="rich is the terminal's; html a page of its own."),
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


#: MLflow 3 opens an experiment on its GenAI "Overview / Traces" page unless told otherwise.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def run_url(base: str, experiment_id: str, run_id: str, tab: str = "") -> str:
    """A run's page in the MLflow UI at `base`, in the model-training view (runs, metrics), on
    its `tab` (a route under the run, e.g. `artifacts/report/summary.html`; default overview)."""
    route = f"/{tab}" if tab else ""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}{route}?{MODEL_TRAINING_VIEW}"


def _study_url(uri: str, base: str, run_id: str | None) -> str | None:
    """The parent run's page of `run_id` (default: the newest study); None in an empty store."""
    from svdablate.report import latest_parent, parent_info

    try:
        run_id = run_id or latest_parent(uri)
    except LookupError:
        return None
    return run_url(base, str(parent_info(uri, run_id)["experiment_id"]), run_id)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _open_when_up(command: list[str], probe: str, url: str, timeout: float = 180) -> int:
    """Run the UI server, open `url` in the browser once `probe` (the server's own address)
    answers, then wait for the server to stop. Ctrl-C or SIGTERM stops the server too."""
    import signal
    import time
    import webbrowser

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    server = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + timeout
        while not _answers(f"{probe}/health"):
            if server.poll() is not None:
                return server.returncode
            if time.monotonic() > deadline:
                _error(f"the MLflow UI did not answer on {probe} in {timeout:.0f} s")
                server.terminate()
                server.wait(30)
                return int(ExitCode.FAILED)
            time.sleep(0.2)
        if not webbrowser.open(url):
            console.print(f"no web browser found: open {url}", highlight=False, soft_wrap=True)
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        return server.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command(
    epilog=_examples(
        "svdablate ui",
        "svdablate ui RUN_ID --open",
        "svdablate ui --results-dir DIR --port 5001",
    )
)
def ui(
    run_id: Annotated[
        str | None, typer.Argument(help="Parent run id of the study (default: the newest).")
    ] = None,
    results_dir: ResultsDir = Path("results"),
    tracking_uri: TrackingUri = None,
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    open_: Annotated[
        bool, typer.Option("--open", help="Open the study's page in the web browser.")
    ] = False,
) -> None:
    """Start the MLflow UI on the study's tracking store and print the study's page: its parent
    run in the model-training view (runs, metrics, the report under Artifacts)."""
    import socket

    uri = _store(tracking_uri, results_dir)
    shown = socket.getfqdn() if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    url = _study_url(uri, base, run_id)
    console.print(
        f"MLflow UI on {base} for {uri} (Ctrl-C stops it)", highlight=False, soft_wrap=True
    )
    if url:
        console.print(f"study: {url}", highlight=False, soft_wrap=True)
    sys.stdout.flush()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    command += ["--host", host, "--port", str(port)]
    # MLflow's job runner (GenAI evaluation jobs: ~10 huey worker processes, ~14 CPU-s to start)
    # serves nothing a study's pages need; MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true brings it back.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if open_:
        local = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)  # a wildcard is no address
        raise typer.Exit(_open_when_up(command, f"http://{local}:{port}", url or base))
    os.execvp(sys.executable, command)
