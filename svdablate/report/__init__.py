"""svdablate.report: MLflow runs -> the papers' tables, statistics, figures.

Reads MLflow only (docs/internals.md, "MLflow layout"); imports nothing else of svdablate.
"""

from .api import log_report_artifacts, make_report, report_table, resolve_parents
from .plots import plot_study, row_curves
from .published import load_published, paper_row_name
from .render import (
    FORMATS,
    render,
    render_rich,
    rich_table,
    rich_text,
    to_csv,
    to_html,
    to_latex,
    to_markdown,
)
from .runs import (
    deduplicate,
    latest_parent,
    load_runs,
    load_speed_runs,
    metric_history,
    parent_info,
)
from .stats import compare
from .table import Column, ReportTable
from .tables import (
    LAYOUT_NAMES,
    default_layout,
    layout_table,
    speed_table,
    summary_report,
    summary_table,
)

__all__ = [
    "FORMATS",
    "LAYOUT_NAMES",
    "Column",
    "ReportTable",
    "compare",
    "deduplicate",
    "default_layout",
    "latest_parent",
    "layout_table",
    "load_published",
    "load_runs",
    "load_speed_runs",
    "log_report_artifacts",
    "make_report",
    "metric_history",
    "paper_row_name",
    "parent_info",
    "plot_study",
    "render",
    "render_rich",
    "report_table",
    "resolve_parents",
    "rich_table",
    "rich_text",
    "row_curves",
    "speed_table",
    "summary_report",
    "summary_table",
    "to_csv",
    "to_html",
    "to_latex",
    "to_markdown",
]
