"""A study's recipe as its trials ran it: the child runs' params (each trial's flattened config).

Split three ways, so a reader sees what the rows share and what tells them apart: the params
every trial has the same value of, the params that differ between rows but not within one
(the method, the treatments...), and the params that differ between the trials of a row (the
seed). Reads MLflow only; the names are whatever the trials logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from svdablate.report.reading.parents import client, parent_info
from svdablate.schema import Tag, search_child_runs

#: At most this many distinct values of a per-trial param are listed.
MAX_LISTED = 8


@dataclass
class Recipe:
    """shared: param -> value common to every trial; per_row: one row per table row, a column
    per param that differs between rows only; per_trial: param -> its sorted distinct values
    (params that differ within a row); trials: how many child runs were read."""

    shared: dict[str, str] = field(default_factory=dict)
    per_row: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_trial: dict[str, list[str]] = field(default_factory=dict)
    trials: int = 0


def _sorted_values(values: pd.Series) -> list[str]:
    distinct = [str(v) for v in values.dropna().unique()]
    numeric = pd.to_numeric(pd.Series(distinct), errors="coerce")
    if numeric.notna().all():
        return [distinct[i] for i in numeric.sort_values(kind="stable").index]
    return sorted(distinct)


def split_recipe(params: pd.DataFrame, rows_order: Sequence[str]) -> Recipe:
    """The Recipe of `params`: one row per trial, a 'row' column (its table row) and a column
    per param (NaN where a trial did not log it)."""
    if params.empty:
        return Recipe()
    names = [c for c in params.columns if c != "row"]
    rows = [r for r in dict.fromkeys([*rows_order, *params["row"]]) if r in set(params["row"])]
    recipe = Recipe(trials=len(params))
    per_row: dict[str, pd.Series] = {}
    for name in names:
        values = params[name].astype("string")
        if values.nunique(dropna=False) == 1:
            recipe.shared[name] = str(values.iloc[0]) if values.notna().iloc[0] else ""
        elif (values.groupby(params["row"]).nunique(dropna=False) <= 1).all():
            by_row = values.groupby(params["row"]).first().reindex(rows)
            if list(by_row) != rows:  # a param that only repeats the row's label says nothing
                per_row[name] = by_row.fillna("")
        else:
            recipe.per_trial[name] = _sorted_values(values)
    recipe.per_row = pd.DataFrame(per_row, index=pd.Index(rows, name="row"))
    return recipe


def study_recipe(
    tracking_uri: str | None, parent_ids: Sequence[str], rows_order: Sequence[str] = ()
) -> Recipe:
    """The recipe of the study's trials, from the params of every child run of the parent(s);
    rows in `rows_order`, then any other row."""
    mlflow = client(tracking_uri)
    records = []
    for pid in parent_ids:
        experiment = str(parent_info(tracking_uri, pid)["experiment_id"])
        children = search_child_runs(mlflow, experiment, pid)
        records += [
            {"row": run.data.tags.get(Tag.ROW, ""), **run.data.params}
            for run in children
            if run.data.params
        ]
    return split_recipe(pd.DataFrame.from_records(records), rows_order)
