"""Issue 25, items 4 and 5: a verdict shows the p that decided it, an estimate of zero is no
effect "opposite to the claim", the runner-up is the real one, and the seeds estimate is at the
Holm level the verdict is judged at."""

from __future__ import annotations

import math

import numpy as np
from claim_runs import claim_row, runs_frame
from scipy import stats

from svdablate.report import layout_table, render
from svdablate.report.claims.verdicts import table_claims

ALPHA = 0.05


def _line(text: str, claim: str) -> str:
    """The rich rendering's two lines of one claim, joined."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if claim in line)
    return " ".join(line.strip() for line in lines[i : i + 2])


def test_a_contradicted_verdict_shows_the_p_that_decided_it():
    runs = runs_frame(
        {"SVD": [20.0, 20.3, 19.9, 20.1], "SVD+NOG": [21.0, 21.2, 20.9, 21.1]}  # NOG worse
    )
    table = layout_table(runs, ["SVD", "SVD+NOG"], "summary")
    row = claim_row(table.claims, "NOG lowers the error vs SVD")
    assert row["verdict"] == "contradicted" and row["p_holm"] < ALPHA
    line = _line(render(table, "rich"), "NOG lowers the error vs SVD")
    assert "p (Holm) 1.000" not in line
    assert f"p (Holm) {row['p_holm']:.1e}" in line
    md = render(table, "markdown")
    assert f"| {row['p_holm']:.1e} | contradicted |" in md


def test_an_estimate_that_is_zero_to_rounding_is_no_effect_opposite_to_the_claim():
    # mean(0.1, 0.2, 0.3) - mean(0.3, 0.2, 0.1) = +5.6e-17 in float64: NOG "above" SVD
    runs = runs_frame({"SVD": [0.3, 0.2, 0.1], "SVD+NOG": [0.1, 0.2, 0.3]})
    claims = table_claims(runs, ["SVD", "SVD+NOG"], metric="best")
    row = claim_row(claims, "NOG lowers the error vs SVD")
    assert 0 < row["estimate"] < 1e-15
    assert row["verdict"] == "inconclusive"
    assert "opposite to the claim" not in row["note"]
    assert "no observed effect" in row["note"] and math.isnan(row["seeds_needed"])


def test_the_runner_up_is_the_row_lowest_on_average_even_when_another_row_has_one_run():
    rows = {
        "SVD": [20.0, 20.3, 19.9],
        "SVD+NOG": [19.3, 19.4, 19.2],  # the runner-up
        "SVD+NOG+OW+OLR": [18.0, 18.1, 17.9],
        "NS": [21.0],  # one run: no pairwise test, and alphabetically first
    }
    claims = table_claims(runs_frame(rows), list(rows), metric="best")
    (lowest,) = [
        c for _, c in claims.iterrows() if c["claim"].startswith("NOG+OW+OLR has the lowest error")
    ]
    assert "(runner-up: SVD+NOG)" in lowest["rows"]
    assert lowest["values"] == "18.00 vs 19.30"


def _seeds(effect: float, sd: float, level: float) -> int:
    """Seeds per row for 80% power of the two-sided Welch verdict at `level` (G*Power's
    noncentral t of two groups, df 2(n-1)), by counting up."""
    n = 2
    while True:
        df = 2 * (n - 1)
        ncp = abs(effect) / sd * math.sqrt(n / 2)
        if stats.nct.sf(stats.t.ppf(1 - level / 2, df), df, ncp) >= 0.8:
            return n
        n += 1


def test_the_seeds_estimate_is_at_the_holm_level_the_claim_must_pass():
    """The demo's five rows: six claims, none decided. The error claim of NOG would have to
    pass Holm's α/6 (two-sided: each side α/12), not α one-sided."""
    nog, svd = [0.9, 1.4, 1.1, 0.7, 1.2], [1.3, 1.0, 1.6, 1.2, 1.5]
    rows = {
        "SVD": svd,
        "SVD+NOG": nog,
        "SVD+OW": [1.2, 1.0, 1.5, 1.1, 1.4],
        "SVD+NOG+OW+OLR": [1.1, 1.3, 0.9, 1.2, 1.0],
        "NS": [1.0, 1.4, 1.3, 1.1, 1.2],
    }
    claims = table_claims(runs_frame(rows), list(rows), metric="best")
    tested = claims["p"].notna()
    assert tested.sum() == 6 and (claims["verdict"] == "inconclusive").all()
    row = claim_row(claims, "NOG lowers the error vs SVD")
    sd = math.sqrt((np.var(nog, ddof=1) + np.var(svd, ddof=1)) / 2)
    effect = np.mean(nog) - np.mean(svd)
    assert row["holm_level"] == ALPHA / 6
    assert row["seeds_needed"] == _seeds(effect, sd, ALPHA / 6)
    assert row["seeds_needed"] > _seeds(effect, sd, 2 * ALPHA)  # the former one-sided α
    assert f"about {int(row['seeds_needed'])} seeds per row" in row["note"]
