"""The report's formats: name → renderer, in one table.

Each format has its own module under `report/render/` and one line in `FORMATS`;
`svdablate report --format` offers exactly these names and `make_report` attaches a study's
rendering to its parent run under the format's file extension. A renderer is named
`"module:function"` (imported when it first renders, so the CLI reads the names without loading
the report) or given as the function itself. Every format shows the table, its notes and the
claims under it; CSV keeps the table's numbers alone and writes the claims as a second CSV
document (`claims_csv`, the `<table>.claims.csv` file beside the table's).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from svdablate.report.tables.table import ReportTable

Renderer = Callable[["ReportTable"], str]


@dataclass(frozen=True)
class Format:
    """A renderer `ReportTable -> str` (or its `"module:function"` under `report/render/`) and
    the extension of the file it writes."""

    renderer: str | Renderer
    extension: str

    def render(self, table: ReportTable) -> str:
        if callable(self.renderer):
            return self.renderer(table)
        module, _, function = self.renderer.partition(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)(table)


#: Every format `svdablate report --format` accepts, by name (a new format: its module, one line).
FORMATS: dict[str, Format] = {
    "rich": Format("rich_table:rich_text", "txt"),
    "markdown": Format("markdown_table:to_markdown", "md"),
    "latex": Format("latex_table:to_latex", "tex"),
    "csv": Format("csv_table:to_csv", "csv"),
    "html": Format("html_page:to_html", "html"),
}


def render(table: ReportTable, fmt: str) -> str:
    """The table as text in one of FORMATS ('rich' gives the plain-text terminal rendering)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return FORMATS[fmt].render(table)


def extension(fmt: str) -> str:
    """The file extension of a format's rendering (`markdown` → `md`)."""
    return FORMATS[fmt].extension
