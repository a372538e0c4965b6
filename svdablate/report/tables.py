"""Runs -> tables: the demo summary and the papers' layouts (ECCV'22 Tables 1-5, ICCV'21 2-5)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .published import is_baseline, paper_row_name, published_value, split_row
from .runs import deduplicate
from .stats import compare
from .table import Column, ReportTable

DATASET_LABELS = {
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "imagenet": "ImageNet",
    "cub200": "Birds",
    "dogs": "Dogs",
    "cars": "Cars",
    "digits": "digits",
}
MODEL_LABELS = {
    "resnet18": "ResNet-18",
    "resnet50": "ResNet-50",
    "resnet101": "ResNet-101",
    "alexnet": "AlexNet",
    "convnet": "ConvNet",
}
ECCV22_T4_ROWS = (
    "SVD",
    "SVD+SN",
    "SVD+OL",
    "SVD+OW",
    "SVD+NOG",
    "SVD+OLR",
    "SVD+NOG+OW",
    "SVD+NOG+OW+OLR",
    "NS",
)
ECCV22_T1_ROWS = ("SVD", "SVD+SN", "SVD+OL", "SVD+OW", "NS")
ECCV22_T2_ROWS = ("SVD", "SVD+NOG", "SVD+NOG+SN", "SVD+NOG+OL", "SVD+NOG+OW", "NS")
ECCV22_T3_ROWS = ("SVD", "SVD+OLR", "SVD+NOG+OLR", "SVD+OW+OLR", "SVD+NOG+OW+OLR", "NS")
ICCV21_ROWS = (
    "iSQRT-COV",
    "SVD-Pade",
    "SVD-Taylor",
    "SVD-Newton",
    "SVD-Trunc",
    "SVD-TopN",
    "MPN-COV",
    "vanilla",
)


# --------------------------------------------------------------------------- run subsets


def finished_values(runs: pd.DataFrame, metric: str, *, accuracy: bool = False) -> np.ndarray:
    """The metric over finished runs (diverged, failed, running excluded), NaNs dropped."""
    values = runs.loc[runs["status"] == "finished", metric].astype(float).dropna().to_numpy()
    return 100.0 - values if accuracy else values


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) >= 2 else np.nan


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else np.nan


def _min(values: np.ndarray) -> float:
    return float(np.min(values)) if len(values) else np.nan


def _count(runs: pd.DataFrame, status: str) -> int:
    return int((runs["status"] == status).sum())


def ordered_rows(rows_order: Sequence[str], runs: pd.DataFrame) -> list[str]:
    """The study's rows in table order, then any row seen only in the runs."""
    rows = list(dict.fromkeys(rows_order))
    rows.extend(r for r in dict.fromkeys(runs["row"]) if r not in rows)
    return rows


def baseline_row(rows: Sequence[str], row_of: dict[str, str] | None = None) -> str | None:
    """The SVD row (SVD / MPN-COV without treatments), else the first row.

    `row_of` maps display labels (e.g. 'MPN-COV (float32)') to their row.
    """
    for row in rows:
        if is_baseline((row_of or {}).get(row, row)):
            return row
    return rows[0] if rows else None


def _unique(runs: pd.DataFrame, column: str) -> str:
    values = {v for v in runs[column].astype(str) if v}
    return values.pop() if len(values) == 1 else ""


VARIANT_AXES = ("dataset", "model", "protocol", "precision")


