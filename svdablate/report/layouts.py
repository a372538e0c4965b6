"""The papers' table layouts: ECCV'22 Tables 1-5 and ICCV'21 Tables 2-4 of a study's runs.

Rows follow the paper's order (matched through each row's paper name, `rows.paper_names`),
columns are grouped as the paper groups them, each measured column beside the published number
and Δ, then κ, its per-epoch trend, n, Welch p and a bootstrap CI against the SVD row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from svdablate.schema import Metric

from . import notes
from .published import published_value
from .rows import baseline_row, filter_runs, ordered_rows, paper_names, protocol_runs, row_methods
from .runs import deduplicate
from .stats import compare
from .summary import (
    error_metrics,
    finished_values,
    kappa_columns,
    kappa_median,
    kappa_trend,
    mean,
    minimum,
    stat_columns,
    std,
    summary_report,
)
from .table import Column, ReportTable
from .verdicts import table_claims

ERROR, ERROR5 = "error", "error5"  # the table's top-1 / top-5 error metric (best or final epoch)
DATASET_LABELS = {
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "imagenet": "ImageNet",
    "cub200": "Birds",
    "dogs": "Dogs",
    "cars": "Cars",
}
MODEL_LABELS = {"resnet50": "ResNet-50", "resnet101": "ResNet-101"}
ECCV22_T4_ROWS = (
    "SVD", "SVD+SN", "SVD+OL", "SVD+OW", "SVD+NOG", "SVD+OLR", "SVD+NOG+OW", "SVD+NOG+OW+OLR", "NS",
)  # fmt: skip
ECCV22_T1_ROWS = ("SVD", "SVD+SN", "SVD+OL", "SVD+OW", "NS")
ECCV22_T2_ROWS = ("SVD", "SVD+NOG", "SVD+NOG+SN", "SVD+NOG+OL", "SVD+NOG+OW", "NS")
ECCV22_T3_ROWS = ("SVD", "SVD+OLR", "SVD+NOG+OLR", "SVD+OW+OLR", "SVD+NOG+OW+OLR", "NS")
ICCV21_ROWS = (
    "iSQRT-COV", "SVD-Pade", "SVD-Taylor", "SVD-Newton", "SVD-Trunc", "SVD-TopN", "MPN-COV",
)  # fmt: skip

Filters = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class MetricSpec:
    """A measured quantity of a layout and the published metric it is compared with.

    `metric` is a run metric key, or ERROR / ERROR5 for the table's error of choice.
    """

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

    def key(self, metric: str) -> str:
        """The run metric this column reads when the table shows the `metric` epoch's error."""
        top1, top5 = error_metrics(metric)
        return {ERROR: top1, ERROR5: top5}.get(self.metric, self.metric)


@dataclass(frozen=True)
class GroupSpec:
    """Columns under one spanning header, computed on the runs that match `filters`."""

    label: str
    filters: Filters
    metrics: tuple[MetricSpec, ...]
    stats_on: int | None = 0  # index in metrics of the Welch/bootstrap metric, None: no stats
    paper_protocol: str | None = None  # published protocol when it differs from the runs'
    kappa: bool = True  # show κ and its trend (off where another group shows the same runs')

    @property
    def slug(self) -> str:
        """Key prefix of the group's columns (e.g. 'cifar100', 'hybrid_final')."""
        return re.sub(r"[^0-9a-z]+", "_", self.label.lower()).strip("_") or "all"


Sections = Callable[[pd.DataFrame], list[tuple[str, Filters]]]


@dataclass(frozen=True)
class Layout:
    """A paper table: rows in the paper's order, column groups and row sections."""

    name: str
    title: str  # '{error}' becomes 'best-epoch' or 'final-epoch'
    paper: str
    top_k: int
    paper_rows: tuple[str, ...]
    restrict: bool  # drop rows the paper's table lacks
    groups: Callable[[pd.DataFrame], list[GroupSpec]]
    sections: Sections


def _ordered(values: pd.Series, preferred: Sequence[str]) -> list[str]:
    present = [v for v in dict.fromkeys(values.astype(str)) if v]
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


def _no_sections(runs: pd.DataFrame) -> list[tuple[str, Filters]]:
    return [("", ())]


def _model_sections(runs: pd.DataFrame) -> list[tuple[str, Filters]]:
    models = _ordered(runs["model"], ["resnet50", "resnet101"])
    return [(MODEL_LABELS.get(m, m), (("model", m),)) for m in models] or [("", ())]


