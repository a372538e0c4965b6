"""Entry points the CLI calls: build a study's table, render it, log it to the parent run."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mlflow import MlflowClient
from rich.console import Console

from .render import EXTENSIONS, render, render_rich
from .runs import latest_parent, load_runs, load_speed_runs, parent_info
from .table import ReportTable
from .tables import SPEED_LAYOUT, default_layout, layout_table, speed_table

ARTIFACT_DIR = "report"


def resolve_parents(
    tracking_uri: str | None,
    parent_run_id: str | Sequence[str] | None,
    experiment: str | None = None,
) -> list[str]:
    """The parent run ids to report: those given, else the newest parent (in `experiment`)."""
    if parent_run_id is None:
        return [latest_parent(tracking_uri, experiment)]
    if isinstance(parent_run_id, str):
        return [parent_run_id]
    parents = list(dict.fromkeys(parent_run_id))
    return parents or [latest_parent(tracking_uri, experiment)]


def report_table(
    tracking_uri: str | None,
    parent_run_id: str | Sequence[str] | None = None,
    *,
    layout: str | None = None,
    experiment: str | None = None,
) -> ReportTable:
    """The study's table: `layout` ('summary', 'eccv22-t1'..'t5', 'iccv21-t2'..'t5') or the
    preset's paper table by default. 'iccv21-t5' reads the `metalayer-speed` experiment instead.
    """
    if layout == SPEED_LAYOUT:
        return speed_table(load_speed_runs(tracking_uri))
    parents = resolve_parents(tracking_uri, parent_run_id, experiment)
    runs = load_runs(tracking_uri, parents)
    info = parent_info(tracking_uri, parents[0])
    table = layout_table(runs, runs.attrs["rows"], layout or default_layout(str(info["preset"])))
    preset = info["preset"] or "?"
    table.notes.append(f"study: preset {preset}; parent run(s) {', '.join(parents)}.")
    return table


def log_report_artifacts(
    tracking_uri: str | None, parent_run_ids: Sequence[str], paths: Sequence[Path]
) -> None:
    """Attach files to each parent run under `report/` (the MLflow UI shows them)."""
    client = MlflowClient(tracking_uri=tracking_uri)
    for parent in parent_run_ids:
        for path in paths:
            client.log_artifact(parent, str(path), artifact_path=ARTIFACT_DIR)


def _emit(
    table: ReportTable, text: str, fmt: str, out: Path | None, console: Console | None
) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    elif fmt == "rich":
        render_rich(table, console)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def make_report(
    tracking_uri: str | None,
    parent_run_id: str | Sequence[str] | None = None,
    *,
    fmt: str = "rich",
    out: str | Path | None = None,
    layout: str | None = None,
    experiment: str | None = None,
    log_artifacts: bool = True,
    console: Console | None = None,
) -> str:
    """Build, show and log a study's table; returns the rendered text.

    fmt: rich (coloured table in the terminal; the returned/written text is its plain form) |
    markdown | latex | csv | html. out: file to write (else the terminal/stdout). parent_run_id:
    one id, several (reports across invocations, de-duplicated), or None for the newest parent
    (in `experiment` if given). With log_artifacts the rendered file and the CSV are logged to
    every parent run under `report/`.
    """
    speed = layout == SPEED_LAYOUT
    parents = [] if speed else resolve_parents(tracking_uri, parent_run_id, experiment)
    table = report_table(tracking_uri, parents or None, layout=layout, experiment=experiment)
    text = render(table, fmt)
    _emit(table, text, fmt, Path(out) if out is not None else None, console)
    if log_artifacts and parents:
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for kind in dict.fromkeys((fmt, "csv")):
                path = Path(tmp) / f"{table.name}.{EXTENSIONS[kind]}"
                path.write_text(text if kind == fmt else render(table, kind), encoding="utf-8")
                paths.append(path)
            log_report_artifacts(tracking_uri, parents, paths)
    return text
