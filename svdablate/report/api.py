"""Entry points: a study's table and claims, rendered, shown and attached to its parent run(s)."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console

from svdablate.report.attach import attach_to_parents, print_warning
from svdablate.report.claims.sequential import UntilDecided, sequential_claims
from svdablate.report.claims.verdicts import CLAIM_COLUMNS
from svdablate.report.reading.parents import parent_info, resolve_parents
from svdablate.report.reading.runs import deduplicate, load_runs, load_speed_runs, metric_histories
from svdablate.report.render.csv_table import claims_csv
from svdablate.report.render.formats import extension, render
from svdablate.report.render.html_page import html_page
from svdablate.report.render.page import StudyPage, study_page
from svdablate.report.render.plots import StudyFigures, figure_histories, study_figures
from svdablate.report.render.rich_table import render_rich
from svdablate.report.tables.layout_specs import LAYOUTS, default_layout
from svdablate.report.tables.layouts import layout_table
from svdablate.report.tables.speed import SPEED_LAYOUT, speed_table
from svdablate.report.tables.table import ReportTable
from svdablate.schema import REPORT_LAYOUTS, Metric, TrialStatus

if set(REPORT_LAYOUTS) != {"summary", *LAYOUTS, SPEED_LAYOUT}:  # the CLI's names: in the schema
    raise RuntimeError("svdablate.schema.REPORT_LAYOUTS and the report's layouts differ")


@dataclass
class Report:
    """What `make_report` rendered: the text, the table (its `claims`), and warning lines
    (already printed to stderr), e.g. that the files could not be attached to the parent run."""

    text: str
    table: ReportTable
    warnings: list[str] = field(default_factory=list)


def report_table(
    tracking_uri: str | None,
    parent_ids: str | Sequence[str] | None = None,
    *,
    layout: str | None = None,
    metric: str = "best",
    experiment: str | None = None,
    trend: bool = True,
) -> ReportTable:
    """The study's table and the papers' claims its rows test (`ReportTable.claims`).

    layout: 'summary', 'eccv22-t1'..'t5', 'iccv21-t2'..'t5', or None for the table the study's
    preset reproduces ('iccv21-t5' reads the meta-layer speed experiment instead). metric:
    which epoch's error, 'best' (default, the papers' convention) or 'final'. trend: read the
    finished runs' κ histories for the per-epoch κ trend column (one read per run).
    """
    if layout == SPEED_LAYOUT:
        return speed_table(load_speed_runs(tracking_uri))
    parents = resolve_parents(tracking_uri, parent_ids, experiment)
    runs = load_runs(tracking_uri, parents)
    history = None
    if trend:
        kept, _ = deduplicate(runs)
        shown = kept.loc[kept["status"] == TrialStatus.FINISHED, "run_id"]
        history = metric_histories(tracking_uri, shown, Metric.KAPPA_MEDIAN)
    return study_table(tracking_uri, parents, runs, layout=layout, metric=metric, history=history)


def study_table(
    tracking_uri: str | None,
    parents: Sequence[str],
    runs: pd.DataFrame,
    *,
    layout: str | None,
    metric: str,
    history: pd.DataFrame | None,
) -> ReportTable:
    """The table of the parents' `runs` (`load_runs`); `history`: their κ histories (the trend
    column; None leaves it out)."""
    info = parent_info(tracking_uri, parents[0])
    preset = str(info["preset"])
    table = layout_table(
        runs,
        runs.attrs["rows"],
        layout or default_layout(preset),
        metric=metric,
        kappa_history=history,
    )
    table.notes.append(f"study: preset {preset or '?'}; parent run(s) {', '.join(parents)}.")
    kept, _ = deduplicate(runs)
    table.statuses = {str(k): int(v) for k, v in kept["status"].value_counts().items()}
    if info["until_decided"] and len(parents) == 1:
        until_decided(table, _with_attrs(kept, runs), history, info, metric)
    return table


def _with_attrs(kept: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    kept.attrs = runs.attrs
    return kept


def until_decided(
    table: ReportTable,
    runs: pd.DataFrame,
    history: pd.DataFrame | None,
    info: dict[str, object],
    metric: str,
) -> None:
    """A study run until decided: its claims are the sequential verdicts (`claims.sequential`,
    re-tested at each look it reached), and a note says how many waves ran and why it stopped."""
    design = UntilDecided.from_tag(str(info["until_decided"]))
    claims = sequential_claims(runs, history, design, metric)
    if not claims.empty:
        table.claims = claims[list(CLAIM_COLUMNS)].reset_index(drop=True)
    table.notes.append(
        design.summary() + ". Each claim's verdict is Holm at its look's spent α (column "
        "holm_level), not the fixed-n test of all seeds, which peeking would invalidate."
    )


@dataclass
class StudyReport:
    """Everything a study's page shows: its runs (`load_runs`), table, figures and the rest."""

    runs: pd.DataFrame
    table: ReportTable
    figures: StudyFigures
    page: StudyPage

    @property
    def html(self) -> str:
        return html_page(self.table, self.page)


