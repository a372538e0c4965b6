"""The terminal rendering (rich): ranked cells in the papers' colours, notes, then the claims."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console, Group
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from svdablate.report.render.parts import CLAIMS_TITLE, claim_cells, claims_note, sections
from svdablate.report.tables.table import RANK_COLOURS, ReportTable

VERDICT_STYLES = {"supported": "green", "contradicted": "red"}


def rich_table(table: ReportTable) -> Table:
    """The rich.Table (colours for the ranked cells, notes as caption)."""
    marks = table.marked()
    out = Table(
        title=table.title,
        caption="\n".join(table.notes),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    labels = [str(r) for r in table.values["row"]] + list(table.values["section"])
    out.add_column("row", min_width=max(map(len, labels), default=3))
    previous = None
    grouped = any(c.group for c in table.columns)
    for col in table.columns:
        style = "dim" if col.kind in ("paper", "diff") else None
        group = col.group if col.group != previous else ""
        cells = [len(table.text(i, col)) for i in table.values.index]
        width = max([*cells, len(group), *(len(word) for word in col.header.split()), 1])
        header = f"{group}\n{col.header}" if grouped else col.header
        out.add_column(header, justify="right", style=style, min_width=width)
        previous = col.group
    for s, (section, indices) in enumerate(sections(table)):
        if table.has_sections:
            if s:
                out.add_section()
            out.add_row(Text(section, style="bold"), *[""] * len(table.columns))
        for i in indices:
            cells = [Text(str(table.values.at[i, "row"]))]
            for col in table.columns:
                rank = int(marks.at[i, col.key])
                style = f"bold {RANK_COLOURS[rank - 1]}" if rank else ""
                cells.append(Text(table.text(i, col), style=style))
            out.add_row(*cells)
    return out


def rich_claims(table: ReportTable) -> Group:
    """The claims under the table, two lines each (they wrap at any terminal width): the
    claim and its coloured verdict, then what was compared and the numbers."""
    parts: list[Text] = [Text(""), Text(CLAIMS_TITLE, style="bold")]
    for cells, verdict in zip(claim_cells(table), table.claims["verdict"], strict=True):
        claim, rows, quantity, values, p_holm, shown = cells
        line = Text(f"• {claim}: ")
        line.append(shown, style=VERDICT_STYLES.get(verdict, "bold"))
        p = f", p (Holm) {p_holm}" if p_holm else ""
        parts += [line, Text(f"  {rows} on {quantity}: {values}{p}", style="dim")]
    parts.append(Text(claims_note(table), style="italic"))
    return Group(*parts)


def render_rich(table: ReportTable, console: Console | None = None) -> None:
    """Print the table (and its claims) to the terminal with rich.

    A table wider than the terminal is printed at its natural width (the terminal wraps lines)
    rather than cropped or squeezed: no number is ever cut.
    """
    console = console or Console()
    rendered = rich_table(table)
    natural = console.options.update(max_width=10_000)
    width = max(console.width, Measurement.get(console, natural, rendered).maximum)
    console.print(rendered, width=width, crop=False)
    if len(table.claims):
        console.print(rich_claims(table))


def rich_text(table: ReportTable, width: int = 160) -> str:
    """The rich rendering as plain text (what the terminal shows, without colours)."""
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    render_rich(table, console)
    return console.export_text()
