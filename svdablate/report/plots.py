"""Figures of a study: κ over training (ECCV'22 Figs. 1-5) and validation error over epochs.

Per row, the median across seeds per epoch with a min-max band, from each child run's metric
history. Every de-duplicated run with a history is plotted (so a study can be watched while it
runs); at each epoch the band spans the runs that reached it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from svdablate.schema import Metric

from .api import attach_to_parents, print_warning
from .parents import parent_info, resolve_parents
from .rows import ordered_rows, variant_rows
from .runs import deduplicate, load_runs, metric_histories

# metric history -> (file stem, y label, log scale, title)
FIGURES = {
    Metric.KAPPA_MEDIAN: (
        "kappa",
        "κ = λmax/λmin of the batch covariance P (median over the epoch)",
        True,
        "covariance κ",
    ),
    Metric.VAL_ERR: ("val_err", "validation error (%)", False, "validation error"),
}
FORMATS = ("png", "pdf")


def row_curves(histories: dict[str, pd.Series]) -> dict[str, Any]:
    """Median, min and max across runs at each epoch of the runs' histories (run id -> Series).

    Non-finite values are ignored. Returns epochs, median, min, max (lists) and the per-run
    series (run id -> {epoch: value}).
    """
    frame = pd.DataFrame(histories).sort_index()
    frame = frame.where(np.isfinite(frame.astype(float)))
    frame = frame.dropna(how="all")
    return {
        "epochs": [int(e) for e in frame.index],
        "median": frame.median(axis=1).tolist(),
        "min": frame.min(axis=1).tolist(),
        "max": frame.max(axis=1).tolist(),
        "runs": {
            rid: {int(k): float(v) for k, v in s.dropna().items()} for rid, s in frame.items()
        },
    }


def study_curves(
    runs: pd.DataFrame, rows: Sequence[str], history: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """For each row label (runs' 'label' column) with any history: `row_curves` of its runs.

    history: `runs.metric_histories` of the runs (run_id, step, value).
    """
    series = {
        rid: part.set_index("step")["value"] for rid, part in history.groupby("run_id", sort=False)
    }
    curves = {}
    for row in rows:
        mine = {
            rid: series[rid] for rid in runs.loc[runs["label"] == row, "run_id"] if rid in series
        }
        if mine:
            curves[row] = row_curves(mine)
    return curves


def _draw(curves: dict[str, dict[str, Any]], ylabel: str, log: bool, title: str) -> Figure:
    """The figure, drawn with the Agg canvas (no pyplot, no global backend change)."""
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for row, data in curves.items():
        epochs = np.asarray(data["epochs"])
        (line,) = ax.plot(epochs, data["median"], label=row, linewidth=1.5)
        ax.fill_between(epochs, data["min"], data["max"], color=line.get_color(), alpha=0.2)
    if log:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize="medium")
    ax.grid(True, which="major", alpha=0.3)
    if curves:
        ax.legend(fontsize="small")
    return fig


def _save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    paths = []
    for ext in FORMATS:
        path = out_dir / f"{stem}.{ext}"
        fig.savefig(path, dpi=150)
        paths.append(path)
    return paths


def plot_study(
    tracking_uri: str | None,
    parent_run_id: str | Sequence[str] | None,
    out_dir: str | Path,
    *,
    experiment: str | None = None,
    log_artifacts: bool = True,
) -> dict[str, Any]:
    """Plot κ (log scale) and validation error over epochs per row; PNG and PDF in `out_dir`.

    Returns {"kappa": {row: curves}, "val_err": {row: curves}, "paths": [files], "rows": [...],
    "dropped": duplicates dropped, "warnings": [lines]}; curves as in `row_curves`. Rows whose
    runs differ in dataset, model, protocol or precision are split as in `summary_table`. With
    log_artifacts the files are attached to every parent run under `report/`; a read-only store
    skips that with one warning line on stderr (also in "warnings").
    """
    parents = resolve_parents(tracking_uri, parent_run_id, experiment)
    runs, dropped = deduplicate(load_runs(tracking_uri, parents))
    runs, rows = variant_rows(runs, ordered_rows(runs.attrs["rows"], runs))
    preset = parent_info(tracking_uri, parents[0])["preset"] or "study"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"rows": rows, "paths": [], "dropped": dropped, "warnings": []}
    for metric, (stem, ylabel, log, what) in FIGURES.items():
        curves = study_curves(runs, rows, metric_histories(tracking_uri, runs["run_id"], metric))
        title = f"{preset}: {what} (median, min-max over seeds)"
        result[stem] = curves
        result["paths"] += _save(_draw(curves, ylabel, log, title), out, stem)
    if log_artifacts:
        print_warning(attach_to_parents(tracking_uri, parents, result["paths"]), result["warnings"])
    return result
