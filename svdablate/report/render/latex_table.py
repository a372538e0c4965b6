"""LaTeX (booktabs): ranks in the papers' colours; the κ trend and the claims as plain text."""

from __future__ import annotations

import re
from itertools import groupby

from svdablate.report.render.parts import (
    CLAIM_HEADERS,
    CLAIMS_TITLE,
    claim_cells,
    claims_note,
    sections,
)
from svdablate.report.tables.table import RANK_COLOURS, ReportTable

_SPECIAL = {
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
    "→": r"$\rightarrow$",
    "−": r"$-$",
    "…": r"\ldots{}",
    "§": r"\S{}",
    "–": "--",
    "λ": r"$\lambda$",
    "ε": r"$\varepsilon$",
    "α": r"$\alpha$",
    "Σ": r"$\Sigma$",
}
_SPECIAL_RE = re.compile("|".join(re.escape(k) for k in _SPECIAL))


def latex_escape(text: str) -> str:
    """Escape LaTeX specials; ±, κ, Δ, →, … become math or text commands."""
    return _SPECIAL_RE.sub(lambda m: _SPECIAL[m.group(0)], text)


def _group_header(table: ReportTable) -> list[str]:
    if not any(c.group for c in table.columns):
        return []
    cells, rules, start = [""], [], 2
    for group, cols in groupby(table.columns, key=lambda c: c.group):
        width = len(list(cols))
        cells.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(group)}}}" if group else "")
        cells.extend([""] * (width - 1) if not group else [])
        if group:
            rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    return [" & ".join(cells) + r" \\", " ".join(rules)]


def claims_latex(table: ReportTable) -> list[str]:
    """The claims as a second booktabs tabular with its note ([] when there are none)."""
    if table.claims.empty:
        return []
    lines = [
        r"\par\medskip",
        rf"\textbf{{{latex_escape(CLAIMS_TITLE)}}}\par",
        r"\begin{tabular}{"
        + "p{0.22\\linewidth}"
        + "l" * (len(CLAIM_HEADERS) - 2)
        + "p{0.2\\linewidth}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in CLAIM_HEADERS) + r" \\",
        r"\midrule",
        *(" & ".join(latex_escape(c) for c in cells) + r" \\" for cells in claim_cells(table)),
        r"\bottomrule",
        r"\end{tabular}",
        rf"\par\footnotesize {latex_escape(claims_note(table))}",
    ]
    return lines


def to_latex(table: ReportTable) -> str:
    """A booktabs table (needs \\usepackage{booktabs,xcolor}), its notes, then the claims."""
    marks = table.marked()
    ncols = len(table.columns) + 1
    lines = [
        r"% requires \usepackage{booktabs} and \usepackage{xcolor}",
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(table.title)}}}",
        r"\begin{tabular}{l" + "r" * len(table.columns) + "}",
        r"\toprule",
        *_group_header(table),
        " & ".join(["row", *(latex_escape(c.header) for c in table.columns)]) + r" \\",
        r"\midrule",
    ]
    for s, (section, indices) in enumerate(sections(table)):
        if table.has_sections:
            if s:
                lines.append(r"\midrule")
            lines.append(rf"\multicolumn{{{ncols}}}{{l}}{{\textit{{{latex_escape(section)}}}}} \\")
        for i in indices:
            cells = [latex_escape(str(table.values.at[i, "row"]))]
            for col in table.columns:
                rank = int(marks.at[i, col.key])
                text = latex_escape(table.text(i, col, plain=True))
                cells.append(rf"\textcolor{{{RANK_COLOURS[rank - 1]}}}{{{text}}}" if rank else text)
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\footnotesize {latex_escape(note)}" for note in table.notes]
    lines += claims_latex(table)
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
