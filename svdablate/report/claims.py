"""The papers' directional claims, as data: one `Claim` each, with where the paper makes it.

A claim is a contrast Σ weight · mean(quantity of the term's runs) that the paper says is below
(`direction` 'lower') or above ('higher') zero; `lowest` claims say the first term is below every
other row. Rows are the papers' names (`schema.paper_row_name`); a term may pin the protocol or
the precision. Verdicts are computed from the runs (`verdicts.py`), never written here.

Sources: /work/shared/papers (ECCV'22 "Improving Covariance Conditioning of the SVD Meta-layer by
Orthogonality"; ICCV'21 "Why Approximate Matrix Square Root Outperforms Accurate SVD in GCP?").
SVD-Newton is not among the ICCV'21 remedies claimed to beat MPN-COV: its Table 2 prints it
above MPN-COV (48.86 vs 48.77 standalone top-1), and §3.3 claims a gain of "maximally 0.2%".
"""

from __future__ import annotations

from dataclasses import dataclass

ERROR, KAPPA = "error", "kappa"
LOWER, HIGHER = "lower", "higher"


@dataclass(frozen=True)
class Term:
    """One row of a contrast: the paper's row name, its weight, and pinned axes (None: any)."""

    row: str
    weight: int = 1
    protocol: str | None = None
    precision: str | None = None

    @property
    def pins(self) -> tuple[tuple[str, str], ...]:
        """(axis, value) pairs the term fixes."""
        pinned = (("protocol", self.protocol), ("precision", self.precision))
        return tuple((axis, value) for axis, value in pinned if value is not None)


@dataclass(frozen=True)
class Claim:
    """A directional claim of a paper that a study's rows can test."""

    paper: str  # eccv22 | iccv21 (schema.PAPERS)
    where: str  # section / table / figure of the paper
    application: str  # dbn | gcp: the runs it applies to
    statement: str
    quantity: str  # error (the table's error metric) | kappa (tested on log10 κ)
    direction: str  # lower | higher: the sign the paper gives the contrast
    terms: tuple[Term, ...]
    lowest: bool = False  # terms[0] is below every other row of the study


def _vs(a: str, b: str, **pins: str | None) -> tuple[Term, Term]:
    return Term(a, 1, **pins), Term(b, -1, **pins)


def _eccv(where: str, app: str, quantity: str, direction: str, a: str, b: str, text: str) -> Claim:
    return Claim("eccv22", where, app, text, quantity, direction, _vs(a, b))


def _lowest(where: str, app: str, quantity: str, row: str, text: str) -> Claim:
    return Claim("eccv22", where, app, text, quantity, LOWER, (Term(row),), lowest=True)


ECCV22_DBN = (
    *(
        _eccv("§4.2, Fig. 2", "dbn", KAPPA, LOWER, f"SVD+{t}", "SVD", f"{t} lowers κ vs SVD")
        for t in ("SN", "OL", "OW")
    ),
    _eccv("§4.2, Table 1", "dbn", ERROR, HIGHER, "SVD+OW", "SVD", "OW slightly hurts the error"),
    _eccv("§5.1, Fig. 3", "dbn", KAPPA, LOWER, "SVD+NOG", "SVD", "NOG lowers κ vs SVD"),
    _eccv("§5.1, Table 2", "dbn", ERROR, LOWER, "SVD+NOG", "SVD", "NOG lowers the error vs SVD"),
    _eccv(
        "§5.1, Table 2", "dbn", ERROR, LOWER, "SVD+NOG+OW", "SVD+NOG",
        "OW on top of NOG lowers the error further",
    ),
    _eccv("§5.2, Fig. 4", "dbn", KAPPA, LOWER, "SVD+OLR", "SVD", "OLR lowers κ vs SVD"),
    _eccv("§5.2, Table 3", "dbn", ERROR, LOWER, "SVD+OLR", "SVD", "OLR lowers the error vs SVD"),
    *(
        _eccv(
            "§5.2, Table 3", "dbn", ERROR, HIGHER, f"SVD+{t}+OLR", "SVD+OLR",
            f"OLR with {t} alone is worse than OLR alone",
        )
        for t in ("NOG", "OW")
    ),
    _lowest("§6.1, Table 4", "dbn", ERROR, "SVD+NOG+OW+OLR", "NOG+OW+OLR has the lowest error"),
)  # fmt: skip

