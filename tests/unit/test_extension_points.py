"""A treatment and a report format are each added in one place (docs/architecture.md, "Where to
add"): a throwaway one, registered here and removed after, flows through rows, the grid, the
report and the CLI."""

from __future__ import annotations

import pandas as pd
from test_report import ROWS, store  # noqa: F401  (store: the fixture)
from test_treatments import halve  # noqa: F401  (halve: HALF registered for one test)

from svdablate.report import report_table
from svdablate.report.render.formats import FORMATS, Format
from svdablate.report.tables.rows import ordered_rows, treatments
from svdablate.schema import Row, format_row, split_row
from svdablate.spec.config import StudySpec
from svdablate.spec.grid import expand, resolve_preset
from svdablate.spec.rows import parse_row


def test_a_registered_treatment_is_a_row_a_trial_and_a_report_row(halve):  # noqa: F811
    row = parse_row("svd+half+olr+nog")
    assert row == Row("SVD", ("NOG", "OLR", "HALF")) and row.label == "SVD+NOG+OLR+HALF"
    assert split_row("SVD+half+OW").label == format_row("SVD", ["HALF", "OW"]) == "SVD+OW+HALF"
    spec = StudySpec(preset="demo", rows=("SVD+half", "SVD"), seeds=1)
    configs = expand(resolve_preset(spec), spec)
    assert [(c.row, c.treatments) for c in configs] == [("SVD+HALF", ("HALF",)), ("SVD", ())]
    # the report reads the treatments back from the label and keeps the study's row order
    assert treatments("SVD+NOG+OLR+HALF") == ("NOG", "OLR", "HALF")
    runs = pd.DataFrame({"row": ["SVD+HALF", "SVD", "SVD+NOG+HALF"]})
    assert ordered_rows([c.row for c in configs], runs) == ["SVD+HALF", "SVD", "SVD+NOG+HALF"]


def test_a_registered_format_is_a_choice_of_report_format(store, run_main, monkeypatch):  # noqa: F811
    def rows_only(table):
        return "\n".join(f"row: {row}" for row in table.rows) + "\n"

    monkeypatch.setitem(FORMATS, "rows", Format(rows_only, "txt"))
    args = ("report", store["parent"], "--tracking-uri", store["uri"], "--format")
    code, out, err = run_main(*args, "rows")
    assert code == 0, err
    table = report_table(store["uri"], [store["parent"]])
    assert sorted(table.rows) == sorted(ROWS)
    assert out == rows_only(table)
    code, _, err = run_main(*args, "nope")
    assert code == 2 and "'rows'" in err
