"""Render a ReportTable in one of FORMATS.

Each format has its own module (render_rich, render_markdown, render_latex, render_html,
render_csv). Every format shows the table, its notes and the claims under it; CSV keeps the
table's numbers alone and writes the claims as a second CSV document (`claims_csv`, the
`<table>.claims.csv` file beside the table's).
"""

from __future__ import annotations

from svdablate.report.render.csv_table import to_csv
from svdablate.report.render.html_page import to_html
from svdablate.report.render.latex_table import to_latex
from svdablate.report.render.markdown_table import to_markdown
from svdablate.report.render.rich_table import rich_text
from svdablate.report.tables.table import ReportTable
from svdablate.schema import REPORT_FORMATS

FORMATS = REPORT_FORMATS
EXTENSIONS = {"rich": "txt", "markdown": "md", "latex": "tex", "csv": "csv", "html": "html"}
_RENDERERS = {
    "rich": rich_text,
    "markdown": to_markdown,
    "latex": to_latex,
    "csv": to_csv,
    "html": to_html,
}


def render(table: ReportTable, fmt: str) -> str:
    """The table as text in one of FORMATS ('rich' gives the plain-text terminal rendering)."""
    if fmt not in _RENDERERS:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return _RENDERERS[fmt](table)
