"""ICCV'21 Table 5: the meta-layers' time per batch (the `metalayer-speed` experiment)."""

from __future__ import annotations

import pandas as pd

from svdablate.report.tables import notes
from svdablate.report.tables.layout_specs import ICCV21_ROWS
from svdablate.report.tables.published import published_value
from svdablate.report.tables.table import Column, ReportTable
from svdablate.schema import SPEED_METRICS, paper_method_name

SPEED_LAYOUT = "iccv21-t5"
TOTAL = "total_s"
HEADERS = dict(zip((*SPEED_METRICS, TOTAL), ("FP (s)", "BP (s)", "total (s)"), strict=True))


def _paper_rank(method: str) -> int:
    rank = {name: i for i, name in enumerate(ICCV21_ROWS)}
    return rank.get(paper_method_name(method, "iccv21") or "", len(rank))


def speed_table(speed: pd.DataFrame) -> ReportTable:
    """FP, BP and total seconds per batch from `runs.load_speed_runs`, beside the paper's
    AlexNet numbers; one section per (batch, dim, dtype), methods in the paper's order."""
    records = []
    for (batch, dim, dtype), sub in speed.groupby(["batch", "dim", "dtype"], sort=True):
        section = f"batch {batch}, d {dim}, {dtype}"
        for method in sorted(sub["method"], key=_paper_rank):
            one = sub[sub["method"] == method].iloc[0]
            name = paper_method_name(method, "iccv21") or method
            rec: dict[str, object] = {"section": section, "row": method}
            for metric in HEADERS:
                pub = published_value(
                    paper="iccv21",
                    application="gcp",
                    dataset="imagenet",
                    model="alexnet",
                    protocol="timing",
                    row=name,
                    metric=metric,
                )
                rec.update({metric: one[metric], f"{metric}.paper": pub})
                rec[f"{metric}.diff"] = one[metric] - pub
            records.append(rec)
    columns = []
    for metric, header in HEADERS.items():
        columns += [
            Column(metric, header, fmt="sec", better="min"),
            Column(f"{metric}.paper", "paper", fmt="sec", kind="paper"),
            Column(f"{metric}.diff", "Δ", fmt="signed_sec", kind="diff"),
        ]
    keys = [k for c in columns for k in c.value_keys()]
    values = pd.DataFrame.from_records(records, columns=["section", "row", *keys])
    table_notes = [
        "paper: ICCV'21 Table 5 (AlexNet GCP, one batch); Δ = this run - paper.",
        notes.rank_note(3),
    ]
    title = "ICCV'21 Table 5: time of the GCP meta-layer per batch (s)"
    return ReportTable(SPEED_LAYOUT, title, columns, values, top_k=3, notes=table_notes)
