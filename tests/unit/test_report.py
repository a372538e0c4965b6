"""Golden tests of svdablate.report against a small MLflow store built in tmp_path (the module
`store` fixture, which other report tests import): loading, summaries, the ECCV'22 Table 4
and plots. The tests against the papers' other tables are in test_report_papers.py.
"""

from __future__ import annotations

import json
import re
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from rich.console import Console
from scipy import stats

from svdablate.report import (
    deduplicate,
    latest_parent,
    layout_table,
    load_runs,
    make_report,
    plot_study,
    render,
    render_rich,
    summary_report,
    summary_table,
)

#: The module's tests on one pytest-xdist worker (`--dist loadgroup`): one `store` for them,
#: not one per worker they land on (~1.8 CPU-s a build: a run built 12 for the four modules that
#: use it, where one group each builds 4).
pytestmark = pytest.mark.xdist_group("report")

T0 = 1_700_000_000_000
ROWS = ["SVD", "SVD+NOG", "SVD+OW", "NS", "SVD+NOG+SN"]
BEST_GAIN = 0.5  # every run's best epoch is this much below its final epoch
# Final top-1 errors of the finished runs that survive de-duplication (best: BEST_GAIN lower).
KEPT = {
    "SVD": [20.0, 20.3, 19.9],
    "SVD+NOG": [19.4, 19.6, 19.3],
    "SVD+OW": [20.1],
    "NS": [19.5, 19.7, 19.4],
    "SVD+NOG+SN": [19.8],
}
KAPPA_HISTORY = {  # per (row, seed): kappa_median at epochs 0, 1, 2
    ("SVD", 0): [1e12, 2e12, 4e12],
    ("SVD", 1): [3e12, 1e12, 5e12],
    ("SVD", 2): [2e12, 6e12, 1e12],
    ("SVD+NOG", 0): [1e6, 2e6, 3e6],
}
PARENT_TAGS = {
    "svdablate.role": "parent",
    "svdablate.preset": "eccv22-dbn-cifar100",
    "svdablate.grid_id": "grid-a",
    "svdablate.application": "dbn",
    "svdablate.dataset": "cifar100",
    "svdablate.model": "resnet50",
    "svdablate.protocol": "standalone",
}


def _child(client, exp, parent, row, seed, status, start, final=None, **extra):
    """One trial run in the internals.md layout; final: dict of final metrics."""
    tags = {
        "mlflow.parentRunId": parent,
        "svdablate.role": "trial",
        "svdablate.row": row,
        "svdablate.seed": str(seed),
        "svdablate.config_hash": f"hash-{row}",
        "svdablate.trial_id": f"{row}_s{seed}",
        "svdablate.status": status,
        "svdablate.method": "ns" if row == "NS" else "svd",
        "svdablate.protocol": "standalone",
    }
    run = client.create_run(exp, start_time=T0 + start, tags=tags)
    metrics = [Metric(k, v, T0, 0) for k, v in (final or {}).items()]
    for key, values in extra.items():
        metrics += [Metric(key, v, T0 + e, e) for e, v in enumerate(values)]
    params = [Param("dataset", "cifar100"), Param("model", "resnet50"), Param("seed", str(seed))]
    client.log_batch(run.info.run_id, metrics=metrics, params=params)
    if status != "running":
        client.set_terminated(run.info.run_id, "FINISHED" if status != "failed" else "FAILED")
    return run.info.run_id


