"""Fill a paper's table layout (`layout_specs.LAYOUTS`) from a study's runs.

Rows follow the paper's order (matched through each row's paper name, `rows.paper_names`),
columns are grouped as the paper groups them, each measured column beside the published number
and Δ, then κ, its per-epoch trend, n, Welch p and a bootstrap CI against the SVD row; the
papers' claims the rows test go under the table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from svdablate.report.claims.verdicts import table_claims
from svdablate.report.reading.runs import deduplicate
from svdablate.report.tables import fidelity, notes
from svdablate.report.tables.layout_specs import LAYOUTS, Filters, GroupSpec, Layout, MetricSpec
from svdablate.report.tables.published import published_value
from svdablate.report.tables.rows import (
    baseline_row,
    filter_runs,
    ordered_rows,
    paper_names,
    protocol_runs,
    row_methods,
)
from svdablate.report.tables.stats import compare
from svdablate.report.tables.summary import (
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
from svdablate.report.tables.table import Column, ReportTable


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


@dataclass(frozen=True)
class _Context:
    """What every cell of a layout table needs besides its row's runs."""

    layout: Layout
    metric: str
    names: dict[str, str]
    base: str | None
    history: pd.DataFrame | None


def _publisher(
    ctx: _Context, row: str, group: GroupSpec, group_runs: pd.DataFrame
) -> Callable[[str], float] | None:
    """The paper's value of `row` for a metric in this group; None for smoke runs (FakeData is
    never compared with the paper), rows the paper does not name, and runs in a precision
    other than the papers' float64."""
    if group_runs["smoke"].astype(bool).any() or row not in ctx.names:
        return None
    if _unique(group_runs, "precision") not in ("", "float64"):
        return None
    context = {k: _unique(group_runs, k) for k in ("application", "dataset", "model")}
    context["protocol"] = (
        group.paper_protocol
        or dict(group.filters).get("protocol")
        or _unique(group_runs, "protocol")
    )
    paper, name = ctx.layout.paper, ctx.names[row]
    return lambda metric: published_value(paper=paper, row=name, metric=metric, **context)


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
    table_notes.append(notes.rank_note(spec.top_k))
    table_notes += fidelity.caption_notes(runs[runs["row"].isin(rows)], rows)
    ow = notes.ow_caption(str(runs_df.attrs.get("ow_map", "")), rows)
    title = spec.title.format(error=f"{metric}-epoch") + ow
    claims = table_claims(runs, rows, metric=metric, kappa_history=kappa_history)
    return ReportTable(spec.name, title, columns, values, spec.top_k, table_notes, claims, metric)
