"""Issue 25, item 7: CSV on stdout carries the claims; ICCV'21 Table 2 never pools float32 and
float64 runs of a row, and its claims read the final-epoch error its columns show."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from claim_runs import ALEXNET, claim_row, runs_frame, runs_of
from test_report import store  # noqa: F401  (store: the fixture)

from svdablate.report import layout_table, make_report


def test_csv_on_stdout_carries_the_claims_after_the_table(store, capsys):  # noqa: F811
    report = make_report(store["uri"], store["parent"], fmt="csv", log_artifacts=False)
    out = capsys.readouterr().out
    table_csv, claims_csv = out.split("\n\n", 1)
    assert pd.read_csv(io.StringIO(table_csv))["row"].tolist() == report.table.rows
    claims = pd.read_csv(io.StringIO(claims_csv))
    assert claims["claim"].tolist() == report.table.claims["claim"].tolist()
    assert "NOG lowers the error vs SVD" in claims["claim"].tolist()


def _precision_runs() -> pd.DataFrame:
    mpn = {"float64": [48.8, 48.7, 48.9], "float32": [60.0, 62.0, 61.0]}
    ns = {"float64": [47.9, 48.0, 48.1], "float32": [48.0, 48.1, 48.2]}
    return runs_of(
        *(
            runs_frame({(row, ("precision", p)): v}, **ALEXNET)
            for row, by in (("MPN-COV", mpn), ("iSQRT-COV", ns))
            for p, v in by.items()
        )
    )


def test_table2_shows_float32_and_float64_runs_apart():
    table = layout_table(_precision_runs(), ["iSQRT-COV", "MPN-COV"], "iccv21-t2")
    v = table.values.set_index(["section", "row"])
    assert list(dict.fromkeys(table.values["section"])) == ["float64", "float32"]
    # final error = best + 1 in these runs
    assert v.loc[("float64", "MPN-COV"), "standalone_final.top1_err_final"] == pytest.approx(49.8)
    assert v.loc[("float32", "MPN-COV"), "standalone_final.top1_err_final"] == pytest.approx(62.0)
    assert v.loc[("float64", "MPN-COV"), "standalone_final.top1_err_final.paper"] == 48.77
    assert pd.isna(v.loc[("float32", "MPN-COV"), "standalone_final.top1_err_final.paper"])


def test_table2_claims_read_the_final_epoch_error_its_columns_show():
    runs = _precision_runs()
    for metric in ("best", "final"):
        table = layout_table(runs, ["iSQRT-COV", "MPN-COV"], "iccv21-t2", metric=metric)
        beats = claim_row(table.claims, "iSQRT-COV beats MPN-COV")
        assert beats["quantity"] == "final-epoch error (%)"
        assert beats["values"] == "49.00 vs 49.80"  # float64 runs' final error, as the columns
