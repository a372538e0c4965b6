"""A standalone HTML table: ranked cells coloured and bold; notes; the claims as a second table."""

from __future__ import annotations

import html

from .render_parts import CLAIM_HEADERS, CLAIMS_TITLE, claim_cells, claims_note, sections
from .table import RANK_COLOURS, ReportTable

VERDICT_COLOURS = {"supported": "green", "contradicted": "red"}


def _header(table: ReportTable) -> list[str]:
    if not any(c.group for c in table.columns):
        cells = ["<th>row</th>", *(f"<th>{html.escape(c.header)}</th>" for c in table.columns)]
        return ["<tr>" + "".join(cells) + "</tr>"]
    cells = ['<th rowspan="2">row</th>']
    previous = None
    for col in table.columns:
        if col.group == previous:
            continue
        span = sum(1 for c in table.columns if c.group == col.group)
        cells.append(f'<th colspan="{span}">{html.escape(col.group)}</th>')
        previous = col.group
    return [
        "<tr>" + "".join(cells) + "</tr>",
        "<tr>" + "".join(f"<th>{html.escape(c.header)}</th>" for c in table.columns) + "</tr>",
    ]


def claims_html(table: ReportTable) -> list[str]:
    """The claims as a second HTML table with its note ([] when there are none)."""
    if table.claims.empty:
        return []
    lines = [
        '<table class="svdablate-claims">',
        f"<caption>{html.escape(CLAIMS_TITLE)}</caption>",
        "<thead><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in CLAIM_HEADERS)
        + "</tr></thead>",
        "<tbody>",
    ]
    for cells, verdict in zip(claim_cells(table), table.claims["verdict"], strict=True):
        tds = [f"<td>{html.escape(c)}</td>" for c in cells[:-1]]
        colour = VERDICT_COLOURS.get(verdict)
        last = html.escape(cells[-1])
        tds.append(f'<td style="color:{colour}">{last}</td>' if colour else f"<td>{last}</td>")
        lines.append("<tr>" + "".join(tds) + "</tr>")
    return [*lines, "</tbody>", "</table>", f"<p>{html.escape(claims_note(table))}</p>"]


def to_html(table: ReportTable) -> str:
    """The table, its notes as a list, then the claims."""
    marks = table.marked()
    lines = [
        '<table class="svdablate-report">',
        f"<caption>{html.escape(table.title)}</caption>",
        "<thead>",
        *_header(table),
        "</thead>",
        "<tbody>",
    ]
    span = len(table.columns) + 1
    for section, indices in sections(table):
        if table.has_sections:
            lines.append(f'<tr><th colspan="{span}" align="left">{html.escape(section)}</th></tr>')
        for i in indices:
            cells = [f"<td>{html.escape(str(table.values.at[i, 'row']))}</td>"]
            for col in table.columns:
                rank = int(marks.at[i, col.key])
                text = html.escape(table.text(i, col))
                if rank:
                    colour = RANK_COLOURS[rank - 1]
                    text = f'<span style="color:{colour};font-weight:bold">{text}</span>'
                cells.append(f'<td align="right">{text}</td>')
            lines.append("<tr>" + "".join(cells) + "</tr>")
    lines += ["</tbody>", "</table>"]
    if table.notes:
        lines += ["<ul>", *(f"<li>{html.escape(n)}</li>" for n in table.notes), "</ul>"]
    lines += claims_html(table)
    return "\n".join(lines) + "\n"