def variant_rows(runs: pd.DataFrame, rows: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Label each run by its row plus the axes that vary in the study ('NS (float32)').

    Returns the runs with a 'label' column and the labels in row order (rows without runs keep
    their plain name).
    """
    axes = [a for a in VARIANT_AXES if a in runs and runs[a].astype(str).nunique() > 1]
    if not axes:
        return runs.assign(label=runs["row"]), list(rows)
    suffix = runs[axes].astype(str).agg(", ".join, axis=1)
    labelled = runs.assign(label=runs["row"] + " (" + suffix + ")")
    labels: list[str] = []
    for row in rows:
        mine = list(dict.fromkeys(labelled.loc[labelled["row"] == row, "label"]))
        labels.extend(sorted(mine) or [row])
    return labelled, labels


def _dedup(runs: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    kept, dropped = deduplicate(runs)
    return kept, dropped, len(runs)


def _dedup_note(loaded: int, dropped: int) -> str:
    return (
        f"{loaded} runs loaded; {dropped} duplicate(s) of (row, seed, config hash) dropped, "
        "keeping the newest finished run."
    )


def _exclusion_note(where: str, runs: pd.DataFrame) -> str | None:
    parts = [f"{_count(runs, s)} {s}" for s in ("diverged", "failed", "running") if _count(runs, s)]
    if not parts:
        return None
    return f"{where}: {', '.join(parts)} (excluded from the statistics)."


# --------------------------------------------------------------------------- demo summary


def summary_table(
    runs_df: pd.DataFrame, rows_order: Sequence[str], *, baseline: str | None = None
) -> pd.DataFrame:
    """Per row: validation error over seeds and the study's health, numbers only.

    De-duplicates first (by row, seed, config hash; newest finished run kept). Columns:
    seeds (runs after de-duplication), n (finished runs with a final_val_err, the statistics'
    sample), diverged, failed, running, val_err_mean, val_err_std (ddof 1), val_err_min,
    kappa (median of final_kappa over finished runs), failures (sum of failures_total over all
    runs), p_value (Welch vs the baseline), ci_low, ci_high (bootstrap 95% CI of the mean
    difference row - baseline), stat_note ('baseline', 'n<2', 'sd=0' or ''). Index: row, in
    `rows_order` (rows seen only in the runs follow); a row whose runs differ in dataset, model,
    protocol or precision is split, e.g. 'MPN-COV (float32)'. attrs: baseline, loaded, dropped.
    """
    runs, dropped, loaded = _dedup(runs_df)
    runs, rows = variant_rows(runs, ordered_rows(rows_order, runs))
    row_of = dict(zip(runs["label"], runs["row"], strict=True))
    base = baseline if baseline is not None else baseline_row(rows, row_of)
    base_sample = finished_values(runs[runs["label"] == base], "final_val_err")
    records = []
    for row in rows:
        sub = runs[runs["label"] == row]
        sample = finished_values(sub, "final_val_err")
        kappas = finished_values(sub, "final_kappa")
        comp = compare(sample, base_sample, is_baseline=row == base)
        records.append(
            {
                "row": row,
                "seeds": len(sub),
                "n": len(sample),
                "diverged": _count(sub, "diverged"),
                "failed": _count(sub, "failed"),
                "running": _count(sub, "running"),
                "val_err_mean": _mean(sample),
                "val_err_std": _std(sample),
                "val_err_min": _min(sample),
                "kappa": float(np.median(kappas)) if len(kappas) else np.nan,
                "failures": float(sub["failures_total"].astype(float).sum(min_count=1)),
                "p_value": comp.p_value,
                "ci_low": comp.ci_low,
                "ci_high": comp.ci_high,
                "stat_note": comp.note,
            }
        )
    frame = pd.DataFrame.from_records(records).set_index("row") if records else _empty_summary()
    frame.attrs.update(baseline=base, loaded=loaded, dropped=dropped)
    return frame


def _empty_summary() -> pd.DataFrame:
    columns = ["seeds", "n", "diverged", "failed", "running", "val_err_mean", "val_err_std"]
    columns += ["val_err_min", "kappa", "failures", "p_value", "ci_low", "ci_high", "stat_note"]
    return pd.DataFrame(columns=columns, index=pd.Index([], name="row"))


def summary_report(
    runs_df: pd.DataFrame, rows_order: Sequence[str], *, baseline: str | None = None
) -> ReportTable:
    """The demo summary as a ReportTable (the paper layouts carry the published columns)."""
    summary = summary_table(runs_df, rows_order, baseline=baseline)
    runs, _ = deduplicate(runs_df)
    context = {k: _unique(runs, k) for k in ("application", "dataset", "model")}
    return summary_frame_report(summary, context)


def summary_frame_report(
    summary: pd.DataFrame, context: dict[str, str] | None = None
) -> ReportTable:
    """A `summary_table` frame as a ReportTable."""
    values = summary.rename_axis("row").reset_index()
    values.insert(0, "section", "")
    columns = [
        Column("val_err_mean", "val err (%)", fmt="pm", key2="val_err_std", better="min"),
        Column("val_err_min", "min", better="min"),
        Column("kappa", "final κ", fmt="sci", kind="count"),
        Column("failures", "failures", fmt="int", kind="count"),
        Column("diverged", "diverged", fmt="int", kind="count"),
    ]
    columns += [
        Column(s, s, fmt="int", kind="count") for s in ("failed", "running") if summary[s].sum()
    ]
    columns += _stat_columns("", "n", "seeds", "p_value", "stat_note", "ci_low", "ci_high")
    notes = [_dedup_note(summary.attrs.get("loaded", 0), summary.attrs.get("dropped", 0))]
    for row, rec in summary.iterrows():
        parts = [f"{int(rec[s])} {s}" for s in ("diverged", "failed", "running") if rec[s]]
        if parts:
            notes.append(f"{row}: {', '.join(parts)} (excluded from mean, std, min, p, CI).")
    notes += [_stats_note(summary.attrs.get("baseline")), _rank_note(4)]
    return ReportTable("summary", _summary_title(context or {}), columns, values, 4, notes)


def _stat_columns(
    group: str, n: str, total: str, p: str, note: str, low: str, high: str
) -> list[Column]:
    return [
        Column(n, "n", group=group, fmt="frac", key2=total, kind="count"),
        Column(p, "p (Welch)", group=group, fmt="p", key2=note, kind="stat"),
        Column(low, "95% CI Δ", group=group, fmt="ci", key2=high, kind="stat"),
    ]


def _summary_title(context: dict[str, str]) -> str:
    parts = [context.get(k, "") for k in ("application", "model", "dataset")]
    where = f" ({', '.join(p for p in parts if p)})" if any(parts) else ""
    return f"Validation error (%) over seeds{where}"


def _stats_note(baseline: str | None) -> str:
    return (
        f"p: Welch's t-test vs {baseline}; 95% CI Δ: bootstrap (percentile, 9999 resamples, "
        f"seed 0) of mean(row) - mean({baseline}); n: finished runs / runs."
    )


def _paper_label(paper: str | None) -> str:
    return {"eccv22": "ECCV'22", "iccv21": "ICCV'21"}.get(paper or "", str(paper))


# --------------------------------------------------------------------------- paper layouts


@dataclass(frozen=True)
class MetricSpec:
    """A measured quantity of a layout and the published metric it is compared with."""

    metric: str
    header: str
    better: str
    paper_metric: str | None = None
    paper_std: str | None = None
    stat: str = "mean"  # mean (shown with ± std) or min
    accuracy: bool = False  # display 100 - error
    fmt: str = "pm"

    @property
    def name(self) -> str:
        """Column key stem: the published metric's name, else metric_stat."""
        return self.paper_metric or f"{self.metric}_{self.stat}"


@dataclass(frozen=True)
class GroupSpec:
    """Columns under one spanning header, computed on the runs that match `filters`."""

    label: str
    filters: tuple[tuple[str, str], ...]
    metrics: tuple[MetricSpec, ...]
    stats_on: int | None = 0  # index in metrics of the Welch/bootstrap metric, None: no stats
    paper_protocol: str | None = None  # published protocol when it differs from the runs'

    @property
    def slug(self) -> str:
        """Key prefix of the group's columns (e.g. 'cifar100', 'hybrid_final')."""
        return re.sub(r"[^0-9a-z]+", "_", self.label.lower()).strip("_") or "all"


@dataclass(frozen=True)
class Layout:
    """A paper table: rows in the paper's order, column groups and row sections."""

    name: str
    title: str
    paper: str
    top_k: int
    paper_rows: tuple[str, ...]
    restrict: bool
    groups: Callable[[pd.DataFrame], list[GroupSpec]]
    sections: Callable[[pd.DataFrame], list[tuple[str, tuple[tuple[str, str], ...]]]]


def _no_sections(runs: pd.DataFrame) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    return [("", ())]


def _model_sections(runs: pd.DataFrame) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    order = ["resnet50", "resnet101"]
    models = _ordered(runs["model"], order)
    return [(MODEL_LABELS.get(m, m), (("model", m),)) for m in models] or [("", ())]


def _ordered(values: pd.Series, preferred: Sequence[str]) -> list[str]:
    present = [v for v in dict.fromkeys(values.astype(str)) if v]
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


_VAL_MEAN = MetricSpec("final_val_err", "mean ± std", "min", "val_err_mean", "val_err_std")
_VAL_MIN = MetricSpec("final_val_err", "min", "min", "val_err_min", stat="min", fmt="num")


def _eccv_dbn_groups(runs: pd.DataFrame) -> list[GroupSpec]:
    datasets = _ordered(runs["dataset"], ["cifar10", "cifar100"])
    return [
        GroupSpec(DATASET_LABELS.get(d, d), (("dataset", d),), (_VAL_MEAN, _VAL_MIN))
        for d in datasets
    ]


def _eccv_gcp_groups(runs: pd.DataFrame) -> list[GroupSpec]:
    metrics = (
        MetricSpec("failures_total", "failures", "min", "failures", fmt="count"),
        MetricSpec("final_val_err", "top-1 acc", "max", "top1_acc", accuracy=True),
        MetricSpec("final_val_err5", "top-5 acc", "max", "top5_acc", accuracy=True),
    )
    datasets = _ordered(runs["dataset"], ["imagenet"])
    return [
        GroupSpec(DATASET_LABELS.get(d, d), (("dataset", d),), metrics, stats_on=1)
        for d in datasets
    ]


def _iccv_alexnet_groups(runs: pd.DataFrame) -> list[GroupSpec]:
    final = (
        MetricSpec("final_val_err", "top-1", "min", "top1_err_final"),
        MetricSpec("final_val_err5", "top-5", "min", "top5_err_final"),
    )
    best = (
        MetricSpec("best_val_err", "top-1", "min", "top1_err_best"),
        MetricSpec("best_val_err5", "top-5", "min", "top5_err_best"),
    )
    return [
        GroupSpec("standalone final", (("protocol", "standalone"),), final),
        GroupSpec("hybrid final", (("protocol", "hybrid"),), final),
        GroupSpec("hybrid best", (("protocol", "hybrid"),), best, stats_on=None),
    ]


def _iccv_resnet_groups(runs: pd.DataFrame) -> list[GroupSpec]:
    metrics = (
        MetricSpec("final_val_err", "top-1", "min", "top1_err"),
        MetricSpec("final_val_err5", "top-5", "min", "top5_err"),
    )
    return [
        GroupSpec(p, (("protocol", p),), metrics)
        for p in _ordered(runs["protocol"], ["standalone", "hybrid"])
    ]


def _iccv_fgvc_groups(runs: pd.DataFrame) -> list[GroupSpec]:
    metrics = (
        MetricSpec("final_val_err", "final", "max", "acc_final", accuracy=True),
        MetricSpec("best_val_err", "best", "max", "acc_best", accuracy=True),
    )
    datasets = _ordered(runs["dataset"], ["cub200", "dogs", "cars"])
    return [
        GroupSpec(DATASET_LABELS.get(d, d), (("dataset", d),), metrics, paper_protocol="hybrid")
        for d in datasets
    ]


def _eccv_dbn(name: str, number: int, what: str, rows: tuple[str, ...], restrict: bool) -> Layout:
    title = f"ECCV'22 Table {number}: decorrelated BN, {what} - validation error (%)"
    return Layout(name, title, "eccv22", 4, rows, restrict, _eccv_dbn_groups, _no_sections)


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        _eccv_dbn("eccv22-t1", 1, "weight treatments", ECCV22_T1_ROWS, True),
        _eccv_dbn("eccv22-t2", 2, "gradient and weight treatments", ECCV22_T2_ROWS, True),
        _eccv_dbn("eccv22-t3", 3, "optimal lr and hybrid treatments", ECCV22_T3_ROWS, True),
        _eccv_dbn("eccv22-t4", 4, "all methods", ECCV22_T4_ROWS, False),
        Layout(
            "eccv22-t5",
            "ECCV'22 Table 5: GCP methods - failure times and validation accuracy (%)",
            "eccv22",
            4,
            ECCV22_T4_ROWS,
            False,
            _eccv_gcp_groups,
            _no_sections,
        ),
        Layout(
            "iccv21-t2",
            "ICCV'21 Table 2: AlexNet GCP - validation error (%), standalone and hybrid",
            "iccv21",
            3,
            ICCV21_ROWS,
            False,
            _iccv_alexnet_groups,
            _no_sections,
        ),
        Layout(
            "iccv21-t3",
            "ICCV'21 Table 3: ResNet GCP - validation error (%)",
            "iccv21",
            3,
            ICCV21_ROWS,
            False,
            _iccv_resnet_groups,
            _model_sections,
        ),
        Layout(
            "iccv21-t4",
            "ICCV'21 Table 4: fine-grained validation accuracy (%)",
            "iccv21",
            3,
            ICCV21_ROWS,
            False,
            _iccv_fgvc_groups,
            _no_sections,
        ),
    )
}
SPEED_LAYOUT = "iccv21-t5"
LAYOUT_NAMES = ("summary", *LAYOUTS, SPEED_LAYOUT)
PRESET_LAYOUTS = {
    "eccv22-dbn-cifar10": "eccv22-t4",
    "eccv22-dbn-cifar100": "eccv22-t4",
    "eccv22-gcp-imagenet": "eccv22-t5",
    "iccv21-gcp-alexnet": "iccv21-t2",
    "iccv21-gcp-resnet50": "iccv21-t3",
    "iccv21-fgvc": "iccv21-t4",
}


