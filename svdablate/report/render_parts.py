"""What every output format shares: headers, sections, and the claims as lines of text."""

from __future__ import annotations

from itertools import groupby

import numpy as np

from .table import Column, ReportTable
from .verdicts import ALPHA

CLAIM_HEADERS = ("claim", "rows", "on", "mean (n)", "p (Holm)", "verdict")


def header(col: Column, sep: str = " ") -> str:
    return f"{col.group}{sep}{col.header}" if col.group else col.header


def sections(table: ReportTable) -> list[tuple[str, list[int]]]:
    """(section, row indices) in table order."""
    return [
        (s, [i for i, _ in items])
        for s, items in groupby(table.values["section"].items(), key=lambda x: x[1])
    ]


CLAIMS_TITLE = "Claims of the papers that these rows test"


def claims_note(table: ReportTable) -> str:
    tested = int(table.claims["p"].notna().sum())
    return (
        "One-sided Welch t-test per claim on the finished runs (scipy.stats.ttest_ind, "
        "equal_var=False; a difference of differences on Welch–Satterthwaite df); κ claims on "
        f"log10 κ; p Holm-corrected over the {tested} tested claim(s), α = {ALPHA}. Supported / "
        "contradicted: the claimed / the opposite direction is significant; seeds: per row for "
        f"80% power at α = {ALPHA} if the observed effect were the truth."
    )


def _p(value: float) -> str:
    if not np.isfinite(value):
        return ""
    return f"{value:.3f}" if value >= 1e-3 else f"{value:.1e}"


def claim_cells(table: ReportTable) -> list[tuple[str, ...]]:
    """One line of text cells (CLAIM_HEADERS) per claim."""
    lines = []
    for c in table.claims.itertuples(index=False):
        context = f" [{c.context}]" if c.context else ""
        verdict = f"{c.verdict}: {c.note}" if c.note else c.verdict
        lines.append(
            (
                f"{c.paper} {c.where}: {c.claim}{context}",
                f"{c.rows} ({c.direction})",
                c.quantity,
                f"{c.values} (n {c.n})",
                _p(c.p_holm),
                verdict,
            )
        )
    return lines
