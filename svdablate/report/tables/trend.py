"""The per-epoch κ trend of a table row: a unicode sparkline on a log scale, or first → last.

A row's trend is, at each epoch, the median over its seeds of that epoch's median κ (the
`kappa_median` history of each run). Sparklines of one table share one log scale, so their
heights compare across rows as well as along a row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

BARS = "▁▂▃▄▅▆▇█"
MAX_WIDTH = 24  # characters; longer runs are binned into this many groups of epochs


def median_trend(history: pd.DataFrame, run_ids: Iterable[str]) -> tuple[float, ...]:
    """Median over runs at each epoch 0..last of `history` (run_id, step, value); NaN where no
    run logged a finite value. Empty when none of the runs has a history."""
    mine = history[history["run_id"].isin(list(run_ids))]
    mine = mine[np.isfinite(mine["value"]) & (mine["value"] > 0)]
    if mine.empty:
        return ()
    per_epoch = mine.groupby("step")["value"].median()
    epochs = range(int(per_epoch.index.max()) + 1)
    return tuple(float(per_epoch.get(e, np.nan)) for e in epochs)


def _finite_logs(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(arr)
    return np.where(np.isfinite(logs), logs, np.nan)


def log_range(trends: Iterable[Sequence[float]]) -> tuple[float, float] | None:
    """(min, max) of log10 over every finite value of the trends; None when there is none."""
    logs = [_finite_logs(t) for t in trends if len(t)]
    values = np.concatenate(logs) if logs else np.array([])
    values = values[np.isfinite(values)]
    return (float(values.min()), float(values.max())) if len(values) else None


def binned(values: Sequence[float], width: int = MAX_WIDTH) -> tuple[np.ndarray, int]:
    """log10 of the values in at most `width` contiguous groups (median of each group), and
    how many epochs one group holds (the last group may hold fewer)."""
    logs = _finite_logs(values)
    per_bin = max(1, math.ceil(len(logs) / width))
    groups = [logs[i : i + per_bin] for i in range(0, len(logs), per_bin)]
    medians = [np.nanmedian(g) if np.isfinite(g).any() else np.nan for g in groups]
    return np.asarray(medians, dtype=float), per_bin


def sparkline(values: Sequence[float], scale: tuple[float, float] | None) -> str:
    """One bar per epoch (or group of epochs), height ∝ log10 κ within `scale`; ' ' where no
    value. The lowest bar when the scale is a single point."""
    if not len(values) or scale is None:
        return ""
    low, high = scale
    logs, _ = binned(values)
    span = high - low
    bars = []
    for x in logs:
        if not np.isfinite(x):
            bars.append(" ")
            continue
        level = 0 if span <= 0 else round((x - low) / span * (len(BARS) - 1))
        bars.append(BARS[min(max(level, 0), len(BARS) - 1)])
    return "".join(bars)


def first_last(values: Sequence[float]) -> str:
    """'1.2e+12 → 3.4e+06 (15 epochs)': the first and last epochs with a value (plain text)."""
    finite = [(i, v) for i, v in enumerate(values) if np.isfinite(v) and v > 0]
    if not finite:
        return ""
    (_, first), (_, last) = finite[0], finite[-1]
    return f"{first:.1e} → {last:.1e} ({len(values)} epochs)"


def series_text(values: Sequence[float]) -> str:
    """Every epoch's value, ';'-joined with 4 significant digits ('' for an epoch without)."""
    return ";".join(f"{v:.4g}" if np.isfinite(v) else "" for v in values)