def default_layout(preset: str) -> str:
    """The paper table a preset reproduces ('summary' for demo and the rest)."""
    return PRESET_LAYOUTS.get(preset, "summary")


def _filter(runs: pd.DataFrame, filters: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    mask = pd.Series(True, index=runs.index)
    for column, value in filters:
        mask &= runs[column].astype(str) == value
    return runs[mask]


def layout_rows(layout: Layout, rows: Sequence[str]) -> list[str]:
    """Rows in the paper's order; rows the paper lacks follow (dropped when `restrict`)."""
    rank = {name: i for i, name in enumerate(layout.paper_rows)}
    known = sorted(
        (r for r in rows if paper_row_name(r, layout.paper) in rank),
        key=lambda r: rank[paper_row_name(r, layout.paper)],
    )
    extra = [] if layout.restrict else [r for r in rows if r not in known]
    return known + extra


def _group_runs(
    runs: pd.DataFrame, row: str, group: GroupSpec, notes: list[str], where: str
) -> pd.DataFrame:
    sub = _filter(runs[runs["row"] == row], group.filters)
    protocol = dict(group.filters).get("protocol")
    if sub.empty and protocol == "hybrid" and split_row(row)[0] == "ns":
        sub = _filter(runs[runs["row"] == row], (("protocol", "standalone"),))
        if not sub.empty:
            notes.append(f"{row} ({where}): the standalone runs (hybrid training starts with NS).")
    return sub


def _context(runs: pd.DataFrame, group: GroupSpec) -> dict[str, str]:
    context = {k: _unique(runs, k) for k in ("application", "dataset", "model", "protocol")}
    context["protocol"] = (
        group.paper_protocol or dict(group.filters).get("protocol") or context["protocol"]
    )
    return context


def _smoke(runs: pd.DataFrame) -> bool:
    return "smoke" in runs and bool(runs["smoke"].astype(bool).any())


def _metric_record(
    key: str, spec: MetricSpec, sub: pd.DataFrame, paper: str | None, row: str, ctx: dict[str, str]
) -> dict[str, float]:
    """Measured value (and std) of one cell; with `paper`, the published value and Δ."""
    values = finished_values(sub, spec.metric, accuracy=spec.accuracy)
    value = _min(values) if spec.stat == "min" else _mean(values)
    rec = {key: value, f"{key}.std": _std(values) if spec.stat == "mean" else np.nan}
    if spec.paper_metric:
        if paper is None:  # smoke runs: FakeData is not compared with the paper
            rec.update({f"{key}.paper": np.nan, f"{key}.paper_std": np.nan, f"{key}.diff": np.nan})
            return rec
        pub = published_value(paper=paper, row=row, metric=spec.paper_metric, **ctx)
        pub_std = (
            published_value(paper=paper, row=row, metric=spec.paper_std, **ctx)
            if spec.paper_std
            else np.nan
        )
        rec.update({f"{key}.paper": pub, f"{key}.paper_std": pub_std, f"{key}.diff": value - pub})
    return rec


def _layout_columns(layout: Layout, groups: list[GroupSpec]) -> list[Column]:
    columns: list[Column] = []
    for group in groups:
        g = group.slug
        for spec in group.metrics:
            key = f"{g}.{spec.name}"
            key2 = f"{key}.std" if spec.fmt == "pm" else None
            columns.append(Column(key, spec.header, group.label, spec.fmt, key2, spec.better))
            if spec.paper_metric:
                paper_fmt = "pm" if spec.paper_std else ("count" if spec.fmt == "count" else "num")
                paper_key2 = f"{key}.paper_std" if spec.paper_std else None
                columns.append(
                    Column(
                        f"{key}.paper", "paper", group.label, paper_fmt, paper_key2, kind="paper"
                    )
                )
                columns.append(Column(f"{key}.diff", "Δ", group.label, "signed", kind="diff"))
        if group.stats_on is not None:
            columns += _stat_columns(
                group.label,
                f"{g}.n",
                f"{g}.total",
                f"{g}.p_value",
                f"{g}.stat_note",
                f"{g}.ci_low",
                f"{g}.ci_high",
            )
    return columns


def _drop_blank_paper(columns: list[Column], values: pd.DataFrame) -> list[Column]:
    """Paper and Δ columns of a metric the paper prints for none of the rows are left out."""
    blank = {
        c.key.rsplit(".", 1)[0] for c in columns if c.kind == "paper" and values[c.key].isna().all()
    }
    return [
        c for c in columns if not (c.kind in ("paper", "diff") and c.key.rsplit(".", 1)[0] in blank)
    ]


def _row_record(
    layout: Layout,
    runs: pd.DataFrame,
    row: str,
    base: str | None,
    groups: list[GroupSpec],
    section: tuple[str, tuple[tuple[str, str], ...]],
    notes: list[str],
) -> dict[str, object]:
    label, filters = section
    in_section = _filter(runs, filters)
    rec: dict[str, object] = {"section": label, "row": row}
    for group in groups:
        g = group.slug
        where = " ".join(x for x in (label, group.label) if x)
        sub = _group_runs(in_section, row, group, notes, where)
        group_runs = _filter(in_section, group.filters)
        ctx = _context(group_runs, group)
        paper = None if _smoke(group_runs) else layout.paper
        for spec in group.metrics:
            rec.update(_metric_record(f"{g}.{spec.name}", spec, sub, paper, row, ctx))
        if group.stats_on is not None:
            spec = group.metrics[group.stats_on]
            base_runs = _group_runs(in_section, base, group, [], where) if base else sub.iloc[:0]
            sample = finished_values(sub, spec.metric, accuracy=spec.accuracy)
            base_sample = finished_values(base_runs, spec.metric, accuracy=spec.accuracy)
            comp = compare(sample, base_sample, is_baseline=row == base)
            rec.update({f"{g}.n": len(sample), f"{g}.total": len(sub)})
            rec.update({f"{g}.p_value": comp.p_value, f"{g}.stat_note": comp.note})
            rec.update({f"{g}.ci_low": comp.ci_low, f"{g}.ci_high": comp.ci_high})
        excluded = _exclusion_note(f"{row} ({where})" if where else row, sub)
        if excluded:
            notes.append(excluded)
    return rec


def layout_table(runs_df: pd.DataFrame, rows_order: Sequence[str], layout: str) -> ReportTable:
    """A paper layout (`LAYOUTS` key) of the runs; 'summary' gives `summary_report`."""
    if layout == "summary":
        return summary_report(runs_df, rows_order)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUT_NAMES)}")
    spec = LAYOUTS[layout]
    runs, dropped, loaded = _dedup(runs_df)
    rows = layout_rows(spec, ordered_rows(rows_order, runs))
    base = baseline_row(rows)
    groups = spec.groups(runs)
    notes: list[str] = [_dedup_note(loaded, dropped)]
    sections = spec.sections(runs)
    records = [
        _row_record(spec, runs, row, base, groups, section, notes)
        for section in sections
        for row in rows
        if len(sections) == 1 or (_filter(runs, section[1])["row"] == row).any()
    ]
    columns = _layout_columns(spec, groups)
    values = pd.DataFrame.from_records(records, columns=["section", "row", *_keys(columns)])
    columns = _drop_blank_paper(columns, values)
    if any(g.stats_on is not None for g in groups):
        notes.append(_stats_note(base))
    if _smoke(runs):
        notes.append("Smoke runs (FakeData): not compared with the paper's numbers.")
    if any(c.kind == "paper" for c in columns):
        notes.append(
            f"paper: {_paper_label(spec.paper)}; Δ = this run - paper; blank = not printed."
        )
    notes.append(_rank_note(spec.top_k))
    return ReportTable(spec.name, spec.title, columns, values, top_k=spec.top_k, notes=notes)


