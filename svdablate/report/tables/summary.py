"""Per-row statistics over seeds, and the demo's summary table built from them.

Every statistic takes finished runs only (diverged, failed and running runs are counted, never
averaged) in the canonical order of `runs.canonical_order`, so a table does not depend on the
order the store returned the runs in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from svdablate.report.claims.verdicts import table_claims
from svdablate.report.reading.runs import deduplicate
from svdablate.report.tables import fidelity, notes
from svdablate.report.tables.rows import baseline_row, ordered_rows, row_methods, variant_rows
from svdablate.report.tables.stats import compare
from svdablate.report.tables.table import Column, ReportTable
from svdablate.report.tables.trend import median_trend
from svdablate.schema import Metric, TrialStatus

#: `metric` of the report API -> (top-1, top-5) error metric of a run.
ERROR_METRICS = {
    "best": (Metric.BEST_VAL_ERR, Metric.BEST_VAL_ERR5),
    "final": (Metric.FINAL_VAL_ERR, Metric.FINAL_VAL_ERR5),
}


def error_metrics(metric: str) -> tuple[str, str]:
    """The (top-1, top-5) error metric keys of `metric` ('best' or 'final')."""
    if metric not in ERROR_METRICS:
        raise ValueError(f"unknown metric {metric!r}: use one of {', '.join(ERROR_METRICS)}")
    return ERROR_METRICS[metric]


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished runs (their order kept)."""
    return runs[runs["status"] == TrialStatus.FINISHED]


def finished_values(runs: pd.DataFrame, key: str, *, accuracy: bool = False) -> np.ndarray:
    """The metric over finished runs, in the runs' order, NaNs dropped; 100 - it for accuracy."""
    values = finished(runs)[key].astype(float).dropna().to_numpy()
    return 100.0 - values if accuracy else values


def mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else np.nan


def std(values: np.ndarray) -> float:
    """Sample standard deviation (ddof 1); NaN below two values."""
    return float(np.std(values, ddof=1)) if len(values) >= 2 else np.nan


def minimum(values: np.ndarray) -> float:
    return float(np.min(values)) if len(values) else np.nan


def kappa_median(runs: pd.DataFrame) -> float:
    """Median over finished runs of their last epoch's median κ (finite values only)."""
    kappas = finished_values(runs, Metric.FINAL_KAPPA)
    kappas = kappas[np.isfinite(kappas)]
    return float(np.median(kappas)) if len(kappas) else np.nan


def kappa_trend(runs: pd.DataFrame, history: pd.DataFrame | None) -> tuple[float, ...]:
    """Median over the finished runs of each epoch's κ (`trend.median_trend`); () without."""
    if history is None:
        return ()
    return median_trend(history, finished(runs)["run_id"])


def failures(runs: pd.DataFrame) -> float:
    """Solver failures summed over all the runs (NaN when none logged a count)."""
    return float(runs[Metric.FAILURES_TOTAL].astype(float).sum(min_count=1))


def _row_statistics(
    runs: pd.DataFrame,
    base_sample: np.ndarray,
    *,
    is_base: bool,
    error: str,
    history: pd.DataFrame | None,
) -> dict[str, object]:
    sample = finished_values(runs, error)
    comp = compare(sample, base_sample, is_baseline=is_base)
    return {
        "seeds": len(runs),
        "n": len(sample),
        **{s: int((runs["status"] == s).sum()) for s in notes.EXCLUDED},
        "val_err_mean": mean(sample),
        "val_err_std": std(sample),
        "val_err_min": minimum(sample),
        "kappa": kappa_median(runs),
        "kappa_trend": kappa_trend(runs, history),
        "failures": failures(runs),
        "p_value": comp.p_value,
        "ci_low": comp.ci_low,
        "ci_high": comp.ci_high,
        "stat_note": comp.note,
    }


SUMMARY_COLUMNS = (
    "seeds", "n", *notes.EXCLUDED, "val_err_mean", "val_err_std", "val_err_min", "kappa",
    "kappa_trend", "failures", "p_value", "ci_low", "ci_high", "stat_note",
)  # fmt: skip