_MEAN = MetricSpec(ERROR, "mean ± std", "min", "val_err_mean", "val_err_std")
_MIN = MetricSpec(ERROR, "min", "min", "val_err_min", stat="min", fmt="num")


def _eccv_dbn_groups(runs: pd.DataFrame) -> list[GroupSpec]:
    datasets = _ordered(runs["dataset"], ["cifar10", "cifar100"])
    return [GroupSpec(DATASET_LABELS.get(d, d), (("dataset", d),), (_MEAN, _MIN)) for d in datasets]


def _eccv_gcp_groups(runs: pd.DataFrame) -> list[GroupSpec]:
    metrics = (
        MetricSpec(Metric.FAILURES_TOTAL, "failures", "min", "failures", fmt="count"),
        MetricSpec(ERROR, "top-1 acc", "max", "top1_acc", accuracy=True),
        MetricSpec(ERROR5, "top-5 acc", "max", "top5_acc", accuracy=True),
    )
    datasets = _ordered(runs["dataset"], ["imagenet"])
    return [
        GroupSpec(DATASET_LABELS.get(d, d), (("dataset", d),), metrics, stats_on=1)
        for d in datasets
    ]


def _iccv_alexnet_groups(runs: pd.DataFrame) -> list[GroupSpec]:
    final = (
        MetricSpec(Metric.FINAL_VAL_ERR, "top-1", "min", "top1_err_final"),
        MetricSpec(Metric.FINAL_VAL_ERR5, "top-5", "min", "top5_err_final"),
    )
    best = (
        MetricSpec(Metric.BEST_VAL_ERR, "top-1", "min", "top1_err_best"),
        MetricSpec(Metric.BEST_VAL_ERR5, "top-5", "min", "top5_err_best"),
    )
    return [
        GroupSpec("standalone final", (("protocol", "standalone"),), final),
        GroupSpec("hybrid final", (("protocol", "hybrid"),), final),
        GroupSpec("hybrid best", (("protocol", "hybrid"),), best, stats_on=None, kappa=False),
    ]


def _iccv_resnet_groups(runs: pd.DataFrame) -> list[GroupSpec]:
    metrics = (
        MetricSpec(ERROR, "top-1", "min", "top1_err"),
        MetricSpec(ERROR5, "top-5", "min", "top5_err"),
    )
    return [
        GroupSpec(p, (("protocol", p),), metrics)
        for p in _ordered(runs["protocol"], ["standalone", "hybrid"])
    ]


def _iccv_fgvc_groups(runs: pd.DataFrame) -> list[GroupSpec]:
    metrics = (
        MetricSpec(Metric.FINAL_VAL_ERR, "final", "max", "acc_final", accuracy=True),
        MetricSpec(Metric.BEST_VAL_ERR, "best", "max", "acc_best", accuracy=True),
    )
    datasets = _ordered(runs["dataset"], ["cub200", "dogs", "cars"])
    return [
        GroupSpec(DATASET_LABELS.get(d, d), (("dataset", d),), metrics, paper_protocol="hybrid")
        for d in datasets
    ]


def _eccv_dbn(name: str, number: int, what: str, rows: tuple[str, ...], restrict: bool) -> Layout:
    title = f"ECCV'22 Table {number}: decorrelated BN, {what} - {{error}} validation error (%)"
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
            "ECCV'22 Table 5: GCP methods - failure times and {error} validation accuracy (%)",
            "eccv22", 4, ECCV22_T4_ROWS, False, _eccv_gcp_groups, _no_sections,
        ),
        Layout(
            "iccv21-t2",
            "ICCV'21 Table 2: AlexNet GCP - final- and best-epoch validation error (%), "
            "standalone and hybrid",
            "iccv21", 3, ICCV21_ROWS, False, _iccv_alexnet_groups, _no_sections,
        ),
        Layout(
            "iccv21-t3",
            "ICCV'21 Table 3: ResNet GCP - {error} validation error (%)",
            "iccv21", 3, ICCV21_ROWS, False, _iccv_resnet_groups, _model_sections,
        ),
        Layout(
            "iccv21-t4",
            "ICCV'21 Table 4: fine-grained final- and best-epoch validation accuracy (%)",
            "iccv21", 3, ICCV21_ROWS, False, _iccv_fgvc_groups, _no_sections,
        ),
    )
}  # fmt: skip
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


