"""What every output format shares: headers, sections, and the claims as lines of text."""

from __future__ import annotations

from itertools import groupby

import numpy as np

from svdablate.report.claims.sequential import is_sequential
from svdablate.report.claims.verdicts import ALPHA
from svdablate.report.tables.table import Column, ReportTable

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
    """How the verdicts were reached (docs/claims.md has the whole procedure)."""
    tested = int(table.claims["p"].notna().sum())
    if is_sequential(table.claims):
        return (
            "Seeds until decided (docs/sequential.md): each claim re-tested at every look on the "
            "first n seeds per row (Welch t, TOST, Fisher exact or Poisson rates; κ on log10 κ), "
            "p = twice the smaller one-sided p; Holm at the look's spent α over the whole family "
            f"decides, verdicts are final: the chance of any wrong verdict is at most {ALPHA} "
            "however many looks ran. Seeds: per row for 80% power at the last look's level."
        )
    return (
        "Each claim is tested on the finished runs of its context (Welch t, TOST, Fisher exact "
        "or Poisson rates; κ on log10 κ): p = twice the smaller of its two one-sided p's. Holm "
        f"over the {tested} tested claim(s) at α = {ALPHA} decides which get a verdict, and the "
        "smaller one-sided p its direction (supported / contradicted): the chance of any wrong "
        f"verdict is at most {ALPHA}. Fewer than two runs or identical seeds: no verdict. "
        "Seeds: per row for 80% power at the Holm level the claim would have to pass, if the "
        "observed effect were the truth."
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
                f"{c.quantity}, {c.test}",
                f"{c.values} (n {c.n})",
                _p(c.p_holm),
                verdict,
            )
        )
    return lines
