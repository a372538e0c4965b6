"""The report's formats: name → renderer, in one table.

Each format has its own module (rich_text, to_markdown, to_latex, to_html, to_csv) and one line in
`FORMATS`; `svdablate report --format` offers exactly these names and `make_report` attaches a
study's rendering to its parent run under the format's file extension. Every format shows the
table, its notes and the claims under it; CSV keeps the table's numbers alone and writes the
claims as a second CSV document (`claims_csv`, the `<table>.claims.csv` file beside the table's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from svdablate.report.render.csv_table import to_csv
from svdablate.report.render.html_page import to_html
from svdablate.report.render.latex_table import to_latex
from svdablate.report.render.markdown_table import to_markdown
from svdablate.report.render.rich_table import rich_text
from svdablate.report.tables.table import ReportTable


@dataclass(frozen=True)
class Format:
    """A renderer `ReportTable -> str` and the extension of the file it writes."""

    render: Callable[[ReportTable], str]
    extension: str


#: Every format `svdablate report --format` accepts, by name (a new format: its module, one line).
FORMATS: dict[str, Format] = {
    "rich": Format(rich_text, "txt"),
    "markdown": Format(to_markdown, "md"),
    "latex": Format(to_latex, "tex"),
    "csv": Format(to_csv, "csv"),
    "html": Format(to_html, "html"),
}


def render(table: ReportTable, fmt: str) -> str:
    """The table as text in one of FORMATS ('rich' gives the plain-text terminal rendering)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return FORMATS[fmt].render(table)


def extension(fmt: str) -> str:
    """The file extension of a format's rendering (`markdown` → `md`)."""
    return FORMATS[fmt].extension