def layout_rows(layout: Layout, rows: Sequence[str], names: dict[str, str]) -> list[str]:
    """Rows in the paper's order; rows the paper lacks follow (dropped when `restrict`)."""
    rank = {name: i for i, name in enumerate(layout.paper_rows)}
    known = sorted((r for r in rows if names.get(r) in rank), key=lambda r: rank[names[r]])
    extra = [] if layout.restrict else [r for r in rows if r not in known]
    return known + extra


def _group_runs(
    runs: pd.DataFrame, group: GroupSpec, notes_out: list[str], where: str
) -> pd.DataFrame:
    """The row's runs in the group; NS stands in with its standalone runs for hybrid ones."""
    filters = dict(group.filters)
    protocol = filters.pop("protocol", None)
    mine = filter_runs(runs, tuple(filters.items()))
    if protocol is None:
        return mine
    mine, stood_in = protocol_runs(mine, protocol)
    if stood_in:
        row = mine["row"].iloc[0]
        notes_out.append(f"{row} ({where}): the standalone runs (hybrid training starts with NS).")
    return mine


def _unique(runs: pd.DataFrame, column: str) -> str:
    values = {v for v in runs[column].astype(str) if v}
    return values.pop() if len(values) == 1 else ""


def _metric_record(
    key: str,
    spec: MetricSpec,
    sub: pd.DataFrame,
    published: Callable[[str], float] | None,
    metric: str,
) -> dict[str, float]:
    """Measured value (and std) of one cell; with `published`, the paper's value and Δ."""
    values = finished_values(sub, spec.key(metric), accuracy=spec.accuracy)
    value = minimum(values) if spec.stat == "min" else mean(values)
    rec = {key: value, f"{key}.std": std(values) if spec.stat == "mean" else np.nan}
    if spec.paper_metric:
        pub = published(spec.paper_metric) if published else np.nan
        pub_std = published(spec.paper_std) if published and spec.paper_std else np.nan
        rec.update({f"{key}.paper": pub, f"{key}.paper_std": pub_std, f"{key}.diff": value - pub})
    return rec


def _layout_columns(groups: list[GroupSpec], trend: bool) -> list[Column]:
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
        if group.kappa:
            columns += kappa_columns(group.label, f"{g}.", trend=trend)
        if group.stats_on is not None:
            columns += stat_columns(group.label, f"{g}.", total="total")
    return columns


def _drop_blank_paper(columns: list[Column], values: pd.DataFrame) -> list[Column]:
    """Paper and Δ columns of a metric the paper prints for none of the rows are left out."""
    blank = {
        c.key.rsplit(".", 1)[0] for c in columns if c.kind == "paper" and values[c.key].isna().all()
    }
    return [
        c for c in columns if not (c.kind in ("paper", "diff") and c.key.rsplit(".", 1)[0] in blank)
    ]


def _publisher(
    ctx: _Context, row: str, group: GroupSpec, group_runs: pd.DataFrame
) -> Callable[[str], float] | None:
    """The paper's value of `row` for a metric in this group; None for smoke runs (FakeData is
    never compared with the paper) and rows the paper does not name."""
    if group_runs["smoke"].astype(bool).any() or row not in ctx.names:
        return None
    context = {k: _unique(group_runs, k) for k in ("application", "dataset", "model")}
    context["protocol"] = (
        group.paper_protocol
        or dict(group.filters).get("protocol")
        or _unique(group_runs, "protocol")
    )
    paper, name = ctx.layout.paper, ctx.names[row]
    return lambda metric: published_value(paper=paper, row=name, metric=metric, **context)


@dataclass(frozen=True)
class _Context:
    """What every cell of a layout table needs besides its row's runs."""

    layout: Layout
    metric: str
    names: dict[str, str]
    base: str | None
    history: pd.DataFrame | None


