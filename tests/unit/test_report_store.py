"""The report against real MLflow stores: read order, read-only archives, lookups, the API."""

from __future__ import annotations

import os
from io import StringIO

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from test_report import KAPPA_HISTORY, KEPT, ROWS, store  # noqa: F401  (store: the fixture)

from svdablate.report import (
    claims_frame,
    layout_table,
    load_runs,
    make_report,
    plot_study,
    render,
    report_table,
    resolve_parents,
)
from svdablate.schema import Tag

#: One `store` for the module's tests (test_report.py's `pytestmark` says why).
pytestmark = pytest.mark.xdist_group("report-store")

# --------------------------------------------------------------------------- canonical order


@pytest.mark.parametrize("layout", ["eccv22-t4", "summary"])
def test_tables_do_not_depend_on_the_order_the_store_returns_runs_in(store, layout):  # noqa: F811
    """Two stores holding the same runs return them in different orders: same table."""
    runs = load_runs(store["uri"], [store["parent"], store["parent_b"]])
    reference = layout_table(runs, runs.attrs["rows"], layout)
    assert reference.values.filter(like="ci_low").notna().any().any()  # a bootstrap CI
    assert reference.claims["p"].notna().any()  # and a tested claim are compared
    for seed in range(4):
        shuffled = runs.sample(frac=1, random_state=seed).reset_index(drop=True)
        shuffled.attrs = dict(runs.attrs)
        table = layout_table(shuffled, runs.attrs["rows"], layout)
        pd.testing.assert_frame_equal(table.values, reference.values)
        pd.testing.assert_frame_equal(table.claims, reference.claims)


def test_loaded_runs_come_in_canonical_order(store):  # noqa: F811
    runs = load_runs(store["uri"], [store["parent"], store["parent_b"]])
    keys = list(zip(runs["row"], runs["seed"], runs["config_hash"], runs["run_id"], strict=True))
    assert keys == sorted(keys)


# --------------------------------------------------------------------------- the API


def test_report_table_to_frame_and_claims_frame(store):  # noqa: F811
    table = report_table(store["uri"], store["parent"], layout="summary", metric="final")
    frame = table.to_frame()
    assert list(frame.index) == ROWS and frame.attrs["metric"] == "final"
    assert frame.loc["SVD", "val_err_mean"] == pytest.approx(np.mean(KEPT["SVD"]))
    assert frame.loc["SVD", "kappa"] == pytest.approx(2e12)
    histories = np.array([KAPPA_HISTORY[("SVD", s)] for s in range(3)])
    assert frame.loc["SVD", "kappa_trend"] == pytest.approx(tuple(np.median(histories, axis=0)))
    claims = claims_frame(store["uri"], store["parent"], metric="final")
    assert list(claims["claim"]) == list(table.claims["claim"])
    nog = claims.set_index("claim").loc["NOG lowers the error vs SVD"]
    assert nog["values"] == f"{np.mean(KEPT['SVD+NOG']):.2f} vs {np.mean(KEPT['SVD']):.2f}"


def test_kappa_trend_in_every_format(store):  # noqa: F811
    table = report_table(store["uri"], store["parent"], layout="summary")
    svd = table.values.set_index("row").loc["SVD", "kappa_trend"]
    assert svd == pytest.approx((2e12, 2e12, 4e12))  # medians over the three seeds per epoch
    assert "▇▇█" in render(table, "markdown")  # the table's log scale tops out at SVD's 4e12
    assert "▇▇█" in render(table, "html") and "▇▇█" in render(table, "rich")
    assert r"2.0e+12 $\rightarrow$ 4.0e+12 (3 epochs)" in render(table, "latex")
    csv = pd.read_csv(StringIO(render(table, "csv"))).set_index("row")
    assert csv.loc["SVD", "kappa_trend"] == "2e+12;2e+12;4e+12"


