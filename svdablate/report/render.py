"""Render a ReportTable: rich (terminal), markdown, LaTeX (booktabs), HTML, CSV.

Ranked cells among the best `top_k` of their column are marked as the papers do: colours
red/blue/green/cyan in rich and HTML, `\\textcolor` in LaTeX, a rank superscript in markdown.
"""

from __future__ import annotations

import html
import io
import re
from itertools import groupby

import pandas as pd
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from .table import RANK_COLOURS, SUPERSCRIPTS, Column, ReportTable
from .tables import summary_frame_report

FORMATS = ("rich", "markdown", "latex", "csv", "html")
EXTENSIONS = {"rich": "txt", "markdown": "md", "latex": "tex", "csv": "csv", "html": "html"}


def _as_report(table: ReportTable | pd.DataFrame) -> ReportTable:
    return table if isinstance(table, ReportTable) else summary_frame_report(table)


def _header(col: Column, sep: str = " ") -> str:
    return f"{col.group}{sep}{col.header}" if col.group else col.header


def _sections(table: ReportTable) -> list[tuple[str, list[int]]]:
    values = table.values
    return [
        (s, [i for i, _ in items])
        for s, items in groupby(values["section"].items(), key=lambda x: x[1])
    ]


# --------------------------------------------------------------------------- rich


def rich_table(table: ReportTable | pd.DataFrame) -> Table:
    """The rich.Table (colours for the ranked cells, notes as caption)."""
    report = _as_report(table)
    marks = report.marked()
    out = Table(
        title=report.title,
        caption="\n".join(report.notes),
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    labels = [str(r) for r in report.values["row"]] + list(report.values["section"])
    out.add_column("row", min_width=max(map(len, labels), default=3))
    previous = None
    for col in report.columns:
        style = "dim" if col.kind in ("paper", "diff") else None
        group = col.group if col.group != previous else ""
        header = f"{group}\n{col.header}" if any(c.group for c in report.columns) else col.header
        cells = [len(report.text(i, col)) for i in report.values.index]
        width = max([*cells, len(group), *(len(word) for word in col.header.split()), 1])
        out.add_column(header, justify="right", style=style, min_width=width)
        previous = col.group
    for s, (section, indices) in enumerate(_sections(report)):
        if report.has_sections:
            if s:
                out.add_section()
            out.add_row(Text(section, style="bold"), *[""] * len(report.columns))
        for i in indices:
            cells = [Text(str(report.values.at[i, "row"]))]
            for col in report.columns:
                rank = int(marks.at[i, col.key])
                style = f"bold {RANK_COLOURS[rank - 1]}" if rank else ""
                cells.append(Text(report.text(i, col), style=style))
            out.add_row(*cells)
    return out


def render_rich(table: ReportTable | pd.DataFrame, console: Console | None = None) -> None:
    """Print the table to the terminal with rich (a `summary_table` frame works too).

    A table wider than the terminal is printed at its natural width (the terminal wraps lines)
    rather than cropped or squeezed: no number is ever cut.
    """
    console = console or Console()
    rendered = rich_table(table)
    needed = Measurement.get(console, console.options, rendered).maximum
    console.print(rendered, width=max(console.width, needed), crop=False)


def rich_text(table: ReportTable | pd.DataFrame, width: int = 160) -> str:
    """The rich rendering as plain text (what the terminal shows, without colours)."""
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    render_rich(table, console)
    return console.export_text()


# --------------------------------------------------------------------------- markdown


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: ReportTable | pd.DataFrame) -> str:
    """GitHub markdown; ranked cells carry a rank superscript (¹ best)."""
    report = _as_report(table)
    marks = report.marked()
    lines = [f"**{_md_escape(report.title)}**", ""]
    lines.append(
        "| " + " | ".join(["row", *(_md_escape(_header(c)) for c in report.columns)]) + " |"
    )
    lines.append("|" + "|".join([":---", *("---:" for _ in report.columns)]) + "|")
    for section, indices in _sections(report):
        if report.has_sections:
            lines.append(
                "| " + " | ".join([f"**{section}**", *("" for _ in report.columns)]) + " |"
            )
        for i in indices:
            cells = [_md_escape(str(report.values.at[i, "row"]))]
            for col in report.columns:
                rank = int(marks.at[i, col.key])
                text = report.text(i, col)
                cells.append(_md_escape(text + (SUPERSCRIPTS[rank - 1] if rank else "")))
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"- {_md_escape(note)}" for note in report.notes)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- LaTeX

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "κ": r"$\kappa$",
    "Δ": r"$\Delta$",
    "≥": r"$\geq$",
    "<": r"$<$",
    ">": r"$>$",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    """Escape LaTeX specials; ±, κ, Δ become math."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], text)


def _latex_group_header(report: ReportTable) -> list[str]:
    if not any(c.group for c in report.columns):
        return []
    cells, rules, start = [""], [], 2
    for group, cols in groupby(report.columns, key=lambda c: c.group):
        width = len(list(cols))
        cells.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(group)}}}" if group else "")
        cells.extend([""] * (width - 1) if not group else [])
        if group:
            rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    return [" & ".join(cells) + r" \\", " ".join(rules)]


def to_latex(table: ReportTable | pd.DataFrame) -> str:
    """A booktabs table (needs \\usepackage{booktabs,xcolor}); ranks in the papers' colours."""
    report = _as_report(table)
    marks = report.marked()
    ncols = len(report.columns) + 1
    lines = [
        r"% requires \usepackage{booktabs} and \usepackage{xcolor}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(report.title)}}}",
        r"\begin{tabular}{l" + "r" * len(report.columns) + "}",
        r"\toprule",
        *_latex_group_header(report),
        " & ".join(["row", *(latex_escape(c.header) for c in report.columns)]) + r" \\",
        r"\midrule",
    ]
    for s, (section, indices) in enumerate(_sections(report)):
        if report.has_sections:
            if s:
                lines.append(r"\midrule")
            lines.append(rf"\multicolumn{{{ncols}}}{{l}}{{\textit{{{latex_escape(section)}}}}} \\")
        for i in indices:
            cells = [latex_escape(str(report.values.at[i, "row"]))]
            for col in report.columns:
                rank = int(marks.at[i, col.key])
                text = latex_escape(report.text(i, col))
                cells.append(rf"\textcolor{{{RANK_COLOURS[rank - 1]}}}{{{text}}}" if rank else text)
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\footnotesize {latex_escape(note)}" for note in report.notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- HTML


