"""The papers' claims under a table: the tests, Holm over the family, verdicts, every format."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from claim_runs import ALEXNET, claim_row, runs_frame, runs_of
from scipy import stats

from svdablate.report import claims_csv, holm, layout_table, render
from svdablate.report.claims.power import seeds_for_t
from svdablate.report.claims.procedures import contrast_t, directional_p, lowest_p, tost_p
from svdablate.report.claims.registry import CLAIMS
from svdablate.report.claims.verdicts import decide, holm_levels, table_claims

# --------------------------------------------------------------------------- the statistics


def test_holm_step_down():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02])
    # NaN: not in the family (m = 3 here), and the rows of a 2-D array are separate families
    assert holm([0.01, np.nan, 0.03, 0.02]) == pytest.approx(
        [0.03, np.nan, 0.04, 0.04], nan_ok=True
    )
    both = holm(np.array([[0.01, 0.04], [0.5, 0.02]]))
    np.testing.assert_allclose(both, [[0.02, 0.04], [0.5, 0.04]])


def test_two_groups_are_scipys_welch_test_and_one_group_the_one_sample_test():
    a, b = np.array([1.0, 1.4, 0.9, 1.2]), np.array([1.5, 1.9, 1.6])
    groups = ([1, -1], [a.mean(), b.mean()], [a.var(ddof=1), b.var(ddof=1)], [4, 3])
    estimate, se, df = contrast_t(*map(np.array, groups))
    for direction, alternative in (("lower", "less"), ("higher", "greater")):
        want = stats.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue
        claimed, opposite = directional_p(estimate, se, df, direction)
        assert claimed == pytest.approx(want, rel=1e-12) and claimed + opposite == pytest.approx(1)
    two_sided = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert decide(*directional_p(estimate, se, df, "lower"))[0] == pytest.approx(two_sided)
    d = np.array([-0.3, -0.1, -0.4, -0.2])
    one = contrast_t(np.array([1]), np.array([d.mean()]), np.array([d.var(ddof=1)]), np.array([4]))
    want = stats.ttest_1samp(d, 0.0, alternative="less").pvalue
    assert directional_p(*one, "lower")[0] == pytest.approx(want, rel=1e-12)


def test_tost_and_lowest_p_values():
    estimate, se, df = np.array(0.05), np.array(0.04), np.array(12.0)
    claimed, opposite = tost_p(estimate, se, df, 0.2)
    low = stats.t.sf((0.05 + 0.2) / 0.04, 12)
    high = stats.t.cdf((0.05 - 0.2) / 0.04, 12)
    assert claimed == pytest.approx(max(low, high)) and opposite == pytest.approx(1.0)
    assert lowest_p(np.array([0.01, 0.03]), np.array([0.9, 0.2])) == pytest.approx((0.03, 0.4))


def test_seeds_match_the_power_of_a_one_sided_t_test():
    # G*Power, t-test two independent means, one-tailed, α 0.05, power 0.8: d 1 -> 14, 0.5 -> 51.
    assert seeds_for_t(1.0, 1.0, [1, -1], 0.05) == 14
    assert seeds_for_t(-0.5, 1.0, [1, -1], 0.05) == 51
    assert seeds_for_t(0.0, 1.0, [1, -1], 0.05) is None
    assert seeds_for_t(1e-3, 1.0, [1, -1], 0.05) is None  # more than MAX_SEEDS


def test_decide_and_the_holm_levels():
    p_claimed = np.array([0.001, 0.9995, 0.3, np.nan])
    p_opposite = 1 - p_claimed
    p, adjusted, verdict = decide(p_claimed, p_opposite)
    assert p == pytest.approx([0.002, 0.001, 0.6, np.nan], nan_ok=True)
    assert list(verdict) == [1, -1, 0, 0]  # supported, contradicted, undecided, untested
    assert adjusted[:3] == pytest.approx([0.004, 0.003, 0.6])
    # the contradicted claim passed α/3 first, the supported one α/2; the third would need α/1
    assert holm_levels(p) == pytest.approx([0.025, 0.05 / 3, 0.05, np.nan], nan_ok=True)


# --------------------------------------------------------------------------- verdicts


def test_verdicts_supported_contradicted_inconclusive_and_n_below_two():
    runs = runs_frame(
        {
            "SVD": [20.0, 20.3, 19.9, 20.1],
            "SVD+NOG": [19.0, 19.2, 18.9, 19.1],  # clearly lower: supported
            "SVD+OLR": [21.0, 21.2, 20.9, 21.1],  # clearly higher: contradicted
            "SVD+SN": [20.0, 19.9],  # overlaps SVD: inconclusive
            "SVD+OL": [19.5],  # one seed
        }
    )
    claims = table_claims(runs, list(dict.fromkeys(runs["row"])), metric="best")
    nog = claim_row(claims, "NOG lowers the error vs SVD")
    nog_x, svd_x = [19.0, 19.2, 18.9, 19.1], [20.0, 20.3, 19.9, 20.1]
    want = stats.ttest_ind(nog_x, svd_x, equal_var=False).pvalue  # two-sided
    assert nog["p"] == pytest.approx(want, rel=1e-12) and nog["verdict"] == "supported"
    assert nog["values"] == "19.05 vs 20.07" and nog["n"] == "4 vs 4"
    assert nog["where"] == "§5.1, Table 2" and nog["paper"] == "ECCV'22"
    assert nog["test"] == "Welch t" and nog["direction"] == "<"
    assert claim_row(claims, "OLR lowers the error vs SVD")["verdict"] == "contradicted"
    assert claim_row(claims, "OLR lowers κ vs SVD")["verdict"] == "contradicted"
    kappa = claim_row(claims, "NOG lowers κ vs SVD")  # tested on log10 κ = the error here
    assert kappa["quantity"] == "log10 κ" and kappa["p"] == pytest.approx(want, rel=1e-9)
    sn = claim_row(claims, "SN lowers κ vs SVD")
    assert sn["verdict"] == "inconclusive" and "seeds per row" in sn["note"]
    ol = claim_row(claims, "OL lowers κ vs SVD")
    assert ol["verdict"] == "inconclusive (n<2)" and "SVD+OL: 1 finished run" in ol["note"]
    tested = claims["p"].notna()
    assert claims.loc[tested, "p_holm"].to_numpy() == pytest.approx(holm(claims.loc[tested, "p"]))
    # Claims whose rows the study did not run are not listed; no GCP or ICCV'21 claim here.
    assert not claims["claim"].str.contains("NOG\\+OW|OW alone|OLR alone").any()
    assert set(claims["application"]) == {"dbn"} and set(claims["paper"]) == {"ECCV'22"}


def test_only_finished_runs_and_the_tables_error_metric_enter_a_claim():
    runs = runs_frame({"SVD": [20.0, 20.3, 19.9], "SVD+NOG": [19.0, 19.2, 18.9]})
    runs.loc[runs.index[-1], "status"] = "diverged"
    best = table_claims(runs, ["SVD", "SVD+NOG"], metric="best")
    assert claim_row(best, "NOG lowers the error vs SVD")["values"] == "19.10 vs 20.07"
    final = table_claims(runs, ["SVD", "SVD+NOG"], metric="final")
    row = claim_row(final, "NOG lowers the error vs SVD")
    assert row["values"] == "20.10 vs 21.07" and row["quantity"] == "final-epoch error (%)"


def test_a_claim_is_tested_per_dataset_when_the_study_varies_it():
    runs = runs_of(
        runs_frame({"SVD": [20.0, 20.3], "SVD+NOG": [19.0, 19.2]}, dataset="cifar100"),
        runs_frame({"SVD": [4.3, 4.4], "SVD+NOG": [4.5, 4.6]}, dataset="cifar10"),
    )
    claims = table_claims(runs, ["SVD", "SVD+NOG"], metric="best")
    both = claims[claims["claim"] == "NOG lowers the error vs SVD"]
    assert list(both["context"]) == ["cifar10", "cifar100"]


def test_lowest_error_is_below_every_other_row_of_its_table():
    rows = {
        "SVD": [20.0, 20.3, 19.9],
        "SVD+NOG+OW": [19.2, 19.4, 19.3],
        "SVD+NOG+OW+OLR": [18.0, 18.1, 17.9],
        "NS": [19.4, 19.5, 19.6],
    }
    claims = table_claims(runs_frame(rows), list(rows), metric="best")
    lowest = claim_row(claims, "NOG+OW+OLR has the lowest error of Table 4")
    pairwise = [
        stats.ttest_ind(rows["SVD+NOG+OW+OLR"], rows[o], equal_var=False, alternative="less").pvalue
        for o in ("SVD", "SVD+NOG+OW", "NS")
    ]
    assert lowest["p_claimed"] == pytest.approx(max(pairwise), rel=1e-12)  # intersection-union
    assert "(runner-up: SVD+NOG+OW)" in lowest["rows"] and lowest["verdict"] == "supported"
    assert lowest["values"] == "18.00 vs 19.30" and lowest["test"] == "intersection-union Welch t"
    rows["NS"] = [17.0, 17.1, 16.9]  # now a row is clearly lower
    claims = table_claims(runs_frame(rows), list(rows), metric="best")
    assert claim_row(claims, "NOG+OW+OLR has the lowest error of Table 4")["verdict"] == (
        "contradicted"
    )


def test_iccv21_hybrid_gap_uses_ns_standalone_runs_and_float32_interaction():
    pade_s, pade_h = [48.5, 48.4, 48.6], [47.7, 47.8, 47.6]
    runs = runs_of(
        runs_frame({("SVD-Pade", ("protocol", "standalone")): pade_s}, **ALEXNET),
        runs_frame({("SVD-Pade", ("protocol", "hybrid")): pade_h}, **ALEXNET),
        runs_frame({"iSQRT-COV": [47.9, 48.0, 48.1]}, **ALEXNET),  # standalone only
    )
    claims = table_claims(runs, ["iSQRT-COV", "SVD-Pade"], metric="best")
    gap = claim_row(claims, "hybrid training narrows SVD-Pade's gap to iSQRT-COV")
    # iSQRT-COV's hybrid runs are its standalone runs: the gaps' difference is hybrid - standalone
    # (Table 2 prints final-epoch error: final = best + 1 here, the difference is the same).
    want = stats.ttest_ind(pade_h, pade_s, equal_var=False).pvalue
    assert gap["p"] == pytest.approx(want, rel=1e-9) and gap["where"] == "§3.4, Fig. 5; Table 2"
    assert gap["rows"] == "SVD-Pade [hybrid, float64] vs SVD-Pade [standalone, float64]"
    trails = claim_row(claims, "SVD-Pade trails iSQRT-COV")
    assert trails["direction"] == ">" and trails["verdict"] == "supported"

    mpn = {"MPN-COV": {"float32": [60.0, 62.0, 61.0], "float64": [48.7, 48.8, 48.9]}}
    ns = {"iSQRT-COV": {"float32": [48.1, 48.0, 48.2], "float64": [47.9, 48.0, 48.1]}}
    runs = runs_of(
        *(
            runs_frame({(row, ("precision", p)): v}, **ALEXNET)
            for table in (mpn, ns)
            for row, by in table.items()
            for p, v in by.items()
        )
    )
    claims = table_claims(runs, ["MPN-COV", "iSQRT-COV"], metric="best")
    drop = claim_row(claims, "float32 costs MPN-COV far more error than iSQRT-COV")
    assert (drop["direction"], drop["verdict"], drop["n"]) == (">", "supported", "3, 3, 3, 3")
    assert drop["estimate"] == pytest.approx((61.0 - 48.8) - (48.1 - 48.0))
    beats = claim_row(claims, "iSQRT-COV beats MPN-COV")  # Table 2: float64, final epoch
    assert beats["values"] == "49.00 vs 49.80" and beats["quantity"] == "final-epoch error (%)"


def test_every_claim_cites_the_paper_and_every_format_shows_the_claims():
    assert all(c.where and c.where[0] in "§TFA" for c in CLAIMS)
    rows = {"SVD": [20.0, 20.3, 19.9], "SVD+NOG": [19.0, 19.2, 18.9], "NS": [19.4, 19.5, 19.6]}
    table = layout_table(runs_frame(rows), list(rows), "eccv22-t4")
    assert list(table.claims["claim"]) == [
        "NS's κ is below SVD's",
        "NOG lowers κ vs SVD",
        "NOG lowers the error vs SVD",
    ]
    for fmt in ("rich", "markdown", "html"):
        assert "§5.1, Table 2: NOG lowers the error vs SVD" in render(table, fmt)
    assert r"\S{}5.1, Table 2: NOG lowers the error vs SVD" in render(table, "latex")
    csv = pd.read_csv(io.StringIO(claims_csv(table)))
    assert list(csv["verdict"]) == list(table.claims["verdict"])
    assert "claim" not in render(table, "csv").splitlines()[0]  # the table's CSV stays one table


def test_the_caption_names_the_ow_operator_the_study_ran():
    runs = runs_frame({"SVD": [20.0, 20.3], "SVD+OW": [20.1, 20.2]})
    runs.attrs["ow_map"] = "soc"
    for layout in ("eccv22-t4", "summary"):
        assert layout_table(runs, ["SVD", "SVD+OW"], layout).title.endswith("(OW: soc)")
    without_ow = runs[runs["row"] == "SVD"]
    without_ow.attrs["ow_map"] = "soc"
    assert "OW:" not in layout_table(without_ow, ["SVD"], "eccv22-t4").title
