"""svdablate.report against the papers, from runs each test builds itself (frames, or its own
MLflow store for the speed table) rather than the module store of test_report.py: the papers'
row names through the `method` tag and the shipped CSVs, the ICCV'21 Tables 2 and 3 and the
ECCV'22 Table 5, the speed table, smoke runs, compare's edge cases and rows whose runs differ
in precision.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from scipy import stats
from test_report import T0

from svdablate.report import (
    compare,
    layout_table,
    load_published,
    load_speed_runs,
    render,
    speed_table,
    summary_table,
)
from svdablate.report.tables.rows import paper_names

# --------------------------------------------------------------------------- names, papers


def test_rows_match_the_papers_names_through_their_method_tag_and_shipped_csv():
    methods = {
        "NS": "ns",
        "MPN-COV": "svd",
        "svd+ow+nog": "svd",
        "Newton": "ns",
        "Pade": "svd-pade",
    }
    rows = [*methods, "untagged"]
    assert paper_names(rows, methods, "eccv22") == {
        "NS": "NS",
        "MPN-COV": "SVD",
        "svd+ow+nog": "SVD+NOG+OW",
        "Newton": "NS",
        "Pade": "SVD-Pade",
    }
    iccv = paper_names(rows, methods, "iccv21")
    assert (iccv["NS"], iccv["MPN-COV"], iccv["Pade"]) == ("iSQRT-COV", "MPN-COV", "SVD-Pade")
    assert "untagged" not in iccv  # a row whose runs carry no method tag matches no paper row
    pub = load_published()
    assert len(pub) == 217 and set(pub["paper"]) == {"eccv22", "iccv21"}


def _hash(record):
    return "-".join(str(record[k]) for k in ("row", "protocol", "model", "dataset"))


METHOD_OF = {  # the `method` tag the orchestrator writes for each row label of these tests
    "SVD": "svd",
    "SVD+NOG": "svd",
    "NS": "ns",
    "iSQRT-COV": "ns",
    "MPN-COV": "svd",
    "SVD-Pade": "svd-pade",
    "SVD-Taylor": "svd-taylor",
}


def _frame(records):
    base = {
        "run_id": "",
        "parent_run_id": "p",
        "status": "finished",
        "application": "gcp",
        "precision": "float64",
        "preset": "",
        "smoke": False,
        "start_time": 0,
        "best_val_err": np.nan,
        "best_val_err5": np.nan,
        "final_kappa": np.nan,
        "failures_total": np.nan,
        "epochs_completed": np.nan,
    }
    rows = [
        {**base, "trial_id": str(i), "run_id": f"r{i}", "config_hash": _hash(r), **r}
        for i, r in enumerate(records)
    ]
    frame = pd.DataFrame.from_records(rows)
    return frame.assign(method=frame["row"].map(METHOD_OF))


def test_iccv21_table2_protocols_and_hybrid_ns():
    common = {"dataset": "imagenet", "model": "alexnet", "seed": 0}
    runs = _frame(
        [
            {**common, "row": "iSQRT-COV", "protocol": "standalone", "final_val_err": 48.0,
             "final_val_err5": 23.7, "best_val_err": 47.9, "best_val_err5": 23.6},
            {**common, "row": "SVD-Pade", "protocol": "standalone", "final_val_err": 48.5,
             "final_val_err5": 24.0},
            {**common, "row": "SVD-Pade", "protocol": "hybrid", "final_val_err": 47.7,
             "final_val_err5": 23.5, "best_val_err": 47.6, "best_val_err5": 23.2},
            {**common, "row": "MPN-COV", "protocol": "hybrid", "final_val_err": 47.9,
             "final_val_err5": 23.9, "best_val_err": 47.8, "best_val_err5": 23.3},
        ]
    )  # fmt: skip
    table = layout_table(runs, ["iSQRT-COV", "SVD-Pade", "MPN-COV"], "iccv21-t2")
    v = table.values.set_index("row")
    assert table.top_k == 3 and table.rows == ["iSQRT-COV", "SVD-Pade", "MPN-COV"]
    assert v.loc["SVD-Pade", "standalone_final.top1_err_final.paper"] == 48.41
    assert v.loc["iSQRT-COV", "hybrid_final.top1_err_final"] == 48.0  # its standalone run
    assert v.loc["iSQRT-COV", "hybrid_final.top1_err_final.paper"] == 47.95
    assert np.isnan(v.loc["MPN-COV", "hybrid_final.top5_err_final.paper"])  # not printed
    assert np.isnan(v.loc["MPN-COV", "standalone_final.top1_err_final"])  # not run
    assert v.loc["SVD-Pade", "hybrid_final.stat_note"] == "n<2"
    marks = table.marked().set_index(table.values["row"])
    assert marks.loc["SVD-Pade", "hybrid_best.top1_err_best"] == 1
    assert "hybrid training starts with NS" in " ".join(table.notes)


def test_eccv22_table5_accuracy_and_failures():
    common = {"dataset": "imagenet", "model": "resnet18", "protocol": "standalone", "seed": 0}
    runs = _frame(
        [
            {**common, "row": "SVD", "final_val_err": 26.9, "final_val_err5": 9.0,
             "failures_total": 5},
            {**common, "row": "SVD+NOG", "final_val_err": 26.5, "final_val_err5": 8.6,
             "failures_total": 1},
        ]
    )  # fmt: skip
    table = layout_table(runs, ["SVD", "SVD+NOG"], "eccv22-t5", metric="final")
    md = render(table, "markdown")
    assert "| SVD | 5² | 5 | +0.00 | 73.10² | 73.13 | -0.03 | 91.00² | 91.02 | -0.02 |" in md
    assert "| SVD+NOG | 1¹ | 1 | +0.00 | 73.50¹ | 73.51 | -0.01 | 91.40¹ |  |  |" in md


def test_speed_table_from_benchmark_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("metalayer-speed", artifact_location=str(tmp_path / "art"))
    timings = [("svd", 0.9, 0.3, 1), ("ns", 0.2, 0.5, 2), ("svd-pade", 1.0, 0.25, 3)]
    timings.append(("ns", 0.25, 0.55, 4))  # a newer measurement of ns replaces the older
    for method, fp, bp, start in timings:
        run = client.create_run(exp, start_time=T0 + start)
        params = [Param(k, v) for k, v in (("method", method), ("batch", "128"), ("dim", "256"))]
        params.append(Param("dtype", "float32"))
        metrics = [Metric("fp_s", fp, T0, 0), Metric("bp_s", bp, T0, 0)]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
    speed = load_speed_runs(uri)
    assert len(speed) == 3
    md = render(speed_table(speed), "markdown")
    assert "| **batch 128, d 256, float32** |" in md
    body = [line for line in md.splitlines() if line.startswith("| ") and "**" not in line]
    assert [line.split(" | ")[0][2:] for line in body[1:]] == ["ns", "svd-pade", "svd"]
    assert "| ns | 0.25¹ | 0.23 | +0.02 | 0.55³ | 0.53 | +0.02 | 0.8¹ | 0.76 | +0.04 |" in md


def test_smoke_runs_are_not_compared_with_the_paper():
    common = {"dataset": "cifar100", "model": "resnet50", "application": "dbn", "smoke": True}
    runs = _frame(
        [
            {**common, "row": row, "protocol": "standalone", "seed": s, "final_val_err": 50.0 + s}
            for s in range(2)
            for row in ("SVD", "NS")
        ]
    )
    table = layout_table(runs, ["SVD", "NS"], "eccv22-t4", metric="final")
    assert not any(c.kind in ("paper", "diff") for c in table.columns)
    assert any("Smoke runs" in note for note in table.notes)
    real = layout_table(runs.assign(smoke=False), ["SVD", "NS"], "eccv22-t4", metric="final")
    assert real.values.set_index("row").loc["NS", "cifar100.val_err_mean.paper"] == 19.45


def test_iccv21_table3_sections_per_model():
    records = [
        {"dataset": "imagenet", "model": model, "seed": 0, "row": row, "protocol": "standalone",
         "final_val_err": err + (model == "resnet50"), "final_val_err5": 6.0}
        for model in ("resnet101", "resnet50")
        for row, err in (("SVD-Pade", 21.5), ("MPN-COV", 21.8))
    ]  # fmt: skip
    records.append({**records[0], "model": "resnet50", "row": "SVD-Taylor", "final_val_err": 23.0})
    table = layout_table(
        _frame(records), ["MPN-COV", "SVD-Pade", "SVD-Taylor"], "iccv21-t3", metric="final"
    )
    assert list(table.values["section"]) == ["ResNet-50"] * 3 + ["ResNet-101"] * 2
    assert table.rows == ["SVD-Pade", "SVD-Taylor", "MPN-COV", "SVD-Pade", "MPN-COV"]
    v = table.values
    assert list(v["standalone.top1_err.paper"]) == [22.67, 22.91, 22.93, 21.48, 21.79]
    ranks = table.marked()["standalone.top1_err"].tolist()
    assert ranks == [1, 3, 2, 1, 2]  # ranked within each backbone's block
    assert "| **ResNet-101** |" in render(table, "markdown")


def test_compare_edge_cases():
    assert compare(np.array([1.0]), np.array([1.0, 2.0])).note == "n<2"
    flat = compare(np.array([1.0, 1.0]), np.array([2.0, 2.0]))
    assert flat.note == "sd=0" and np.isnan(flat.p_value)
    assert (flat.ci_low, flat.ci_high) == (-1.0, -1.0)
    a, b = np.array([1.0, 1.2, 0.9, 1.1]), np.array([2.0, 2.1, 1.8])
    result = compare(a, b)
    assert result.note == "" and result.p_value == pytest.approx(
        stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12
    )
    assert result.ci_low < a.mean() - b.mean() < result.ci_high
    big_a, big_b = np.random.default_rng(5).normal(0.0, 1.0, (2, 30))
    expected = stats.bootstrap(
        (big_a, big_b),
        lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis),
        n_resamples=9999,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    first, second = compare(big_a, big_b), compare(big_a, big_b)
    assert (first.ci_low, first.ci_high) == pytest.approx((expected.low, expected.high), rel=1e-12)
    assert first == second  # fixed bootstrap seed: the report is reproducible


def test_summary_splits_rows_whose_runs_differ_in_precision():
    records = [
        {"dataset": "imagenet", "model": "alexnet", "protocol": "standalone", "seed": s,
         "row": row, "precision": precision, "final_val_err": err + s}
        for s in range(2)
        for row, err in (("iSQRT-COV", 48.0), ("MPN-COV", 49.0))
        for precision in ("float32", "float64")
    ]  # fmt: skip
    runs = _frame(records)
    runs["config_hash"] += runs["precision"]
    summary = summary_table(runs, ["MPN-COV", "iSQRT-COV"], metric="final")
    assert list(summary.index) == [
        "MPN-COV (float32)",
        "MPN-COV (float64)",
        "iSQRT-COV (float32)",
        "iSQRT-COV (float64)",
    ]
    assert summary.attrs["baseline"] == "MPN-COV (float32)"
    assert (summary["n"] == 2).all()
    assert summary.loc["iSQRT-COV (float64)", "val_err_mean"] == 48.5