def _keys(columns: list[Column]) -> list[str]:
    return list(dict.fromkeys(k for c in columns for k in c.value_keys()))


def _rank_note(top_k: int) -> str:
    colours = ", ".join(("red", "blue", "green", "cyan")[:top_k])
    return f"Best {top_k} of each measured column marked (rank 1-{top_k}: {colours})."


# --------------------------------------------------------------------------- ICCV'21 Table 5


def speed_table(speed: pd.DataFrame) -> ReportTable:
    """ICCV'21 Table 5 from the `metalayer-speed` runs: FP, BP and total seconds per batch.

    One section per (batch, dim, dtype); the paper's AlexNet numbers beside each.
    """
    rank = {name: i for i, name in enumerate(ICCV21_ROWS)}
    metrics = (("fp_s", "FP (s)"), ("bp_s", "BP (s)"), ("total_s", "total (s)"))
    records = []
    for (batch, dim, dtype), sub in speed.groupby(["batch", "dim", "dtype"], sort=True):
        section = f"batch {batch}, d {dim}, {dtype}"
        methods = sorted(sub["method"], key=lambda m: rank.get(paper_row_name(m, "iccv21"), 99))
        for method in methods:
            one = sub[sub["method"] == method].iloc[0]
            rec: dict[str, object] = {"section": section, "row": method}
            for metric, _ in metrics:
                pub = published_value(
                    paper="iccv21",
                    application="gcp",
                    dataset="imagenet",
                    model="alexnet",
                    protocol="timing",
                    row=method,
                    metric=metric,
                )
                rec.update({metric: one[metric], f"{metric}.paper": pub})
                rec[f"{metric}.diff"] = one[metric] - pub
            records.append(rec)
    columns = []
    for metric, header in metrics:
        columns += [
            Column(metric, header, fmt="sec", better="min"),
            Column(f"{metric}.paper", "paper", fmt="sec", kind="paper"),
            Column(f"{metric}.diff", "Δ", fmt="signed_sec", kind="diff"),
        ]
    values = pd.DataFrame.from_records(records, columns=["section", "row", *_keys(columns)])
    notes = [
        "paper: ICCV'21 Table 5 (AlexNet GCP, one batch); Δ = this run - paper.",
        _rank_note(3),
    ]
    title = "ICCV'21 Table 5: time of the GCP meta-layer per batch (s)"
    return ReportTable(SPEED_LAYOUT, title, columns, values, top_k=3, notes=notes)
