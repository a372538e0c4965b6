"""Entry points: a study's table and claims, rendered, shown and attached to its parent run(s)."""

from __future__ import annotations

import contextlib
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH
from rich.console import Console

from svdablate.schema import REPORT_ARTIFACT_DIR, Metric, Tag, TrialStatus

from .layout_specs import default_layout
from .layouts import layout_table
from .parents import client, parent_info, resolve_parents
from .render import EXTENSIONS, render
from .render_csv import claims_csv
from .render_rich import render_rich
from .runs import deduplicate, load_runs, load_speed_runs, metric_histories
from .speed import SPEED_LAYOUT, speed_table
from .table import ReportTable

#: What attaching can raise on a read-only archive: the artifact folder (OSError) or the store.
ATTACH_ERRORS = (OSError, MlflowException)


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
    preset = str(parent_info(tracking_uri, parents[0])["preset"])
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
    return table


def claims_frame(
    tracking_uri: str | None,
    parent_ids: str | Sequence[str] | None = None,
    *,
    layout: str | None = None,
    metric: str = "best",
    experiment: str | None = None,
) -> pd.DataFrame:
    """The papers' claims the study's rows test, one row each (`verdicts.CLAIM_COLUMNS`):
    paper, where (section/table), application, claim, context, rows, quantity, direction,
    values, n, estimate, p, p_holm, p_opposite, p_opposite_holm, verdict, seeds_needed, note."""
    table = report_table(
        tracking_uri, parent_ids, layout=layout, metric=metric, experiment=experiment, trend=False
    )
    return table.claims.copy()


def claim_lines(claims: pd.DataFrame) -> list[str]:
    """One line per claim: where, what, the verdict and its numbers (the parent run's tag)."""
    lines = []
    for c in claims.itertuples(index=False):
        context = f" [{c.context}]" if c.context else ""
        p = f"; p_Holm {c.p_holm:.3g}" if pd.notna(c.p_holm) else ""
        note = f"; {c.note}" if c.note else ""
        lines.append(
            f"{c.paper} {c.where}: {c.claim}{context}: {c.verdict} "
            f"({c.rows}: {c.values}, n {c.n}{p}{note})"
        )
    return lines


@contextlib.contextmanager
def _quiet_store_errors() -> Iterator[None]:
    """MLflow's SQL store logs a traceback before raising on a read-only database: hide it
    (the caller reports the failure in one line)."""
    logger = logging.getLogger("mlflow.store")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def attach_to_parents(
    tracking_uri: str | None,
    parent_ids: Sequence[str],
    paths: Sequence[Path],
    claims: pd.DataFrame | None = None,
) -> str | None:
    """Attach files under `report/` to each parent run and, with `claims`, tag it with their
    verdicts (`Tag.CLAIMS`). Returns None, or a one-line warning when the store or its artifact
    folder refuses (a read-only archive): the report itself is complete either way."""
    mlflow = client(tracking_uri)
    try:
        with _quiet_store_errors():
            for parent in parent_ids:
                for path in paths:
                    mlflow.log_artifact(parent, str(path), artifact_path=REPORT_ARTIFACT_DIR)
                if claims is not None:
                    text = "\n".join(claim_lines(claims))
                    mlflow.set_tag(parent, Tag.CLAIMS, text[:MAX_TAG_VAL_LENGTH])
    except ATTACH_ERRORS as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return (
            f"warning: not attached to parent run(s) {', '.join(parent_ids)} (read-only store "
            f"or artifact folder? {type(err).__name__}: {reason})"
        )
    return None


def print_warning(message: str | None, warnings: list[str]) -> None:
    """Print a warning line to stderr and keep it in `warnings` (nothing for None)."""
    if message:
        warnings.append(message)
        sys.stderr.write(message + "\n")
        sys.stderr.flush()


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
        sys.stdout.write(text)
        sys.stdout.flush()


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
    latex | csv | html. out: the file to write (else the terminal / stdout); a CSV table's
    claims go to `<stem>.claims.csv` beside it (stdout gets the table alone). parent_ids: one
    id, several (de-duplicated reruns), or None for the newest study (in `experiment`).
    With log_artifacts the rendered file, the CSV and the claims CSV are attached to every
    parent run under `report/` and its verdicts set as the `svdablate.claims` tag; when the
    store is read-only that is skipped with one warning line on stderr (also in
    `Report.warnings`).
    """
    speed = layout == SPEED_LAYOUT
    parents = [] if speed else resolve_parents(tracking_uri, parent_ids, experiment)
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
                path = Path(tmp) / f"{table.name}.{EXTENSIONS[kind]}"
                path.write_text(text if kind == fmt else render(table, kind), encoding="utf-8")
                paths.append(path)
            claims_file = claims_path(Path(tmp) / f"{table.name}.csv")
            claims_file.write_text(claims_csv(table), encoding="utf-8")
            paths.append(claims_file)
            message = attach_to_parents(tracking_uri, parents, paths, table.claims)
        print_warning(message, report.warnings)
    return report
