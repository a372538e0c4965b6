"""The papers' printed numbers (published.csv, the papers' names of rows and metrics)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

TEXT_COLUMNS = ("paper", "application", "dataset", "model", "protocol", "method", "metric")


@lru_cache(maxsize=1)
def load_published() -> pd.DataFrame:
    """published.csv (shipped with the package) with empty text cells as ''."""
    with resources.files(__package__).joinpath("published.csv").open("r") as fh:
        frame = pd.read_csv(fh, dtype={"table": int, "value": float}, keep_default_na=False)
    frame[list(TEXT_COLUMNS)] = frame[list(TEXT_COLUMNS)].astype(str)
    return frame


def published_value(
    *,
    paper: str,
    application: str,
    dataset: str,
    model: str,
    protocol: str,
    row: str,
    metric: str,
) -> float:
    """The number `paper` prints for its row `row` (its own name, `schema.paper_row_name`), NaN
    when it prints none (never guessed). The table number is ignored: the same experiment's
    numbers repeat across tables."""
    pub = load_published()
    hit = pub[
        (pub["paper"] == paper)
        & (pub["application"] == application)
        & (pub["dataset"] == dataset)
        & (pub["model"] == model)
        & (pub["protocol"] == protocol)
        & (pub["method"] == row)
        & (pub["metric"] == metric)
    ]
    return float(hit["value"].iloc[0]) if len(hit) else np.nan
