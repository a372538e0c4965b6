"""What each paper table shows: its rows in the paper's order, its column groups and sections.

ECCV'22 Tables 1-5 and ICCV'21 Tables 2-4 as data (`LAYOUTS`); `layouts.layout_table` fills
them from a study's runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from svdablate.report.tables.summary import error_metrics
from svdablate.schema import Metric

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


def _by_precision(sections: Sections) -> Sections:
    """`sections`, each split by precision when the study ran several (float64 first: the
    papers' default, ICCV'21 §3.2), so no cell pools float32 and float64 runs."""

    def split(runs: pd.DataFrame) -> list[tuple[str, Filters]]:
        precisions = _ordered(runs["precision"], ["float64", "float32"])
        if len(precisions) < 2:
            return sections(runs)
        return [
            (", ".join(x for x in (label, p) if x), (*filters, ("precision", p)))
            for label, filters in sections(runs)
            for p in precisions
        ]

    return split


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
            "iccv21", 3, ICCV21_ROWS, False, _iccv_alexnet_groups, _by_precision(_no_sections),
        ),
        Layout(
            "iccv21-t3",
            "ICCV'21 Table 3: ResNet GCP - {error} validation error (%)",
            "iccv21", 3, ICCV21_ROWS, False, _iccv_resnet_groups, _by_precision(_model_sections),
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