def _html_header(report: ReportTable) -> list[str]:
    lines = []
    if any(c.group for c in report.columns):
        cells = ['<th rowspan="2">row</th>']
        for group, cols in groupby(report.columns, key=lambda c: c.group):
            cells.append(f'<th colspan="{len(list(cols))}">{html.escape(group)}</th>')
        lines.append("<tr>" + "".join(cells) + "</tr>")
        lines.append(
            "<tr>" + "".join(f"<th>{html.escape(c.header)}</th>" for c in report.columns) + "</tr>"
        )
    else:
        cells = ["<th>row</th>", *(f"<th>{html.escape(c.header)}</th>" for c in report.columns)]
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return lines


def to_html(table: ReportTable | pd.DataFrame) -> str:
    """A standalone HTML table; ranked cells coloured red/blue/green/cyan and bold."""
    report = _as_report(table)
    marks = report.marked()
    lines = [
        '<table class="svdablate-report">',
        f"<caption>{html.escape(report.title)}</caption>",
        "<thead>",
        *_html_header(report),
        "</thead>",
        "<tbody>",
    ]
    span = len(report.columns) + 1
    for section, indices in _sections(report):
        if report.has_sections:
            lines.append(f'<tr><th colspan="{span}" align="left">{html.escape(section)}</th></tr>')
        for i in indices:
            cells = [f"<td>{html.escape(str(report.values.at[i, 'row']))}</td>"]
            for col in report.columns:
                rank = int(marks.at[i, col.key])
                text = html.escape(report.text(i, col))
                if rank:
                    colour = RANK_COLOURS[rank - 1]
                    text = f'<span style="color:{colour};font-weight:bold">{text}</span>'
                cells.append(f'<td align="right">{text}</td>')
            lines.append("<tr>" + "".join(cells) + "</tr>")
    lines += ["</tbody>", "</table>"]
    if report.notes:
        lines += ["<ul>", *(f"<li>{html.escape(n)}</li>" for n in report.notes), "</ul>"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CSV


def csv_frame(table: ReportTable | pd.DataFrame) -> pd.DataFrame:
    """The numbers behind the table: section (if any), row, every column's values, ranks."""
    report = _as_report(table)
    keys = list(dict.fromkeys(k for c in report.columns for k in c.value_keys()))
    frame = report.values[(["section"] if report.has_sections else []) + ["row", *keys]].copy()
    ranks = report.ranks()
    for col in report.columns:
        if col.better is not None:
            frame[f"{col.key}.rank"] = ranks[col.key]
    return frame


def to_csv(table: ReportTable | pd.DataFrame) -> str:
    """CSV of `csv_frame` (floats to 6 significant digits; empty cells empty)."""
    return csv_frame(table).to_csv(index=False, float_format="%.6g", lineterminator="\n")


def render(table: ReportTable | pd.DataFrame, fmt: str) -> str:
    """The table as text in one of FORMATS ('rich' gives the plain-text terminal rendering)."""
    renderers = {
        "rich": rich_text,
        "markdown": to_markdown,
        "latex": to_latex,
        "csv": to_csv,
        "html": to_html,
    }
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return renderers[fmt](table)
