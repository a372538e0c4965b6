"""The table model every layout produces and every renderer reads.

A `ReportTable` holds numbers (`values`, one row per table row), a list of display `Column`s
that say how to format them, which are ranked (best-k marked as the papers do) and how they are
grouped under a spanning header, its notes, and the papers' claims tested on its runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from svdablate.report.tables.trend import first_last, log_range, sparkline

RANK_COLOURS = ("red", "blue", "green", "cyan")


@dataclass(frozen=True)
class Column:
    """One displayed column.

    fmt: num (2 decimals) | pm (key ± key2) | sci | int | count | signed | sec | signed_sec |
    p (p-value, or the note in key2) | ci ([key, key2]) | frac (key/key2) | text |
    trend (a per-epoch series: a sparkline on the column's shared log scale; first → last in
    plain-text formats).
    better: 'min' or 'max' ranks the column (the best `top_k` cells are marked).
    kind: measured | paper | diff | stat | count (renderers may style them).
    """

    key: str
    header: str
    group: str = ""
    fmt: str = "num"
    key2: str | None = None
    better: str | None = None
    kind: str = "measured"

    def value_keys(self) -> list[str]:
        return [self.key] if self.key2 is None else [self.key, self.key2]


@dataclass
class ReportTable:
    """A rendered-to-be table: `values` has columns 'section', 'row' and every Column's keys.

    `claims` is `verdicts.CLAIM_COLUMNS`-shaped (empty when the rows test no claim of the
    papers); `metric` says which epoch's error the table shows ('best' or 'final').
    """

    name: str
    title: str
    columns: list[Column]
    values: pd.DataFrame
    top_k: int = 4
    notes: list[str] = field(default_factory=list)
    claims: pd.DataFrame = field(default_factory=pd.DataFrame)
    metric: str = "best"
    statuses: dict[str, int] = field(default_factory=dict)  # the study's runs by status

    @property
    def rows(self) -> list[str]:
        return list(self.values["row"])

    @property
    def has_sections(self) -> bool:
        return bool(self.values["section"].astype(bool).any())

    def ranks(self) -> pd.DataFrame:
        """Rank (1 = best, ties share the better rank) of every ranked column within its section.

        0 where the cell is empty or the column is not ranked.
        """
        out = pd.DataFrame(0, index=self.values.index, columns=[c.key for c in self.columns])
        for col in self.columns:
            if col.better is None:
                continue
            numbers = pd.to_numeric(self.values[col.key], errors="coerce")
            ranked = numbers.groupby(self.values["section"], sort=False).rank(
                method="min", ascending=col.better == "min"
            )
            out[col.key] = ranked.fillna(0).astype(int)
        return out

    def text(self, index: int, col: Column, *, plain: bool = False) -> str:
        """The cell as text ('' when empty); `plain` avoids unicode bars (LaTeX)."""
        row = self.values.loc[index]
        if col.fmt == "trend":
            values = row[col.key]
            if plain:
                return first_last(values)
            return sparkline(values, log_range(self.values[col.key]))
        return format_cell(col.fmt, row[col.key], row[col.key2] if col.key2 else None)

    def value_keys(self) -> list[str]:
        """Every column's value keys, in column order, once each."""
        return list(dict.fromkeys(k for c in self.columns for k in c.value_keys()))

    def to_frame(self) -> pd.DataFrame:
        """The numbers the table shows: one row per table row, a column per value key (named
        by what it shows, e.g. 'val_err_mean', 'cifar100.val_err_mean.paper'); a trend cell is
        the per-epoch series. Index: row, or (section, row) when the table has sections."""
        index = ["section", "row"] if self.has_sections else ["row"]
        frame = self.values[[*index, *self.value_keys()]].set_index(index)
        frame.attrs.update(name=self.name, title=self.title, metric=self.metric)
        return frame

    def marked(self) -> pd.DataFrame:
        """Rank of each cell if it is among the best `top_k` of its column, else 0."""
        ranks = self.ranks()
        return ranks.where(ranks <= self.top_k, 0)


def _missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value == ""
    try:
        return bool(np.isnan(value))  # type: ignore[arg-type]
    except TypeError:
        return False


def format_p(p: float) -> str:
    """p-values: three decimals, scientific below 0.001."""
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def format_cell(fmt: str, value: object, value2: object = None) -> str:
    """Plain text of one cell in the given format ('' when empty, never a guess)."""
    if fmt == "p":
        if not _missing(value2):
            return str(value2)
        return "" if _missing(value) else format_p(float(value))  # type: ignore[arg-type]
    if _missing(value):
        return ""
    if fmt == "text":
        return str(value)
    x = float(value)  # type: ignore[arg-type]
    simple = {
        "num": lambda: f"{x:.2f}",
        "sci": lambda: f"{x:.1e}",
        "int": lambda: str(round(x)),
        "count": lambda: f"{x:.4g}",
        "signed": lambda: f"{x:+.2f}",
        "sec": lambda: f"{x:.3g}",
        "signed_sec": lambda: f"{x:+.3g}",
    }
    if fmt in simple:
        return simple[fmt]()
    if fmt == "pm":
        return f"{x:.2f}" if _missing(value2) else f"{x:.2f} ± {float(value2):.2f}"  # type: ignore[arg-type]
    if fmt == "ci":
        return f"[{x:+.2f}, {float(value2):+.2f}]"  # type: ignore[arg-type]
    if fmt == "frac":
        return f"{round(x)}/{round(float(value2))}"  # type: ignore[arg-type]
    raise ValueError(f"unknown cell format {fmt!r}")