def study_report(
    tracking_uri: str | None, parents: Sequence[str], *, layout: str | None, metric: str
) -> StudyReport:
    """Read the parents' runs once and build the table, the figures, the recipe and the
    provenance from them (the metric histories are read once for the trend and the figures)."""
    runs = load_runs(tracking_uri, parents)
    histories = figure_histories(tracking_uri, runs)
    table = study_table(
        tracking_uri,
        parents,
        runs,
        layout=layout,
        metric=metric,
        history=histories[Metric.KAPPA_MEDIAN],
    )
    preset = str(parent_info(tracking_uri, parents[0])["preset"])
    drawn = study_figures(runs, histories, preset)
    page = study_page(tracking_uri, parents, drawn, runs.attrs["rows"])
    return StudyReport(runs, table, drawn, page)


def claims_frame(
    tracking_uri: str | None,
    parent_ids: str | Sequence[str] | None = None,
    *,
    layout: str | None = None,
    metric: str = "best",
    experiment: str | None = None,
) -> pd.DataFrame:
    """The papers' claims the study's rows test, one row each (`verdicts.CLAIM_COLUMNS`):
    paper, where (section/table), application, claim, context, rows, quantity, test,
    direction, values, n, estimate, p_claimed, p_opposite, p, p_holm, holm_level, verdict,
    seeds_needed, note. The κ histories are read (the κ-trend claims need them)."""
    table = report_table(
        tracking_uri, parent_ids, layout=layout, metric=metric, experiment=experiment
    )
    return table.claims.copy()


def _emit(
    table: ReportTable, text: str, fmt: str, out: Path | None, console: Console | None
) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        if fmt == "csv":
            claims_path(out).write_text(claims_csv(table), encoding="utf-8")
    elif fmt == "rich":
        render_rich(table, console)
    else:
        sys.stdout.write(stdout_text(table, text, fmt))
        sys.stdout.flush()


def stdout_text(table: ReportTable, text: str, fmt: str) -> str:
    """What the terminal gets: the rendering; for CSV the table's CSV, then (after one blank
    line) the claims CSV when the rows test any: stdout has no second file to put them in."""
    if fmt != "csv" or table.claims.empty:
        return text
    return f"{text}\n{claims_csv(table)}"


def claims_path(table_path: Path) -> Path:
    """Where the claims CSV of a CSV table goes: `<stem>.claims.csv` beside it."""
    return table_path.with_name(f"{table_path.stem}.claims.csv")


def make_report(
    tracking_uri: str | None,
    parent_ids: str | Sequence[str] | None = None,
    *,
    fmt: str = "rich",
    out: str | Path | None = None,
    layout: str | None = None,
    metric: str = "best",
    experiment: str | None = None,
    log_artifacts: bool = True,
    console: Console | None = None,
) -> Report:
    """Build, show and attach a study's table and claims.

    fmt: rich (coloured in the terminal; the returned text is its plain form) | markdown |
    latex | csv | html (one self-contained page: the table, the claims, the κ and error
    figures, the recipe and the provenance). out: the file to write (else the terminal /
    stdout); a CSV table's claims go to `<stem>.claims.csv` beside it (on stdout they follow
    the table's CSV after a blank line). parent_ids: one id, several (de-duplicated reruns),
    or None for the newest study (in `experiment`).
    With log_artifacts the rendered file, the CSV and the claims CSV are attached to every
    parent run under `report/` and its verdicts set as the `svdablate.claims` tag; when the
    store is read-only that is skipped with one warning line on stderr (also in
    `Report.warnings`).
    """
    speed = layout == SPEED_LAYOUT
    parents = [] if speed else resolve_parents(tracking_uri, parent_ids, experiment)
    if fmt == "html" and parents:  # the page: figures, recipe and provenance too
        study = study_report(tracking_uri, parents, layout=layout, metric=metric)
        table, text = study.table, study.html
    else:
        table = report_table(
            tracking_uri, parents or None, layout=layout, metric=metric, experiment=experiment
        )
        text = render(table, fmt)
    _emit(table, text, fmt, Path(out) if out is not None else None, console)
    report = Report(text, table)
    if log_artifacts and parents:
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for kind in dict.fromkeys((fmt, "csv")):
                path = Path(tmp) / f"{table.name}.{extension(kind)}"
                path.write_text(text if kind == fmt else render(table, kind), encoding="utf-8")
                paths.append(path)
            claims_file = claims_path(Path(tmp) / f"{table.name}.csv")
            claims_file.write_text(claims_csv(table), encoding="utf-8")
            paths.append(claims_file)
            message = attach_to_parents(tracking_uri, parents, paths, table.claims)
        print_warning(message, report.warnings)
    return report
