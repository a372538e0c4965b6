"""CSV: the numbers behind the table, and the claims as a second CSV document."""

from __future__ import annotations

import pandas as pd

from svdablate.report.claims.verdicts import CLAIM_COLUMNS
from svdablate.report.tables.table import ReportTable
from svdablate.report.tables.trend import series_text


def csv_frame(table: ReportTable) -> pd.DataFrame:
    """section (if any), row, every column's values (a κ trend as its ';'-joined per-epoch
    values), then the rank of each ranked column."""
    keys = table.value_keys()
    frame = table.values[(["section"] if table.has_sections else []) + ["row", *keys]].copy()
    for col in table.columns:
        if col.fmt == "trend":
            frame[col.key] = frame[col.key].map(series_text)
    ranks = table.ranks()
    for col in table.columns:
        if col.better is not None:
            frame[f"{col.key}.rank"] = ranks[col.key]
    return frame


def to_csv(table: ReportTable) -> str:
    """CSV of `csv_frame` (floats to 6 significant digits; empty cells empty)."""
    return csv_frame(table).to_csv(index=False, float_format="%.6g", lineterminator="\n")


def claims_csv(table: ReportTable) -> str:
    """The claims (verdicts.CLAIM_COLUMNS; a header only when there are none)."""
    claims = table.claims.reindex(columns=list(CLAIM_COLUMNS))
    return claims.to_csv(index=False, float_format="%.6g", lineterminator="\n")