def summary_table(
    runs_df: pd.DataFrame,
    rows_order: Sequence[str],
    *,
    baseline: str | None = None,
    metric: str = "best",
    kappa_history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per row: validation error over seeds and the study's health, numbers only.

    De-duplicates first (by row, seed, config hash; newest finished run kept). Columns
    (SUMMARY_COLUMNS): seeds (runs after de-duplication), n (finished runs with an error value,
    the statistics' sample), diverged, failed, running, val_err_mean, val_err_std (ddof 1),
    val_err_min of the `metric` error ('best' epoch or 'final'), kappa (median over finished
    runs of final_kappa), kappa_trend (per-epoch median κ over seeds from `kappa_history`; ()
    without), failures (sum of failures_total), p_value (Welch vs the baseline), ci_low, ci_high
    (bootstrap 95% CI of mean(row) - mean(baseline)), stat_note ('baseline', 'n<2', 'sd=0' or
    ''). Index: row in `rows_order` (rows seen only in the runs follow); a row whose runs differ
    in dataset, model, protocol or precision is split, e.g. 'MPN-COV (float32)'.
    attrs: baseline, loaded, dropped, metric.
    """
    error, _ = error_metrics(metric)
    runs, dropped = deduplicate(runs_df)
    methods = row_methods(runs)
    runs, labels = variant_rows(runs, ordered_rows(rows_order, runs))
    row_of = dict(zip(runs["label"], runs["row"], strict=True))
    base = baseline if baseline is not None else baseline_row(labels, methods, row_of)
    base_sample = finished_values(runs[runs["label"] == base], error)
    records = {
        label: _row_statistics(
            runs[runs["label"] == label],
            base_sample,
            is_base=label == base,
            error=error,
            history=kappa_history,
        )
        for label in labels
    }
    frame = pd.DataFrame.from_dict(records, orient="index", columns=list(SUMMARY_COLUMNS))
    frame.index.name = "row"
    frame.attrs.update(baseline=base, loaded=len(runs_df), dropped=dropped, metric=metric)
    return frame


def _unique(runs: pd.DataFrame, column: str) -> str:
    values = {v for v in runs[column].astype(str) if v}
    return values.pop() if len(values) == 1 else ""


def stat_columns(group: str, prefix: str = "", total: str = "seeds") -> list[Column]:
    """n (finished / `total` runs), Welch p and bootstrap CI columns, keys prefixed by `prefix`."""
    return [
        Column(f"{prefix}n", "n", group=group, fmt="frac", key2=f"{prefix}{total}", kind="count"),
        Column(f"{prefix}p_value", "p (Welch)", group, "p", f"{prefix}stat_note", kind="stat"),
        Column(f"{prefix}ci_low", "95% CI Δ", group, "ci", f"{prefix}ci_high", kind="stat"),
    ]


def kappa_columns(group: str, prefix: str = "", *, trend: bool) -> list[Column]:
    """κ (not ranked: the papers rank errors only) and, with histories, its per-epoch trend."""
    columns = [Column(f"{prefix}kappa", "κ", group, fmt="sci")]
    if trend:
        columns.append(Column(f"{prefix}kappa_trend", "κ trend", group, fmt="trend", kind="trend"))
    return columns


def summary_report(
    runs_df: pd.DataFrame,
    rows_order: Sequence[str],
    *,
    metric: str = "best",
    kappa_history: pd.DataFrame | None = None,
) -> ReportTable:
    """The demo summary as a ReportTable, with the papers' claims its rows can test."""
    summary = summary_table(runs_df, rows_order, metric=metric, kappa_history=kappa_history)
    runs, _ = deduplicate(runs_df)
    values = summary.reset_index()
    values.insert(0, "section", "")
    columns = [
        Column("val_err_mean", "val err (%)", fmt="pm", key2="val_err_std", better="min"),
        Column("val_err_min", "min", better="min"),
        *kappa_columns("", trend=kappa_history is not None),
        Column("failures", "failures", fmt="int", kind="count"),
        Column(TrialStatus.DIVERGED, TrialStatus.DIVERGED, fmt="int", kind="count"),
    ]
    columns += [
        Column(s, s, fmt="int", kind="count")
        for s in (TrialStatus.FAILED, TrialStatus.RUNNING, TrialStatus.INTERRUPTED)
        if summary[s].sum()
    ]
    columns += stat_columns("")
    table_notes = [notes.dedup_note(len(runs_df), summary.attrs["dropped"])]
    for label, rec in summary.iterrows():
        listed = [f"{int(rec[s])} {s}" for s in notes.EXCLUDED if rec[s]]
        if listed:
            table_notes.append(
                f"{label}: {', '.join(listed)} (excluded from mean, std, min, p, CI)."
            )
    table_notes += [
        notes.error_note(metric),
        notes.kappa_note(summary["kappa_trend"] if kappa_history is not None else None),
        notes.stats_note(summary.attrs["baseline"]),
        notes.rank_note(4),
        *fidelity.caption_notes(runs, rows_order),
    ]
    where = [_unique(runs, k) for k in ("application", "model", "dataset")]
    context = f" ({', '.join(p for p in where if p)})" if any(where) else ""
    ow = notes.ow_caption(str(runs_df.attrs.get("ow_map", "")), list(runs["row"]))
    title = f"{metric.capitalize()}-epoch validation error (%) over seeds{context}{ow}"
    claims = table_claims(
        runs, list(dict.fromkeys(runs["row"])), metric=metric, kappa_history=kappa_history
    )
    return ReportTable("summary", title, columns, values, 4, table_notes, claims, metric)