ECCV22_GCP = (
    *(
        _eccv(
            "§6.2, Table 5", "gcp", ERROR, LOWER, f"SVD+{t}", "SVD", f"{t} lowers the error vs SVD"
        )
        for t in ("NOG", "OLR")
    ),
    *(
        _eccv("§6.2, Table 5", "gcp", ERROR, HIGHER, f"SVD+{t}", "SVD", f"{t} hurts the error")
        for t in ("OL", "OW")
    ),
    _lowest("§6.2, Table 5", "gcp", ERROR, "SVD+NOG+OW+OLR", "NOG+OW+OLR has the lowest error"),
    *(
        _eccv("§6.2, Fig. 5", "gcp", KAPPA, LOWER, f"SVD+{t}", "SVD", f"{t} lowers κ vs SVD")
        for t in ("NOG", "OLR", "OW")
    ),
    _lowest("§6.2, Fig. 5", "gcp", KAPPA, "SVD+NOG+OW+OLR", "NOG+OW+OLR has the lowest κ"),
)  # fmt: skip

NS, MPN = "iSQRT-COV", "MPN-COV"
ICCV21_REMEDIES = ("SVD-TopN", "SVD-Trunc", "SVD-PI", "SVD-Taylor", "SVD-Pade")
_F64 = {"precision": "float64"}
_STANDALONE = {"protocol": "standalone", **_F64}


def _iccv(where: str, direction: str, terms: tuple[Term, ...], text: str) -> Claim:
    return Claim("iccv21", where, "gcp", text, ERROR, direction, terms)


def _gap(row: str, protocol: str, sign: int) -> tuple[Term, Term]:
    """sign · (row - iSQRT-COV) under `protocol`, float64."""
    return Term(row, sign, protocol, "float64"), Term(NS, -sign, protocol, "float64")


ICCV21_GCP = (
    _iccv("Abstract, §1; Table 2", LOWER, _vs(NS, MPN, **_STANDALONE), "iSQRT-COV beats MPN-COV"),
    *(
        _iccv(
            "§1, Fig. 1; §3.3, Fig. 4; Table 2", LOWER, _vs(r, MPN, **_STANDALONE),
            f"{r} beats MPN-COV",
        )
        for r in ICCV21_REMEDIES
    ),
    *(
        _iccv(
            "§1, Fig. 1; §3.3, Fig. 4; Table 2", HIGHER, _vs(r, NS, **_STANDALONE),
            f"{r} trails iSQRT-COV",
        )
        for r in ICCV21_REMEDIES
    ),
    *(
        _iccv(
            "§3.4, Fig. 5; Table 2", LOWER, (*_gap(r, "hybrid", 1), *_gap(r, "standalone", -1)),
            f"hybrid training narrows {r}'s gap to iSQRT-COV",
        )
        for r in (MPN, *ICCV21_REMEDIES)
    ),
    _iccv(
        "§3.2, Fig. 2",
        HIGHER,
        (
            Term(MPN, 1, "standalone", "float32"),
            Term(MPN, -1, "standalone", "float64"),
            Term(NS, -1, "standalone", "float32"),
            Term(NS, 1, "standalone", "float64"),
        ),
        "float32 costs MPN-COV far more error than iSQRT-COV",
    ),
)  # fmt: skip

CLAIMS: tuple[Claim, ...] = (*ECCV22_DBN, *ECCV22_GCP, *ICCV21_GCP)