def _final(err, kappa=1e10, failures=0.0):
    best = err - BEST_GAIN
    return {
        "final_val_err": err,
        "best_val_err": best,
        "final_kappa": kappa,
        "failures_total": failures,
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("eccv22-dbn-cifar100", artifact_location=str(root / "art"))
    tags = {**PARENT_TAGS, "svdablate.rows": json.dumps(ROWS)}
    parent = client.create_run(exp, start_time=T0, tags=tags).info.run_id
    ids = {}
    start = 10
    # Duplicates of (row, seed, config hash): an older finished SVD seed 1, an older failed
    # SVD seed 0 and a newer failed SVD seed 2; the newest finished run of each must win.
    _child(client, exp, parent, "SVD", 1, "finished", 1, _final(25.0, 9e12, 7), kappa_median=[1e20])
    _child(client, exp, parent, "SVD", 0, "failed", 2)
    for row, values in KEPT.items():
        for seed, err in enumerate(values):
            kappa = {0: 1e12, 1: 3e12, 2: 2e12}[seed] if row == "SVD" else 1e10
            failures = {"SVD": [2, 1, 0], "SVD+OW": [1]}.get(row, [0] * 3)[seed]
            history = KAPPA_HISTORY.get((row, seed), [5e8, 4e8, 3e8])
            ids[(row, seed)] = _child(
                client,
                exp,
                parent,
                row,
                seed,
                "finished",
                start,
                _final(err, kappa, failures),
                kappa_median=history,
                val_err=[60.0 - seed, err - BEST_GAIN, err],
            )
            start += 1
    _child(client, exp, parent, "SVD", 2, "failed", 500)
    # SVD+OW: a diverged trial (its final error must not enter the mean) and a running one.
    _child(client, exp, parent, "SVD+OW", 1, "diverged", 40, _final(95.0, np.inf, 4))
    _child(client, exp, parent, "SVD+OW", 2, "running", 41)
    # A second invocation (--extend): one more NS seed and a rerun of SVD+NOG seed 0.
    tags_b = {**tags, "svdablate.grid_id": "grid-b"}
    parent_b = client.create_run(exp, start_time=T0 + 1000, tags=tags_b).info.run_id
    _child(client, exp, parent_b, "NS", 3, "finished", 1001, _final(19.6))
    _child(client, exp, parent_b, "SVD+NOG", 0, "finished", 1002, _final(19.45))
    return {"uri": uri, "parent": parent, "parent_b": parent_b, "ids": ids, "root": root}


# --------------------------------------------------------------------------- loading


def test_load_runs_one_row_per_child_and_latest_parent(store):
    runs = load_runs(store["uri"], store["parent"])
    assert len(runs) == 16  # 11 kept finished, 3 duplicates, 1 diverged, 1 running
    assert runs.attrs["rows"] == ROWS
    assert set(runs["status"]) == {"finished", "failed", "diverged", "running"}
    svd = runs[(runs["row"] == "SVD") & (runs["status"] == "finished")]
    assert sorted(svd["final_val_err"]) == [19.9, 20.0, 20.3, 25.0]
    assert (runs["dataset"] == "cifar100").all() and (runs["model"] == "resnet50").all()
    assert latest_parent(store["uri"]) == store["parent_b"]
    assert latest_parent(store["uri"], "eccv22-dbn-cifar100") == store["parent_b"]
    with pytest.raises(LookupError):
        latest_parent(store["uri"], "no-such-experiment")


def test_deduplicate_keeps_newest_finished(store):
    runs = load_runs(store["uri"], store["parent"])
    kept, dropped = deduplicate(runs)
    assert dropped == 3
    svd = kept[kept["row"] == "SVD"].sort_values("seed")
    assert list(svd["status"]) == ["finished"] * 3
    assert list(svd["final_val_err"]) == KEPT["SVD"]
    both = load_runs(store["uri"], [store["parent"], store["parent_b"]])
    kept_b, dropped_b = deduplicate(both)
    assert dropped_b == 4  # and the older SVD+NOG seed 0 of the first invocation
    nog0 = kept_b[(kept_b["row"] == "SVD+NOG") & (kept_b["seed"] == 0)]
    assert list(nog0["final_val_err"]) == [19.45]


# --------------------------------------------------------------------------- summary


def test_summary_table_statistics(store):
    runs = load_runs(store["uri"], store["parent"])
    summary = summary_table(runs, runs.attrs["rows"], metric="final")
    assert list(summary.index) == ROWS
    assert summary.attrs["dropped"] == 3 and summary.attrs["baseline"] == "SVD"
    svd, ow = summary.loc["SVD"], summary.loc["SVD+OW"]
    assert svd["val_err_mean"] == pytest.approx(np.mean(KEPT["SVD"]))
    assert svd["val_err_std"] == pytest.approx(np.std(KEPT["SVD"], ddof=1))
    assert svd["val_err_min"] == 19.9
    assert svd["kappa"] == pytest.approx(2e12)  # median of 1e12, 3e12, 2e12
    assert svd["failures"] == 3  # the dropped duplicate's 7 failures do not count
    assert (svd["seeds"], svd["n"], svd["stat_note"]) == (3, 3, "baseline")
    assert (ow["seeds"], ow["n"], ow["diverged"], ow["running"]) == (3, 1, 1, 1)
    assert ow["val_err_mean"] == 20.1  # the diverged run's 95.0 is excluded
    assert ow["failures"] == 5 and ow["stat_note"] == "n<2" and np.isnan(ow["p_value"])
    expected_p = stats.ttest_ind(KEPT["NS"], KEPT["SVD"], equal_var=False).pvalue
    assert summary.loc["NS", "p_value"] == pytest.approx(expected_p, rel=1e-12)
    diff = np.mean(KEPT["NS"]) - np.mean(KEPT["SVD"])
    assert summary.loc["NS", "ci_low"] <= diff <= summary.loc["NS", "ci_high"]
    best = summary_table(runs, runs.attrs["rows"])  # the default: each run's best epoch
    assert best.attrs["metric"] == "best"
    assert best.loc["SVD", "val_err_mean"] == pytest.approx(np.mean(KEPT["SVD"]) - BEST_GAIN)
    assert best.loc["SVD", "val_err_min"] == pytest.approx(19.9 - BEST_GAIN)


def test_render_rich_shows_every_row(store):
    runs = load_runs(store["uri"], store["parent"])
    console = Console(file=StringIO(), width=100, color_system=None)
    render_rich(summary_report(runs, runs.attrs["rows"], metric="final"), console)
    out = console.file.getvalue()
    for row in ROWS:
        assert re.search(rf"^\s*{re.escape(row)}\s", out, re.M)
    assert "20.07 ± 0.21" in out and "2.0e+12" in out and "n<2" in out
    assert "3 duplicate(s)" in out and "1 diverged, 1 running" in out


# --------------------------------------------------------------------------- golden table


def _p(a, b):
    p = stats.ttest_ind(KEPT[a], KEPT[b], equal_var=False).pvalue
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def _ci(a, b):
    res = stats.bootstrap(
        (np.array(KEPT[a]), np.array(KEPT[b])),
        lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis),
        n_resamples=9999,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    return res.low, res.high


def test_golden_eccv22_table4_markdown(store):
    # The final-epoch table (the old default); κ columns added; the best-epoch default below.
    runs = load_runs(store["uri"], store["parent"])
    table = layout_table(runs, runs.attrs["rows"], "eccv22-t4", metric="final")
    ci_nog, ci_ns = _ci("SVD+NOG", "SVD"), _ci("NS", "SVD")
    g = "CIFAR100"
    header = (
        f"| row | {g} mean ± std | {g} paper | {g} Δ | {g} min | {g} paper | {g} Δ | {g} κ "
        f"| {g} n | {g} p (Welch) | {g} 95% CI Δ |"
    )
    expected = [
        "**ECCV'22 Table 4: decorrelated BN, all methods - final-epoch validation error (%)**",
        "",
        header,
        "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| SVD | 20.07 ± 0.21⁴ | 19.99 ± 0.16 | +0.08 | 19.90⁴ | 19.80 | +0.10 | 2.0e+12 | 3/3 "
        "| baseline |  |",
        "| SVD+OW | 20.10 | 20.06 ± 0.17 | +0.04 | 20.10 | 19.94 | +0.16 | 1.0e+10 | 1/3 "
        "| n<2 |  |",
        f"| SVD+NOG | 19.43 ± 0.15¹ | 19.43 ± 0.24 | +0.00 | 19.30¹ | 19.15 | +0.15 | 1.0e+10 "
        f"| 3/3 | {_p('SVD+NOG', 'SVD')} | [{ci_nog[0]:+.2f}, {ci_nog[1]:+.2f}] |",
        f"| NS | 19.53 ± 0.15² | 19.45 ± 0.33 | +0.08 | 19.40² | 19.01 | +0.39 | 1.0e+10 | 3/3 "
        f"| {_p('NS', 'SVD')} | [{ci_ns[0]:+.2f}, {ci_ns[1]:+.2f}] |",
        "| SVD+NOG+SN | 19.80³ |  |  | 19.80³ |  |  | 1.0e+10 | 1/1 | n<2 |  |",
        "",
        "- 16 runs loaded; 3 duplicate(s) of (row, seed, config hash) dropped, keeping the "
        "newest finished run.",
        "- SVD+OW (CIFAR100): 1 diverged, 1 running (excluded from the statistics).",
    ]
    lines = render(table, "markdown").splitlines()
    assert lines[: len(expected)] == expected
    # The default shows each run's best epoch, as the papers do, and says so.
    best = render(layout_table(runs, runs.attrs["rows"], "eccv22-t4"), "markdown").splitlines()
    assert best[0] == (
        "**ECCV'22 Table 4: decorrelated BN, all methods - best-epoch validation error (%)**"
    )
    assert best[4].startswith("| SVD | 19.57 ± 0.21⁴ | 19.99 ± 0.16 | -0.42 | 19.40⁴ | 19.80 |")
    assert any(line.startswith("- Error: best-epoch") for line in best)


def test_golden_eccv22_table4_csv(store):
    runs = load_runs(store["uri"], store["parent"])
    csv = render(layout_table(runs, runs.attrs["rows"], "eccv22-t4", metric="final"), "csv")
    frame = pd.read_csv(StringIO(csv))
    c = "cifar100"
    assert list(frame.columns) == [
        "row",
        f"{c}.val_err_mean",
        f"{c}.val_err_mean.std",
        f"{c}.val_err_mean.paper",
        f"{c}.val_err_mean.paper_std",
        f"{c}.val_err_mean.diff",
        f"{c}.val_err_min",
        f"{c}.val_err_min.paper",
        f"{c}.val_err_min.diff",
        f"{c}.kappa",
        f"{c}.n",
        f"{c}.total",
        f"{c}.p_value",
        f"{c}.stat_note",
        f"{c}.ci_low",
        f"{c}.ci_high",
        f"{c}.val_err_mean.rank",
        f"{c}.val_err_min.rank",
    ]
    lines = csv.splitlines()
    svd = KEPT["SVD"]
    expected_svd = [
        "SVD",
        f"{np.mean(svd):.6g}",
        f"{np.std(svd, ddof=1):.6g}",
        "19.99",
        "0.16",
        f"{np.mean(svd) - 19.99:.6g}",
        "19.9",
        "19.8",
        f"{19.9 - 19.8:.6g}",
        "2e+12",
        "3",
        "3",
        "",
        "baseline",
        "",
        "",
        "4",
        "4",
    ]
    assert lines[1] == ",".join(expected_svd)
    ns_p = stats.ttest_ind(KEPT["NS"], KEPT["SVD"], equal_var=False).pvalue
    ns = frame.set_index("row").loc["NS"]
    assert ns[f"{c}.p_value"] == pytest.approx(ns_p, rel=1e-5)
    assert (ns[f"{c}.val_err_mean.rank"], ns[f"{c}.val_err_min.rank"]) == (2, 2)
    blank = frame.set_index("row").loc["SVD+NOG+SN"]
    assert np.isnan(blank[f"{c}.val_err_mean.paper"]) and np.isnan(blank[f"{c}.val_err_mean.diff"])
    assert frame.set_index("row").loc["SVD+OW", f"{c}.val_err_mean.rank"] == 5


def test_table1_keeps_only_its_rows_and_matches_published(store):
    runs = load_runs(store["uri"], store["parent"])
    table = layout_table(runs, runs.attrs["rows"], "eccv22-t1")
    assert table.rows == ["SVD", "SVD+OW", "NS"]
    values = table.values.set_index("row")
    assert values.loc["SVD+OW", "cifar100.val_err_mean.paper"] == 20.06  # printed in Table 1
    assert values.loc["NS", "cifar100.val_err_min.paper"] == 19.01


def test_latex_and_html_mark_ranks(store):
    runs = load_runs(store["uri"], store["parent"])
    table = layout_table(runs, runs.attrs["rows"], "eccv22-t4", metric="final")
    latex = render(table, "latex")
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert latex.count(rule) == 2  # the table's, then the claims'
    assert r"\textcolor{red}{19.43 $\pm$ 0.15}" in latex
    assert r"\textcolor{cyan}{20.07 $\pm$ 0.21}" in latex
    assert r"\multicolumn{10}{c}{CIFAR100}" in latex
    page = render(table, "html")
    assert 'r2" title="rank 2 (second) of its column">19.53 ± 0.15<sup class="rank">2</sup>' in page
    assert '<th colspan="10">CIFAR100</th>' in page


def test_make_report_writes_and_logs_artifacts(store, tmp_path):
    out = tmp_path / "table.md"
    report = make_report(store["uri"], store["parent"], fmt="markdown", out=out)
    text = report.text
    assert out.read_text() == text and text.startswith("**ECCV'22 Table 4")
    assert f"parent run(s) {store['parent']}" in text and report.warnings == []
    logged = {a.path for a in MlflowClient(store["uri"]).list_artifacts(store["parent"], "report")}
    assert {"report/eccv22-t4.md", "report/eccv22-t4.csv", "report/eccv22-t4.claims.csv"} <= logged
    both = make_report(
        store["uri"],
        [store["parent"], store["parent_b"]],
        fmt="csv",
        metric="final",
        log_artifacts=False,
    ).text
    ns = pd.read_csv(StringIO(both)).set_index("row").loc["NS"]
    assert ns["cifar100.n"] == 4 and ns["cifar100.val_err_mean"] == pytest.approx(19.55)


# --------------------------------------------------------------------------- plots


def test_plot_study_data_match_histories(store, tmp_path):
    result = plot_study(store["uri"], store["parent"], tmp_path / "figs", log_artifacts=True)
    for path in result["paths"]:
        assert path.exists() and path.stat().st_size > 1000
    png = tmp_path / "figs" / "kappa.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svd = result["kappa"]["SVD"]
    histories = np.array([KAPPA_HISTORY[("SVD", s)] for s in range(3)])
    assert svd["epochs"] == [0, 1, 2]
    assert svd["median"] == pytest.approx(list(np.median(histories, axis=0)))
    assert svd["min"] == pytest.approx(list(histories.min(axis=0)))
    assert svd["max"] == pytest.approx(list(histories.max(axis=0)))  # not the dropped 1e20
    for seed in range(3):
        run = svd["runs"][store["ids"][("SVD", seed)]]
        assert list(run.values()) == KAPPA_HISTORY[("SVD", seed)]
    client = MlflowClient(store["uri"])
    for row in ROWS:
        rid = store["ids"][(row, 0)]
        logged = [m.value for m in client.get_metric_history(rid, "val_err")]
        assert result["val_err"][row]["runs"][rid] == dict(enumerate(logged))
    logged = {a.path for a in client.list_artifacts(store["parent"], "report")}
    assert {"report/kappa.png", "report/kappa.pdf", "report/val_err.png"} <= logged
    assert result["warnings"] == []