def test_make_report_tags_the_parent_with_the_claims_and_writes_a_claims_csv(store, tmp_path):  # noqa: F811
    out = tmp_path / "t4.csv"
    report = make_report(store["uri"], store["parent"], fmt="csv", out=out)
    claims = pd.read_csv(tmp_path / "t4.claims.csv")
    assert list(claims["claim"]) == list(report.table.claims["claim"])
    tag = MlflowClient(store["uri"]).get_run(store["parent"]).data.tags[Tag.CLAIMS]
    assert tag.count("\n") == len(claims) - 1
    assert "§5.1, Table 2: NOG lowers the error vs SVD: supported" in tag


# --------------------------------------------------------------------------- one-line errors


def test_lookups_that_miss_are_one_line_lookup_errors(store, tmp_path):  # noqa: F811
    with pytest.raises(LookupError) as unknown:
        report_table(store["uri"], "0123456789abcdef0123456789abcdef")
    trial = store["ids"][("SVD", 0)]
    with pytest.raises(LookupError) as child:
        report_table(store["uri"], trial)
    client = MlflowClient(store["uri"])
    stranger = client.create_run(client.create_experiment("not-a-study")).info.run_id
    with pytest.raises(LookupError) as foreign:
        make_report(store["uri"], stranger)
    empty = f"sqlite:///{tmp_path}/empty.db"
    with pytest.raises(LookupError) as none:
        resolve_parents(empty, None)
    for err, fix in (
        (unknown, "--latest"),
        (child, f"pass {store['parent']} instead"),
        (foreign, "parent run id"),
        (none, "svdablate run --preset demo"),
    ):
        message = str(err.value)
        assert "\n" not in message and fix in message, message
        assert err.value.__cause__ is None  # no MlflowException traceback attached


# --------------------------------------------------------------------------- read-only archives


def _blocked_artifacts(store, tmp_path):  # noqa: F811
    """The parent's artifact folder lies under a file: every attach fails with an OSError
    (simulates a read-only archive without chmod, which root ignores)."""
    client = MlflowClient(store["uri"])
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    exp = client.create_experiment("blocked", artifact_location=str(blocker / "art"))
    parent = client.create_run(exp, tags={Tag.ROLE: "parent", Tag.PRESET: "demo"}).info.run_id
    return parent


def test_make_report_and_plot_on_a_read_only_artifact_folder_warn_in_one_line(
    store,  # noqa: F811
    tmp_path,
    capsys,
):
    parent = _blocked_artifacts(store, tmp_path)
    report = make_report(store["uri"], parent, fmt="markdown")
    assert report.text.startswith("**") and len(report.warnings) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: not attached to parent run(s)")
    result = plot_study(store["uri"], parent, tmp_path / "figs")
    assert len(result["warnings"]) == 1 and all(p.exists() for p in result["paths"])


def test_make_report_on_a_read_only_store_warns_in_one_line(store, tmp_path, capsys):  # noqa: F811
    client = MlflowClient(store["uri"])
    exp = client.create_experiment("archived", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(exp, tags={Tag.ROLE: "parent", Tag.PRESET: "demo"}).info.run_id
    read_only = f"sqlite:///file:{store['uri'].removeprefix('sqlite:///')}?mode=ro&uri=true"
    report = make_report(read_only, parent, fmt="csv", out=tmp_path / "t.csv")
    assert len(report.warnings) == 1 and "MlflowException" in report.warnings[0]
    assert capsys.readouterr().err.count("\n") == 1
    assert (tmp_path / "t.claims.csv").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod: see the tests above")
def test_make_report_on_a_chmod_read_only_artifact_folder(store, tmp_path):  # noqa: F811
    client = MlflowClient(store["uri"])
    folder = tmp_path / "archive"
    folder.mkdir()
    exp = client.create_experiment("chmod", artifact_location=str(folder))
    parent = client.create_run(exp, tags={Tag.ROLE: "parent"}).info.run_id
    folder.chmod(0o555)
    try:
        assert len(make_report(store["uri"], parent, fmt="markdown").warnings) == 1
    finally:
        folder.chmod(0o755)
