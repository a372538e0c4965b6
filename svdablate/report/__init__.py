"""svdablate.report: a study's MLflow runs -> the papers' tables, the papers' claims, figures.

Reads MLflow only (docs/internals.md, "MLflow layout") and imports nothing of svdablate but the
torch-free `svdablate.schema`.

Public API (tracking_uri: an MLflow tracking URI, e.g. ``sqlite:///results/mlflow.db``;
parent_ids: a study's parent run id, several (a study and its reruns make one table), or None
for the newest study; layout: 'summary', 'eccv22-t1'..'eccv22-t5', 'iccv21-t2'..'iccv21-t5' or
None for the table the study's preset reproduces; metric: which epoch's validation error the
tables show, 'best' (default: each run's best epoch, as the papers' scripts report) or 'final'):

- ``report_table(tracking_uri, parent_ids, *, layout=None, metric="best", trend=True)
  -> ReportTable``: the table (trend=False skips reading the per-epoch κ histories, one
  ``get_metric_history`` per finished run, about 2 ms each on SQLite);
  ``ReportTable.to_frame()`` gives its numbers as a DataFrame (one row per table
  row, a column per shown value: 'val_err_mean', 'kappa', 'cifar100.val_err_mean.paper', ...;
  the κ trend cell is the per-epoch series), ``ReportTable.claims`` the claims under it.
- ``claims_frame(tracking_uri, parent_ids, *, layout=None, metric="best") -> DataFrame``: each
  claim of the papers the study's runs can test, one row each (``verdicts.CLAIM_COLUMNS``:
  paper, where, application, claim, context, rows, quantity, test, direction, values, n,
  estimate, p_claimed, p_opposite, p, p_holm, holm_level, verdict, seeds_needed, note).
  Verdicts are computed from the runs, each claim by its own test (two one-sided p's, p twice
  the smaller), Holm over the family at α = 0.05, so that the chance of any wrong verdict is at
  most 0.05 (``verdicts``; docs/claims.md lists the claims).
- ``make_report(tracking_uri, parent_ids, *, fmt="rich", out=None, layout=None,
  metric="best", log_artifacts=True) -> Report``: renders (rich | markdown | latex | csv |
  html: one self-contained page with the figures, recipe and provenance too; every format
  carries the claims, CSV as a second file ``<stem>.claims.csv`` beside
  ``out``), prints or writes it, and attaches the files and a ``svdablate.claims`` tag to the
  parent run(s). On a read-only store or artifact folder the attaching is skipped with one
  warning line that make_report itself prints to stderr and returns in ``Report.warnings``.
- ``publish_study(tracking_uri, parent_run_id, *, metric="best") -> list[str]``: what the
  MLflow UI shows of a study, on its parent run (the orchestrator calls it at the end of
  run/resume): under ``report/`` the table as an MLflow table (``<table>.json``, log_table),
  the HTML page, the CSV and claims CSV, ``kappa.png`` and ``val_err.png``; the
  ``svdablate.claims`` tag; per-row metrics ``schema.row_metric_key(stat, row)`` for
  ``schema.ROW_STATS`` at step = trials done, each logged only when its value changed (a
  second publish writes no (key, step) twice; files and table are replaced). Returns warning
  lines (already printed to stderr): one on a read-only store, which publishes nothing.
- ``plot_study(tracking_uri, parent_id, out_dir) -> dict``: κ and validation error over epochs
  per row (median, min-max band over seeds), PNG and PDF; read-only stores as make_report.
- ``latest_parent(tracking_uri)``, ``resolve_parents(...)``: find studies. Every lookup that
  misses (unknown run id, a store with no study, a run that is not a study's parent run)
  raises ``LookupError`` with one line that names the fix.
- Lower level: ``load_runs`` / ``deduplicate`` (runs as a DataFrame, canonical order),
  ``summary_table`` / ``layout_table`` / ``speed_table`` (tables from such frames), ``render``,
  ``render_rich``, ``load_published`` (the papers' printed numbers).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# light (its renderers load when they first render), and eager: `render` is this function, not
# the subpackage of the same name
from svdablate.report.render.formats import FORMATS, render
from svdablate.schema import REPORT_LAYOUTS

LAYOUT_NAMES = REPORT_LAYOUTS  # the names the CLI offers: defined once, in the schema

#: Each public name → the module defining it, imported on first use: reading a name such as
#: `render.formats.FORMATS` (the CLI's --format choices) loads neither MLflow nor the tables.
_EXPORTS = {
    "Report": "svdablate.report.api",
    "claims_frame": "svdablate.report.api",
    "make_report": "svdablate.report.api",
    "report_table": "svdablate.report.api",
    "CLAIM_COLUMNS": "svdablate.report.claims.verdicts",
    "holm": "svdablate.report.claims.verdicts",
    "publish_study": "svdablate.report.publish",
    "latest_parent": "svdablate.report.reading.parents",
    "parent_info": "svdablate.report.reading.parents",
    "resolve_parents": "svdablate.report.reading.parents",
    "deduplicate": "svdablate.report.reading.runs",
    "load_runs": "svdablate.report.reading.runs",
    "load_speed_runs": "svdablate.report.reading.runs",
    "metric_histories": "svdablate.report.reading.runs",
    "claims_csv": "svdablate.report.render.csv_table",
    "plot_study": "svdablate.report.render.plots",
    "row_curves": "svdablate.report.render.plots",
    "render_rich": "svdablate.report.render.rich_table",
    "default_layout": "svdablate.report.tables.layout_specs",
    "layout_table": "svdablate.report.tables.layouts",
    "load_published": "svdablate.report.tables.published",
    "speed_table": "svdablate.report.tables.speed",
    "compare": "svdablate.report.tables.stats",
    "summary_report": "svdablate.report.tables.summary",
    "summary_table": "svdablate.report.tables.summary",
    "Column": "svdablate.report.tables.table",
    "ReportTable": "svdablate.report.tables.table",
}

if TYPE_CHECKING:
    from svdablate.report.api import Report, claims_frame, make_report, report_table
    from svdablate.report.claims.verdicts import CLAIM_COLUMNS, holm
    from svdablate.report.publish import publish_study
    from svdablate.report.reading.parents import latest_parent, parent_info, resolve_parents
    from svdablate.report.reading.runs import (
        deduplicate,
        load_runs,
        load_speed_runs,
        metric_histories,
    )
    from svdablate.report.render.csv_table import claims_csv
    from svdablate.report.render.plots import plot_study, row_curves
    from svdablate.report.render.rich_table import render_rich
    from svdablate.report.tables.layout_specs import default_layout
    from svdablate.report.tables.layouts import layout_table
    from svdablate.report.tables.published import load_published
    from svdablate.report.tables.speed import speed_table
    from svdablate.report.tables.stats import compare
    from svdablate.report.tables.summary import summary_report, summary_table
    from svdablate.report.tables.table import Column, ReportTable


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "CLAIM_COLUMNS",
    "FORMATS",
    "LAYOUT_NAMES",
    "Column",
    "Report",
    "ReportTable",
    "claims_csv",
    "claims_frame",
    "compare",
    "deduplicate",
    "default_layout",
    "holm",
    "latest_parent",
    "layout_table",
    "load_published",
    "load_runs",
    "load_speed_runs",
    "make_report",
    "metric_histories",
    "parent_info",
    "plot_study",
    "publish_study",
    "render",
    "render_rich",
    "report_table",
    "resolve_parents",
    "row_curves",
    "speed_table",
    "summary_report",
    "summary_table",
]