def _row_record(
    ctx: _Context,
    runs: pd.DataFrame,
    row: str,
    groups: list[GroupSpec],
    section: tuple[str, Filters],
    notes_out: list[str],
) -> dict[str, object]:
    label, filters = section
    in_section = filter_runs(runs, filters)
    rec: dict[str, object] = {"section": label, "row": row}
    for group in groups:
        g = group.slug
        where = " ".join(x for x in (label, group.label) if x)
        sub = _group_runs(in_section[in_section["row"] == row], group, notes_out, where)
        published = _publisher(ctx, row, group, filter_runs(in_section, group.filters))
        for spec in group.metrics:
            rec.update(_metric_record(f"{g}.{spec.name}", spec, sub, published, ctx.metric))
        if group.kappa:
            rec[f"{g}.kappa"] = kappa_median(sub)
            rec[f"{g}.kappa_trend"] = kappa_trend(sub, ctx.history)
        if group.stats_on is not None:
            spec = group.metrics[group.stats_on]
            base_rows = in_section[in_section["row"] == ctx.base]
            base_runs = _group_runs(base_rows, group, [], where)
            sample = finished_values(sub, spec.key(ctx.metric), accuracy=spec.accuracy)
            base_sample = finished_values(base_runs, spec.key(ctx.metric), accuracy=spec.accuracy)
            comp = compare(sample, base_sample, is_baseline=row == ctx.base)
            rec.update({f"{g}.n": len(sample), f"{g}.total": len(sub)})
            rec.update({f"{g}.p_value": comp.p_value, f"{g}.stat_note": comp.note})
            rec.update({f"{g}.ci_low": comp.ci_low, f"{g}.ci_high": comp.ci_high})
        excluded = notes.exclusion_note(f"{row} ({where})" if where else row, sub)
        if excluded:
            notes_out.append(excluded)
    return rec


def layout_table(
    runs_df: pd.DataFrame,
    rows_order: Sequence[str],
    layout: str,
    *,
    metric: str = "best",
    kappa_history: pd.DataFrame | None = None,
) -> ReportTable:
    """A paper layout (`LAYOUTS` key, or 'summary' for `summary_report`) of the runs.

    metric: which epoch's error the error columns show, 'best' (the papers' convention) or
    'final' (ICCV'21 Tables 2 and 4 show both, whatever it is). kappa_history: the runs'
    `kappa_median` histories (`runs.metric_histories`) for the κ trend column; None: no trend.
    """
    error_metrics(metric)
    if layout == "summary":
        return summary_report(runs_df, rows_order, metric=metric, kappa_history=kappa_history)
    if layout not in LAYOUTS:
        valid = ", ".join(["summary", *LAYOUTS])
        raise ValueError(f"unknown layout {layout!r}; valid layouts: {valid}")
    spec = LAYOUTS[layout]
    runs, dropped = deduplicate(runs_df)
    methods = row_methods(runs)
    study_rows = ordered_rows(rows_order, runs)
    names = paper_names(study_rows, methods, spec.paper)
    rows = layout_rows(spec, study_rows, names)
    ctx = _Context(spec, metric, names, baseline_row(rows, methods, {}), kappa_history)
    groups = spec.groups(runs)
    table_notes: list[str] = [notes.dedup_note(len(runs_df), dropped)]
    sections = spec.sections(runs)
    records = [
        _row_record(ctx, runs, row, groups, section, table_notes)
        for section in sections
        for row in rows
        if len(sections) == 1 or (filter_runs(runs, section[1])["row"] == row).any()
    ]
    columns = _layout_columns(groups, trend=kappa_history is not None)
    keys = list(dict.fromkeys(k for c in columns for k in c.value_keys()))
    values = pd.DataFrame.from_records(records, columns=["section", "row", *keys])
    columns = _drop_blank_paper(columns, values)
    table_notes.append(notes.error_note(metric))
    trends = [values[c.key] for c in columns if c.fmt == "trend"]
    table_notes.append(notes.kappa_note(pd.concat(trends) if trends else None))
    if any(g.stats_on is not None for g in groups):
        table_notes.append(notes.stats_note(ctx.base))
    if runs["smoke"].astype(bool).any():
        table_notes.append(notes.smoke_note())
    if any(c.kind == "paper" for c in columns):
        table_notes.append(notes.paper_note(spec.paper))
    if runs_df.attrs.get("ow_map"):
        table_notes.append(notes.ow_note(runs_df.attrs["ow_map"]))
    table_notes.append(notes.rank_note(spec.top_k))
    title = spec.title.format(error=f"{metric}-epoch")
    claims = table_claims(runs, rows, metric=metric)
    return ReportTable(spec.name, title, columns, values, spec.top_k, table_notes, claims, metric)
