"""The papers' claims under a table: one-sided Welch tests, Holm, verdicts, seeds needed."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from svdablate.report import claims_csv, holm, layout_table, render
from svdablate.report.claims import CLAIMS
from svdablate.report.verdicts import seeds_needed, table_claims, welch_contrast

METHOD = {"SVD": "svd", "NS": "ns", "MPN-COV": "svd", "iSQRT-COV": "ns", "SVD-Pade": "svd-pade"}


def _runs(samples, *, application="dbn", **context):
    """A de-duplicated runs frame: samples = {(row, **axes): [errors]} or {row: [errors]};
    κ of each run is 10 ** (its error) so κ claims see the same ordering on log10 κ."""
    records = []
    for key, values in samples.items():
        row, axes = (key, {}) if isinstance(key, str) else (key[0], dict(key[1:]))
        base_row = row.split("+")[0]
        for seed, value in enumerate(values):
            records.append(
                {
                    "run_id": f"{row}-{sorted(axes.items())}-{seed}",
                    "row": row,
                    "seed": seed,
                    "config_hash": f"{row}{sorted(axes.items())}",
                    "status": "finished",
                    "method": METHOD.get(base_row, "svd"),
                    "application": application,
                    "dataset": "cifar100",
                    "model": "resnet50",
                    "protocol": "standalone",
                    "precision": "float64",
                    "smoke": False,
                    "start_time": seed,
                    "best_val_err": value,
                    "final_val_err": value + 1.0,
                    "final_kappa": 10.0**value,
                    "failures_total": 0.0,
                    **context,
                    **axes,
                }
            )
    return pd.DataFrame.from_records(records)


def _claim(frame, text, context=""):
    mine = frame[(frame["claim"] == text) & (frame["context"] == context)]
    assert len(mine) == 1, (text, list(frame["claim"]))
    return mine.iloc[0]


# --------------------------------------------------------------------------- the statistics


def test_holm_step_down():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02])


def test_welch_contrast_is_scipys_one_sided_welch_test():
    a, b = np.array([1.0, 1.4, 0.9, 1.2]), np.array([1.5, 1.9, 1.6])
    for direction, alternative in (("lower", "less"), ("higher", "greater")):
        want = stats.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue
        assert welch_contrast([(1, a), (-1, b)], direction) == pytest.approx(want, rel=1e-12)
        # A difference of differences whose second difference is exactly zero is the same test.
        c = np.full(3, 7.0)
        four = welch_contrast([(1, a), (-1, b), (-1, c), (1, c)], direction)
        assert four == pytest.approx(want, rel=1e-9)


def test_seeds_needed_matches_the_power_of_a_one_sided_t_test():
    # G*Power, t-test two independent means, one-tailed, α 0.05, power 0.8: d 1 -> 14, 0.5 -> 51.
    assert seeds_needed(1.0, 1.0, [1, -1]) == 14
    assert seeds_needed(-0.5, 1.0, [1, -1]) == 51
    assert seeds_needed(0.0, 1.0, [1, -1]) is None
    assert seeds_needed(1e-3, 1.0, [1, -1]) is None  # more than MAX_SEEDS


# --------------------------------------------------------------------------- verdicts


def test_verdicts_supported_contradicted_inconclusive_and_n_below_two():
    runs = _runs(
        {
            "SVD": [20.0, 20.3, 19.9, 20.1],
            "SVD+NOG": [19.0, 19.2, 18.9, 19.1],  # clearly lower: supported
            "SVD+OLR": [21.0, 21.2, 20.9, 21.1],  # clearly higher: contradicted
            "SVD+SN": [20.0, 19.9],  # κ and error overlap SVD: inconclusive
            "SVD+OL": [19.5],  # one seed
        }
    )
    claims = table_claims(runs, list(dict.fromkeys(runs["row"])), metric="best")
    nog = _claim(claims, "NOG lowers the error vs SVD")
    want = stats.ttest_ind([19.0, 19.2, 18.9, 19.1], [20.0, 20.3, 19.9, 20.1], equal_var=False,
                           alternative="less").pvalue  # fmt: skip
    assert nog["p"] == pytest.approx(want, rel=1e-12) and nog["verdict"] == "supported"
    assert nog["values"] == "19.05 vs 20.07" and nog["n"] == "4 vs 4"
    assert nog["where"] == "§5.1, Table 2" and nog["paper"] == "ECCV'22"
    assert _claim(claims, "OLR lowers the error vs SVD")["verdict"] == "contradicted"
    assert _claim(claims, "OLR lowers κ vs SVD")["verdict"] == "contradicted"
    kappa = _claim(claims, "NOG lowers κ vs SVD")  # tested on log10 κ = the error here
    assert kappa["quantity"] == "log10 κ" and kappa["p"] == pytest.approx(want, rel=1e-9)
    sn = _claim(claims, "SN lowers κ vs SVD")
    assert sn["verdict"] == "inconclusive" and "seeds per row" in sn["note"]
    assert sn["seeds_needed"] == seeds_needed(
        np.mean([20.0, 19.9]) - np.mean([20.0, 20.3, 19.9, 20.1]),
        np.sqrt((np.var([20.0, 19.9], ddof=1) + 3 * np.var([20.0, 20.3, 19.9, 20.1], ddof=1)) / 4),
        [1, -1],
    )
    assert _claim(claims, "OL lowers κ vs SVD")["verdict"] == "inconclusive (n<2)"
    tested = claims["p"].notna()
    assert claims.loc[tested, "p_holm"].to_numpy() == pytest.approx(holm(claims.loc[tested, "p"]))
    # Claims whose rows the study did not run are not listed; no GCP or ICCV'21 claim here.
    assert not claims["claim"].str.contains("NOG\\+OW|OW alone|OLR alone").any()
    assert set(claims["application"]) == {"dbn"} and set(claims["paper"]) == {"ECCV'22"}


def test_only_finished_runs_and_the_tables_error_metric_enter_a_claim():
    runs = _runs({"SVD": [20.0, 20.3, 19.9], "SVD+NOG": [19.0, 19.2, 18.9]})
    runs.loc[runs.index[-1], "status"] = "diverged"
    best = table_claims(runs, ["SVD", "SVD+NOG"], metric="best")
    assert _claim(best, "NOG lowers the error vs SVD")["values"] == "19.10 vs 20.07"
    final = table_claims(runs, ["SVD", "SVD+NOG"], metric="final")
    row = _claim(final, "NOG lowers the error vs SVD")
    assert row["values"] == "20.10 vs 21.07" and row["quantity"] == "final-epoch error (%)"


def test_a_claim_is_tested_per_dataset_when_the_study_varies_it():
    runs = pd.concat(
        [
            _runs({"SVD": [20.0, 20.3], "SVD+NOG": [19.0, 19.2]}, dataset="cifar100"),
            _runs({"SVD": [4.3, 4.4], "SVD+NOG": [4.5, 4.6]}, dataset="cifar10"),
        ],
        ignore_index=True,
    )
    claims = table_claims(runs, ["SVD", "SVD+NOG"], metric="best")
    both = claims[claims["claim"] == "NOG lowers the error vs SVD"]
    assert list(both["context"]) == ["cifar10", "cifar100"]


def test_lowest_error_is_below_every_other_row():
    rows = {
        "SVD": [20.0, 20.3, 19.9],
        "SVD+NOG+OW": [19.2, 19.4, 19.3],
        "SVD+NOG+OW+OLR": [18.0, 18.1, 17.9],
        "NS": [19.4, 19.5, 19.6],
    }
    claims = table_claims(_runs(rows), list(rows), metric="best")
    lowest = _claim(claims, "NOG+OW+OLR has the lowest error")
    pairwise = {
        other: stats.ttest_ind(
            rows["SVD+NOG+OW+OLR"], rows[other], equal_var=False, alternative="less"
        ).pvalue
        for other in ("SVD", "SVD+NOG+OW", "NS")
    }
    assert lowest["p"] == pytest.approx(max(pairwise.values()), rel=1e-12)  # intersection-union
    assert "(runner-up: SVD+NOG+OW)" in lowest["rows"] and lowest["verdict"] == "supported"
    assert lowest["values"] == "18.00 vs 19.30"
    rows["NS"] = [17.0, 17.1, 16.9]  # now a row is clearly lower
    claims = table_claims(_runs(rows), list(rows), metric="best")
    assert _claim(claims, "NOG+OW+OLR has the lowest error")["verdict"] == "contradicted"


def test_iccv21_hybrid_gap_uses_ns_standalone_runs_and_float32_interaction():
    gcp = {"application": "gcp", "dataset": "imagenet", "model": "alexnet"}
    pade_s, pade_h = [48.5, 48.4, 48.6], [47.7, 47.8, 47.6]
    runs = pd.concat(
        [
            _runs({("SVD-Pade", ("protocol", "standalone")): pade_s}, **gcp),
            _runs({("SVD-Pade", ("protocol", "hybrid")): pade_h}, **gcp),
            _runs({"iSQRT-COV": [47.9, 48.0, 48.1]}, **gcp),  # standalone only
        ],
        ignore_index=True,
    )
    claims = table_claims(runs, ["iSQRT-COV", "SVD-Pade"], metric="best")
    gap = _claim(claims, "hybrid training narrows SVD-Pade's gap to iSQRT-COV")
    # iSQRT-COV's hybrid runs are its standalone runs: the gaps' difference is hybrid - standalone.
    want = stats.ttest_ind(pade_h, pade_s, equal_var=False, alternative="less").pvalue
    assert gap["p"] == pytest.approx(want, rel=1e-12) and gap["where"] == "§3.4, Fig. 5; Table 2"
    assert gap["rows"] == "SVD-Pade [hybrid, float64] vs SVD-Pade [standalone, float64]"
    trails = _claim(claims, "SVD-Pade trails iSQRT-COV")
    assert trails["direction"] == ">" and trails["verdict"] == "supported"

    mpn = {"MPN-COV": {"float32": [60.0, 62.0, 61.0], "float64": [48.7, 48.8, 48.9]}}
    ns = {"iSQRT-COV": {"float32": [48.1, 48.0, 48.2], "float64": [47.9, 48.0, 48.1]}}
    runs = pd.concat(
        [
            _runs({(row, ("precision", p)): v}, **gcp)
            for table in (mpn, ns)
            for row, by in table.items()
            for p, v in by.items()
        ],
        ignore_index=True,
    )
    claims = table_claims(runs, ["MPN-COV", "iSQRT-COV"], metric="best")
    drop = _claim(claims, "float32 costs MPN-COV far more error than iSQRT-COV")
    assert (drop["direction"], drop["verdict"], drop["n"]) == (">", "supported", "3, 3, 3, 3")
    estimate = (61.0 - 48.8) - (48.1 - 48.0)
    assert drop["estimate"] == pytest.approx(estimate)
    beats = _claim(claims, "iSQRT-COV beats MPN-COV")  # at float64, the paper's default
    assert beats["values"] == "48.00 vs 48.80"


def test_every_claim_cites_the_paper_and_every_format_shows_the_claims():
    assert all(c.where and c.where[0] in "§TFA" for c in CLAIMS)
    rows = {"SVD": [20.0, 20.3, 19.9], "SVD+NOG": [19.0, 19.2, 18.9], "NS": [19.4, 19.5, 19.6]}
    table = layout_table(_runs(rows), list(rows), "eccv22-t4")
    assert list(table.claims["claim"]) == ["NOG lowers κ vs SVD", "NOG lowers the error vs SVD"]
    for fmt in ("rich", "markdown", "html"):
        assert "§5.1, Table 2: NOG lowers the error vs SVD" in render(table, fmt)
    assert r"\S{}5.1, Table 2: NOG lowers the error vs SVD" in render(table, "latex")
    csv = pd.read_csv(io.StringIO(claims_csv(table)))
    assert list(csv["verdict"]) == list(table.claims["verdict"])
    assert "claim" not in render(table, "csv").splitlines()[0]  # the table's CSV stays one table


def test_the_caption_names_the_ow_operator_the_study_ran():
    runs = _runs({"SVD": [20.0, 20.3], "SVD+OW": [20.1, 20.2]})
    runs.attrs["ow_map"] = "soc"
    for layout in ("eccv22-t4", "summary"):
        assert layout_table(runs, ["SVD", "SVD+OW"], layout).title.endswith("(OW: soc)")
    without_ow = runs[runs["row"] == "SVD"]
    without_ow.attrs["ow_map"] = "soc"
    assert "OW:" not in layout_table(without_ow, ["SVD"], "eccv22-t4").title
