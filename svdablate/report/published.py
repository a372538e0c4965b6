"""The papers' printed numbers (published.csv) and the map from our row labels to their names."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

PAPERS = ("eccv22", "iccv21")
TREATMENT_ORDER = ("NOG", "SN", "OL", "OW", "OLR")

# Every spelling of a meta-layer we accept (lower case, spaces and underscores as '-') ->
# canonical method name (docs/internals.md).
_METHOD_ALIASES = {
    "svd": "svd",
    "mpn-cov": "svd",
    "mpncov": "svd",
    "ns": "ns",
    "newton-schulz": "ns",
    "newton-schulz-iteration": "ns",
    "isqrt-cov": "ns",
    "isqrt": "ns",
    "svd-pade": "svd-pade",
    "svd-padé": "svd-pade",
    "svd-taylor": "svd-taylor",
    "svd-newton": "svd-newton",
    "svd-trunc": "svd-trunc",
    "svd-topn": "svd-topn",
    "svd-pi": "svd-pi",
    "mpa-lya": "mpa-lya",
    "vanilla": "vanilla",
}
# Canonical method -> the name each paper prints (and published.csv uses).
_PAPER_NAMES = {
    "eccv22": {"svd": "SVD", "ns": "NS"},
    "iccv21": {"svd": "MPN-COV", "ns": "iSQRT-COV"},
}
_COMMON_NAMES = {
    "svd-pade": "SVD-Pade",
    "svd-taylor": "SVD-Taylor",
    "svd-newton": "SVD-Newton",
    "svd-trunc": "SVD-Trunc",
    "svd-topn": "SVD-TopN",
    "svd-pi": "SVD-PI",
    "mpa-lya": "MPA-Lya",
    "vanilla": "vanilla",
}


@lru_cache(maxsize=1)
def load_published() -> pd.DataFrame:
    """published.csv (shipped with the package) with empty text cells as ''."""
    with resources.files("svdablate.report").joinpath("published.csv").open("r") as fh:
        frame = pd.read_csv(fh, dtype={"table": int, "value": float}, keep_default_na=False)
    text = ["paper", "application", "dataset", "model", "protocol", "method", "metric"]
    frame[text] = frame[text].astype(str)
    return frame


def canonical_method(name: str) -> str | None:
    """Canonical method for a meta-layer name in any of our or the papers' spellings."""
    key = re.sub(r"[\s_]+", "-", name.strip().lower())
    return _METHOD_ALIASES.get(key)


def split_row(label: str) -> tuple[str | None, tuple[str, ...]]:
    """`SVD+NOG+OW` -> ('svd', ('NOG', 'OW')); treatments in canonical order, method canonical."""
    parts = [p.strip() for p in label.split("+") if p.strip()]
    if not parts:
        return None, ()
    treatments = [p.upper() for p in parts[1:]]
    known = [t for t in TREATMENT_ORDER if t in treatments]
    unknown = sorted(t for t in treatments if t not in TREATMENT_ORDER)
    return canonical_method(parts[0]), (*known, *unknown)


def paper_row_name(label: str, paper: str) -> str:
    """The name `paper` gives our row `label` (e.g. 'NS' -> 'iSQRT-COV' in iccv21).

    A label whose meta-layer is unknown is returned unchanged (it then matches nothing).
    """
    method, treatments = split_row(label)
    if method is None:
        return label
    base = _PAPER_NAMES.get(paper, {}).get(method) or _COMMON_NAMES.get(method) or label
    return "+".join([base, *treatments])


def is_baseline(label: str) -> bool:
    """True for the plain SVD row (SVD / MPN-COV without treatments)."""
    return split_row(label) == ("svd", ())


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
    """The paper's number for this cell, NaN when the paper prints none (never guessed).

    Matching ignores the table number: the same experiment's numbers repeat across tables.
    """
    pub = load_published()
    hit = pub[
        (pub["paper"] == paper)
        & (pub["application"] == application)
        & (pub["dataset"] == dataset)
        & (pub["model"] == model)
        & (pub["protocol"] == protocol)
        & (pub["method"] == paper_row_name(row, paper))
        & (pub["metric"] == metric)
    ]
    return float(hit["value"].iloc[0]) if len(hit) else np.nan
