"""The table and its claims as HTML fragments (`html_page` makes them a page).

A ranked cell carries its rank as a superscript number and an Okabe–Ito tint (`palette`), so
the marks read on white and without colour; the paper's printed numbers and Δ columns are set
apart in grey italics; a verdict is a word with a symbol, tinted.
"""

from __future__ import annotations

import html

from svdablate.report.render.palette import OKABE_ITO, RANK_HUES, VERDICT_HUES, tint
from svdablate.report.render.parts import (
    CLAIM_HEADERS,
    CLAIMS_TITLE,
    claim_cells,
    claims_note,
    sections,
)
from svdablate.report.tables import notes
from svdablate.report.tables.table import Column, ReportTable

RANK_WORDS = ("best", "second", "third", "fourth")
VERDICT_SYMBOLS = {"supported": "✓", "contradicted": "✗", "inconclusive": "?"}


def esc(text: object) -> str:
    return html.escape(str(text))


def rank_css() -> str:
    """Style rules of the rank marks `.r1`..`.r4` and the verdicts `.v-<verdict>`."""
    rules = []
    for rank, hue in enumerate(RANK_HUES, start=1):
        colour = OKABE_ITO[hue]
        rules.append(
            f".r{rank}{{background:{tint(hue)};box-shadow:inset 3px 0 0 {colour};font-weight:700}}"
        )
    for verdict, hue in VERDICT_HUES.items():
        rules.append(f".v-{verdict}{{background:{tint(hue)};border-color:{OKABE_ITO[hue]}}}")
    return "\n".join(rules)


def _classes(col: Column) -> str:
    kinds = {"paper": "paper", "diff": "diff"}
    return " ".join(c for c in ("num", kinds.get(col.kind, "")) if c)


def _header(table: ReportTable) -> list[str]:
    def th(col: Column) -> str:
        return f'<th class="{_classes(col)}">{esc(col.header)}</th>'

    if not any(c.group for c in table.columns):
        return ['<tr><th class="row">row</th>' + "".join(map(th, table.columns)) + "</tr>"]
    cells = ['<th rowspan="2" class="row">row</th>']
    previous = None
    for col in table.columns:
        if col.group == previous:
            continue
        span = sum(1 for c in table.columns if c.group == col.group)
        cells.append(f'<th colspan="{span}">{esc(col.group)}</th>')
        previous = col.group
    return [
        '<tr class="groups">' + "".join(cells) + "</tr>",
        "<tr>" + "".join(map(th, table.columns)) + "</tr>",
    ]


def _cell(table: ReportTable, i: int, col: Column, rank: int) -> str:
    text = esc(table.text(i, col))
    classes = _classes(col)
    if col.fmt == "trend":
        classes += " trend"
    if rank:
        word = RANK_WORDS[rank - 1]
        return (
            f'<td class="{classes} r{rank}" title="rank {rank} ({word}) of its column">'
            f'{text}<sup class="rank">{rank}</sup></td>'
        )
    return f'<td class="{classes}">{text}</td>'


def table_html(table: ReportTable) -> list[str]:
    """The table: grouped headers, section rows, ranked cells marked."""
    marks = table.marked()
    lines = [
        '<div class="scroll"><table class="svdablate-report">',
        "<thead>",
        *_header(table),
        "</thead>",
        "<tbody>",
    ]
    span = len(table.columns) + 1
    for section, indices in sections(table):
        if table.has_sections:
            lines.append(f'<tr class="section"><th colspan="{span}">{esc(section)}</th></tr>')
        for i in indices:
            cells = [f'<th class="row" scope="row">{esc(table.values.at[i, "row"])}</th>']
            cells += [_cell(table, i, c, int(marks.at[i, c.key])) for c in table.columns]
            lines.append("<tr>" + "".join(cells) + "</tr>")
    return [*lines, "</tbody>", "</table></div>"]


def legend_html(table: ReportTable) -> list[str]:
    """What the marks mean: the rank tints and numbers, the paper's columns (when shown)."""
    if not any(c.better for c in table.columns):
        return []
    keys = " ".join(
        f'<span class="key r{rank}">{rank}</span> {RANK_WORDS[rank - 1]}'
        for rank in range(1, table.top_k + 1)
    )
    parts = [
        f"<span>{keys} of each ranked column{' (within a section)' if table.has_sections else ''}"
        ", as the papers mark theirs in red, blue, green and cyan; the small number is the "
        "rank, so the marks read without colour.</span>"
    ]
    if any(c.kind == "paper" for c in table.columns):
        parts.append(
            '<span><span class="paper">grey italics</span>: the number the paper prints; '
            "Δ = ours − the paper's.</span>"
        )
    return ['<p class="legend">' + " ".join(parts) + "</p>"]


def notes_html(table: ReportTable) -> list[str]:
    """The table's notes as a list (the colour-naming rank note gives way to the legend)."""
    rank_note = notes.rank_note(table.top_k)
    shown = [n for n in table.notes if n != rank_note]
    if not shown:
        return []
    return ['<ul class="notes">', *(f"<li>{esc(n)}</li>" for n in shown), "</ul>"]


def verdict_html(verdict: str) -> str:
    """A verdict as a tinted word with its symbol ('inconclusive (n<2)' keeps its reason)."""
    word = verdict.split(" ", 1)[0]
    symbol = VERDICT_SYMBOLS.get(word, "–")
    return f'<span class="verdict v-{esc(word)}">{symbol} {esc(verdict)}</span>'


def claims_html(table: ReportTable) -> list[str]:
    """The claims as a second table with its note ([] when there are none)."""
    if table.claims.empty:
        return []
    lines = [
        '<div class="scroll"><table class="svdablate-claims">',
        "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in CLAIM_HEADERS) + "</tr></thead>",
        "<tbody>",
    ]
    claims = table.claims.itertuples(index=False)
    for cells, claim in zip(claim_cells(table), claims, strict=True):
        tds = [f"<td>{esc(c)}</td>" for c in cells[:-1]]
        note = f'<div class="note">{esc(claim.note)}</div>' if claim.note else ""
        tds.append(f"<td>{verdict_html(claim.verdict)}{note}</td>")
        lines.append("<tr>" + "".join(tds) + "</tr>")
    lines += ["</tbody>", "</table></div>", f'<p class="small">{esc(claims_note(table))}</p>']
    return [f"<h2>{esc(CLAIMS_TITLE)}</h2>", *lines]
