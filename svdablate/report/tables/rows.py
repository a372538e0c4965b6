"""Table rows: their order, their variants, their baseline and the names the papers give them.

A row's paper name comes from its runs' canonical `method` tag and the treatments of its label
(`schema.split_row`), through `schema.paper_row_name`: 'NS' is 'iSQRT-COV' in ICCV'21 because
its runs ran method `ns`, whatever the row is called.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from svdablate.report.reading.runs import VARIANT_AXES
from svdablate.schema import paper_row_name, split_row

BASELINE_METHOD = "svd"  # the plain-SVD row (SVD / MPN-COV) every other row is compared with
NS_METHOD = "ns"  # Newton–Schulz: a hybrid run starts with it, so its standalone runs stand in
STANDALONE, HYBRID = "standalone", "hybrid"


def ordered_rows(rows_order: Sequence[str], runs: pd.DataFrame) -> list[str]:
    """The study's rows in table order, then any row seen only in the runs."""
    rows = list(dict.fromkeys(rows_order))
    rows.extend(r for r in dict.fromkeys(runs["row"]) if r not in rows)
    return rows


def row_methods(runs: pd.DataFrame) -> dict[str, str]:
    """Each row's canonical meta-layer method (its runs' `method` tag; rows without one absent)."""
    tagged = runs[runs["method"].astype(str) != ""]
    return {str(r): str(m) for r, m in tagged.groupby("row", sort=False)["method"].first().items()}


def treatments(row: str) -> tuple[str, ...]:
    """The treatments of a row label, canonical order (none for a label that does not parse)."""
    try:
        return split_row(row).treatments
    except ValueError:
        return ()


def paper_names(rows: Sequence[str], methods: dict[str, str], paper: str) -> dict[str, str]:
    """Row label -> the name `paper` prints for it (rows it has no name for are absent)."""
    names = {}
    for row in rows:
        name = paper_row_name(methods[row], treatments(row), paper) if row in methods else None
        if name is not None:
            names[row] = name
    return names


def is_baseline(row: str, methods: dict[str, str]) -> bool:
    """True for the plain SVD row (method svd, no treatment)."""
    return methods.get(row) == BASELINE_METHOD and not treatments(row)


def baseline_row(
    rows: Sequence[str], methods: dict[str, str], row_of: dict[str, str]
) -> str | None:
    """The plain SVD row, else the first row. `row_of` maps display labels to their row."""
    for label in rows:
        if is_baseline(row_of.get(label, label), methods):
            return label
    return rows[0] if rows else None


def variant_rows(runs: pd.DataFrame, rows: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Label each run by its row plus the axes that vary in the study ('NS (float32)').

    Returns the runs with a 'label' column and the labels in row order (rows without runs keep
    their plain name).
    """
    axes = [a for a in VARIANT_AXES if runs[a].astype(str).nunique() > 1]
    if not axes:
        return runs.assign(label=runs["row"]), list(rows)
    suffix = runs[axes].astype(str).agg(", ".join, axis=1)
    labelled = runs.assign(label=runs["row"] + " (" + suffix + ")")
    labels: list[str] = []
    for row in rows:
        mine = list(dict.fromkeys(labelled.loc[labelled["row"] == row, "label"]))
        labels.extend(sorted(mine) or [row])
    return labelled, labels


def filter_runs(runs: pd.DataFrame, filters: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The runs whose columns equal the given values."""
    mask = pd.Series(True, index=runs.index)
    for column, value in filters:
        mask &= runs[column].astype(str) == value
    return runs[mask]


def protocol_runs(runs: pd.DataFrame, protocol: str) -> tuple[pd.DataFrame, bool]:
    """The runs of one row under `protocol`; a Newton–Schulz row without hybrid runs gives its
    standalone runs (hybrid training starts with NS: ICCV'21 §3.4). Returns (runs, stood_in)."""
    mine = filter_runs(runs, [("protocol", protocol)])
    if mine.empty and protocol == HYBRID and (runs["method"] == NS_METHOD).any():
        standalone = filter_runs(runs, [("protocol", STANDALONE)])
        return standalone, not standalone.empty
    return mine, False
