"""The row grammar (`SVD+NOG+OW`: a meta-layer method, then `+`-joined treatments in any order
and case, written back in the canonical order `NOG SN OL OW OLR`) and the papers' names of our
methods, so a row can be matched with the numbers a paper prints."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

#: The papers' treatments of the Pre-SVD layer in canonical order (ECCV'22 §4–5). A treatment
#: registered besides them (`treatments.register_treatment`) sorts after them, by name.
TREATMENT_ORDER: Final = ("NOG", "SN", "OL", "OW", "OLR")
ROW_SEPARATOR: Final = "+"


@dataclass(frozen=True)
class Row:
    """A table row: how the meta-layer is written (`method`) and the treatments, canonical order.

    `method` is the spelling of the row (`SVD`, `MPN-COV`, `iSQRT-COV`); what it means is the
    meta-layer registry's business (`metalayers.resolve_method`).
    """

    method: str
    treatments: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return format_row(self.method, self.treatments)


def split_row(text: str) -> Row:
    """`svd+olr+NOG` → Row('svd', ('NOG', 'OLR')): treatments upper-cased, in canonical order.

    Syntax only: a treatment outside the papers' five stays (after them, sorted by name) for the
    treatment registry to accept or reject; an empty text or a duplicated treatment raises
    ValueError.
    """
    parts = [p.strip() for p in str(text).split(ROW_SEPARATOR)]
    if not parts or not parts[0] or any(not p for p in parts[1:]):
        raise ValueError(
            f"bad row {text!r}: write a method and '+'-joined treatments, e.g. SVD+NOG+OW+OLR"
        )
    treatments = [p.upper() for p in parts[1:]]
    twice = sorted({t for t in treatments if treatments.count(t) > 1})
    if twice:
        raise ValueError(f"treatment {twice[0]} appears twice in row {text!r}")
    return Row(parts[0], canonical_treatments(treatments))


def format_row(method: str, treatments: tuple[str, ...] | list[str] = ()) -> str:
    """The row label: method, then the treatments in canonical order, `+`-joined."""
    return ROW_SEPARATOR.join([method, *canonical_treatments(treatments)])


def canonical_treatments(treatments: Iterable[str]) -> tuple[str, ...]:
    """Treatment names in canonical order: the papers' (`TREATMENT_ORDER`), then any other, sorted
    by name (`("OLR", "HALF", "NOG")` → `("NOG", "OLR", "HALF")`)."""
    given = list(treatments)
    others = sorted(t for t in given if t not in TREATMENT_ORDER)
    return (*(t for t in TREATMENT_ORDER if t in given), *others)


# --------------------------------------------------------------------------- the papers' names

PAPERS: Final = ("eccv22", "iccv21")
#: canonical method → the name each paper prints (published.csv uses these).
_PAPER_METHOD_NAMES: Final = {
    "svd": {"eccv22": "SVD", "iccv21": "MPN-COV"},
    "ns": {"eccv22": "NS", "iccv21": "iSQRT-COV"},
    "svd-pade": "SVD-Pade",
    "svd-taylor": "SVD-Taylor",
    "svd-newton": "SVD-Newton",
    "svd-trunc": "SVD-Trunc",
    "svd-topn": "SVD-TopN",
    "svd-pi": "SVD-PI",
    "mpa-lya": "MPA-Lya",
}


def paper_method_name(method: str, paper: str) -> str | None:
    """The name `paper` gives the canonical meta-layer `method` (None when it has none)."""
    names = _PAPER_METHOD_NAMES.get(method)
    if isinstance(names, dict):
        return names.get(paper)
    return names


def paper_row_name(method: str, treatments: tuple[str, ...], paper: str) -> str | None:
    """The row as `paper` names it, e.g. ('ns', ()) in iccv21 → 'iSQRT-COV'."""
    name = paper_method_name(method, paper)
    return None if name is None else format_row(name, treatments)
