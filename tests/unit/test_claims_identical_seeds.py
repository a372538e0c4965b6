"""Issue 25, item 2: seeds that all give the same value are one observation: no verdict, and the
claim says why (no p from a variance that is zero or a floating-point residue)."""

from __future__ import annotations

import numpy as np
from claim_runs import claim_row, runs_frame

from svdablate.report import layout_table, render
from svdablate.report.claims.verdicts import table_claims

NEXT = np.nextafter(20.0, 21.0)  # 20 and one ulp above: a variance of rounding only


def test_a_floating_point_residue_of_variance_gives_no_verdict():
    runs = runs_frame(
        {"SVD": [20.0, 20.0, 20.0, 20.0, NEXT], "SVD+NOG": [19.0, 19.0, 19.0, 19.0, 19.0]}
    )
    claims = table_claims(runs, ["SVD", "SVD+NOG"], metric="best")
    for text in ("NOG lowers the error vs SVD", "NOG lowers κ vs SVD"):
        row = claim_row(claims, text)
        assert row["verdict"] == "inconclusive (identical seeds)", row["verdict"]
        assert np.isnan(row["p"]) and np.isnan(row["p_holm"])
        assert "identical seeds are one observation" in row["note"]


def test_one_row_with_identical_seeds_gives_no_verdict_though_the_other_varies():
    """Digits saturates: every seed of SVD+NOG misclassifies the same one image (0.28 %)."""
    one_image = 100 / 360
    runs = runs_frame(
        {"SVD": [1.11, 1.39, 0.83, 1.11, 1.67], "SVD+NOG": [one_image] * 5},
    )
    table = layout_table(runs, ["SVD", "SVD+NOG"], "summary")
    assert table.values.set_index("row").loc["SVD+NOG", "val_err_std"] == 0.0
    row = claim_row(table.claims, "NOG lowers the error vs SVD")
    assert row["verdict"] == "inconclusive (identical seeds)"
    assert "every run of SVD+NOG gives 0.2778" in row["note"]
    assert "identical seeds" in render(table, "rich")


def test_a_lowest_claim_whose_row_has_identical_seeds_gives_no_verdict():
    rows = {
        "SVD": [20.0, 20.3, 19.9],
        "SVD+NOG+OW+OLR": [18.0, 18.0, 18.0],
        "NS": [19.4, 19.5, 19.6],
    }
    claims = table_claims(runs_frame(rows), list(rows), metric="best")
    (lowest,) = [
        c for _, c in claims.iterrows() if c["claim"].startswith("NOG+OW+OLR has the lowest error")
    ]
    assert lowest["verdict"] == "inconclusive (identical seeds)"
    assert np.isnan(lowest["p"])
