"""GitHub markdown: ranked cells carry a rank superscript (¹ best); claims as a second table."""

from __future__ import annotations

from svdablate.report.render.parts import (
    CLAIM_HEADERS,
    CLAIMS_TITLE,
    claim_cells,
    claims_note,
    header,
    sections,
)
from svdablate.report.tables.table import ReportTable

SUPERSCRIPTS = ("¹", "²", "³", "⁴")


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _line(cells: list[str] | tuple[str, ...]) -> str:
    return "| " + " | ".join(_escape(c) for c in cells) + " |"


def claims_markdown(table: ReportTable) -> list[str]:
    """The claims as a markdown table with its note ([] when there are none)."""
    if table.claims.empty:
        return []
    lines = ["", f"**{CLAIMS_TITLE}**", "", _line(CLAIM_HEADERS)]
    lines.append("|" + "|".join(":---" for _ in CLAIM_HEADERS) + "|")
    lines += [_line(cells) for cells in claim_cells(table)]
    return [*lines, "", f"- {_escape(claims_note(table))}"]


def to_markdown(table: ReportTable) -> str:
    """The table, its notes as a list, then the claims."""
    marks = table.marked()
    lines = [f"**{_escape(table.title)}**", ""]
    lines.append(_line(["row", *(header(c) for c in table.columns)]))
    lines.append("|" + "|".join([":---", *("---:" for _ in table.columns)]) + "|")
    for section, indices in sections(table):
        if table.has_sections:
            lines.append(_line([f"**{section}**", *("" for _ in table.columns)]))
        for i in indices:
            cells = [str(table.values.at[i, "row"])]
            for col in table.columns:
                rank = int(marks.at[i, col.key])
                cells.append(table.text(i, col) + (SUPERSCRIPTS[rank - 1] if rank else ""))
            lines.append(_line(cells))
    lines.append("")
    lines.extend(f"- {_escape(note)}" for note in table.notes)
    lines += claims_markdown(table)
    return "\n".join(lines) + "\n"
