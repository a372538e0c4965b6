"""Figures of a study: κ over training (ECCV'22 Figs. 1-5) and validation error over epochs.

Per row, the median across seeds per epoch with a min-max band, from each child run's metric
history. Every de-duplicated run with a history is plotted (so a study can be watched while it
runs); at each epoch the band spans the runs that reached it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from svdablate.report.attach import attach_to_parents, print_warning
from svdablate.report.reading.parents import parent_info, resolve_parents
from svdablate.report.reading.runs import deduplicate, load_runs, metric_histories
from svdablate.report.render.palette import LINE_HUES, LINE_STYLES, OKABE_ITO
from svdablate.report.tables.rows import ordered_rows, variant_rows
from svdablate.schema import Metric

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# metric history -> (file stem, y label, log scale, title)
FIGURES = {
    Metric.KAPPA_MEDIAN: (
        "kappa",
        "κ = λmax/λmin of P (median over the epoch)",
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


@dataclass
class StudyFigures:
    """The study's figures (file stem -> Figure) and the curves they draw (stem -> row ->
    `row_curves`), rows in table order."""

    rows: list[str]
    curves: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    _png: dict[str, bytes] = field(default_factory=dict, repr=False)

    def png(self, stem: str) -> bytes:
        """The figure as PNG bytes (drawn once: the page embeds what publish attaches)."""
        if stem not in self._png:
            buffer = io.BytesIO()
            self.figures[stem].savefig(buffer, format="png", dpi=DPI)
            self._png[stem] = buffer.getvalue()
        return self._png[stem]


DPI = 150


def _draw(curves: dict[str, dict[str, Any]], ylabel: str, log: bool, title: str) -> Figure:
    """The figure, drawn with the Agg canvas (no pyplot, no global backend change); a row's
    colour (Okabe–Ito) and dash pattern both tell it apart."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # 0.6 s: only when drawing
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, (row, data) in enumerate(curves.items()):
        epochs = np.asarray(data["epochs"])
        colour = OKABE_ITO[LINE_HUES[i % len(LINE_HUES)]]
        style = LINE_STYLES[i % len(LINE_STYLES)]
        ax.plot(epochs, data["median"], label=row, color=colour, linestyle=style, linewidth=1.6)
        ax.fill_between(epochs, data["min"], data["max"], color=colour, alpha=0.18)
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


def study_figures(
    runs_df: pd.DataFrame, histories: dict[str, pd.DataFrame], preset: str
) -> StudyFigures:
    """κ (log scale) and validation error over epochs per row, from the study's runs
    (`load_runs`) and their metric histories (metric -> `metric_histories` of the runs kept
    by `deduplicate`). Rows whose runs differ in dataset, model, protocol or precision are split
    as in `summary_table`."""
    runs, _ = deduplicate(runs_df)
    runs, rows = variant_rows(runs, ordered_rows(runs_df.attrs["rows"], runs))
    result = StudyFigures(rows)
    for metric, (stem, ylabel, log, what) in FIGURES.items():
        curves = study_curves(runs, rows, histories[metric])
        result.curves[stem] = curves
        title = f"{preset or 'study'}: {what} (median, min-max over seeds)"
        result.figures[stem] = _draw(curves, ylabel, log, title)
    return result


def figure_histories(tracking_uri: str | None, runs_df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The metric histories the figures draw, of the runs `deduplicate` keeps."""
    kept, _ = deduplicate(runs_df)
    return {metric: metric_histories(tracking_uri, kept["run_id"], metric) for metric in FIGURES}


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
    runs = load_runs(tracking_uri, parents)
    _, dropped = deduplicate(runs)
    preset = str(parent_info(tracking_uri, parents[0])["preset"])
    drawn = study_figures(runs, figure_histories(tracking_uri, runs), preset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"rows": drawn.rows, "paths": [], "dropped": dropped, "warnings": []}
    for stem, fig in drawn.figures.items():
        result[stem] = drawn.curves[stem]
        for ext in FORMATS:
            path = out / f"{stem}.{ext}"
            fig.savefig(path, dpi=DPI)
            result["paths"].append(path)
    if log_artifacts:
        print_warning(attach_to_parents(tracking_uri, parents, result["paths"]), result["warnings"])
    return result
