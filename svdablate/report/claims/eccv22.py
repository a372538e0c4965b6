"""ECCV'22 ("Improving covariance conditioning of the SVD meta-layer by orthogonality"): its
claims on decorrelated BN (Figs. 1-4, Tables 1-4) and GCP (Fig. 5, Table 5), as data.

Rows are the paper's names (`schema.paper_row_name`: SVD, SVD+NOG, ..., NS). The paper states
its findings per application and for any network (Abstract; §7), so a claim applies to every
study of its application; `Scope.setting` records the experiment the paper ran.
"""

from __future__ import annotations

from svdablate.report.claims.model import (
    ERROR,
    ERROR_MARGIN,
    FAILURES,
    HIGHER,
    KAPPA,
    LOWER,
    Claim,
    Scope,
    Term,
    Untestable,
    vs,
)

DBN = Scope("dbn", "decorrelated BN, ResNet-50 on CIFAR-10/100, 10 runs")
GCP = Scope("gcp", "GCP, ResNet-18 on ImageNet, one run")
#: The rows of the paper's tables and figures (a `lowest` claim compares only with these).
TABLE4_ROWS = (
    "SVD", "SVD+SN", "SVD+OL", "SVD+OW", "SVD+NOG", "SVD+OLR", "SVD+NOG+OW", "SVD+NOG+OW+OLR",
    "NS",
)  # fmt: skip
TABLE5_ROWS = TABLE4_ROWS
WEIGHT_TREATMENTS = ("SVD+SN", "SVD+OL", "SVD+OW")  # §4.2, Fig. 2, Table 1
FIG5_ROWS = ("SVD", "SVD+NOG", "SVD+OLR", "SVD+OW", "SVD+NOG+OW", "SVD+NOG+OW+OLR")  # §6.2 text
#: Table 5's failure times of plain SVD and of each other row.
TABLE5_FAILURES = {
    "SVD": 5, "SVD+SN": 2, "SVD+OL": 1, "SVD+OW": 2, "SVD+NOG": 1, "SVD+OLR": 0,
    "SVD+NOG+OW": 0, "SVD+NOG+OW+OLR": 0, "NS": 0,
}  # fmt: skip


def _claim(
    where: str, scope: Scope, quantity: str, direction: str, a: str, b: str, text: str
) -> Claim:
    return Claim("eccv22", where, scope, text, quantity, direction, vs(a, b))


def _lowest(where: str, scope: Scope, quantity: str, row: str, among: tuple[str, ...], text: str):
    others = tuple(r for r in among if r != row)
    return Claim("eccv22", where, scope, text, quantity, LOWER, (Term(row),), among=others)


def _short(row: str) -> str:
    return row.removeprefix("SVD+")


def _below_each(
    where: str, scope: Scope, quantity: str, row: str, others: tuple[str, ...], text: str
) -> tuple[Claim, ...]:
    """`row`'s `quantity` below each of `others`, one claim each; `{other}` in `text` names it."""
    return tuple(
        _claim(where, scope, quantity, LOWER, row, other, text.format(other=_short(other)))
        for other in others
    )


DBN_CLAIMS = (
    _claim("§1, Fig. 1", DBN, KAPPA, LOWER, "NS", "SVD", "NS's κ is below SVD's"),
    *(
        _claim("§4.2, Fig. 2", DBN, KAPPA, LOWER, row, "SVD", f"{_short(row)} lowers κ vs SVD")
        for row in WEIGHT_TREATMENTS
    ),
    _lowest(
        "§4.2, Fig. 2", DBN, KAPPA, "SVD+OW", WEIGHT_TREATMENTS,
        "OW has the lowest κ of the weight treatments",
    ),
    _claim("§4.2, Table 1", DBN, ERROR, LOWER, "SVD+SN", "SVD", "SN lowers the error vs SVD"),
    _claim("§4.2, Table 1", DBN, ERROR, LOWER, "SVD+OL", "SVD", "OL lowers the error vs SVD"),
    _claim("§4.2, Table 1", DBN, ERROR, HIGHER, "SVD+OW", "SVD", "OW slightly hurts the error"),
    _claim("§5.1, Fig. 3", DBN, KAPPA, LOWER, "SVD+NOG", "SVD", "NOG lowers κ vs SVD"),
    _claim("§5.1, Table 2", DBN, ERROR, LOWER, "SVD+NOG", "SVD", "NOG lowers the error vs SVD"),
    _claim(
        "§5.1, Table 2", DBN, ERROR, LOWER, "SVD+NOG+OW", "SVD+NOG",
        "OW on top of NOG lowers the error further",
    ),
    _claim(
        "§5.1, Table 2", DBN, ERROR, LOWER, "SVD+NOG+OW", "SVD+OW",
        "NOG cancels OW's side effect: NOG+OW beats OW",
    ),
    _claim(
        "§5.1, Table 2", DBN, ERROR, HIGHER, "SVD+NOG+OL", "SVD+NOG",
        "OL on top of NOG harms the error",
    ),
    Claim(
        "eccv22", "§5.1, Table 2", DBN,
        f"SN on top of NOG brings no obvious error improvement (by less than {ERROR_MARGIN})",
        ERROR, HIGHER, vs("SVD+NOG+SN", "SVD+NOG"), bound=-ERROR_MARGIN,
    ),
    _claim("§5.2, Fig. 4", DBN, KAPPA, LOWER, "SVD+OLR", "SVD", "OLR lowers κ vs SVD"),
    _claim("§5.2, Table 3", DBN, ERROR, LOWER, "SVD+OLR", "SVD", "OLR lowers the error vs SVD"),
    *(
        _claim(
            "§5.2, Table 3", DBN, ERROR, HIGHER, f"SVD+{t}+OLR", "SVD+OLR",
            f"OLR with {t} alone is worse than OLR alone",
        )
        for t in ("NOG", "OW")
    ),
    *_below_each(
        "§5.2, Table 3", DBN, ERROR, "SVD+NOG+OW+OLR", ("SVD+OLR", "SVD+NOG+OW"),
        "NOG+OW+OLR beats {other}",
    ),
    _lowest(
        "§6.1, Table 4", DBN, ERROR, "SVD+NOG+OW+OLR", TABLE4_ROWS,
        "NOG+OW+OLR has the lowest error of Table 4",
    ),
)  # fmt: skip

GCP_CLAIMS = (
    _claim("§1, Fig. 1", GCP, KAPPA, LOWER, "NS", "SVD", "NS's κ is below SVD's"),
    _claim("§6.2, Table 5", GCP, ERROR, LOWER, "SVD+SN", "SVD", "SN lowers the error vs SVD"),
    *(
        _claim("§6.2, Table 5", GCP, ERROR, HIGHER, f"SVD+{t}", "SVD", f"{t} hurts the error")
        for t in ("OL", "OW")
    ),
    *(
        _claim(
            "§6.2, Table 5", GCP, ERROR, LOWER, f"SVD+{t}", "SVD", f"{t} lowers the error vs SVD"
        )
        for t in ("NOG", "OLR")
    ),
    _lowest(
        "§6.2, Table 5", GCP, ERROR, "SVD+NOG+OW+OLR", TABLE5_ROWS,
        "NOG+OW+OLR has the lowest error of Table 5",
    ),
    *(
        _claim("§6.2, Fig. 5", GCP, KAPPA, LOWER, f"SVD+{t}", "SVD", f"{t} lowers κ vs SVD")
        for t in ("NOG", "OLR", "OW")
    ),
    *_below_each(
        "§6.2, Fig. 5", GCP, KAPPA, "SVD+NOG+OW", ("SVD+NOG", "SVD+OW"),
        "NOG+OW's κ is below {other}'s",
    ),
    _lowest(
        "§6.2, Fig. 5", GCP, KAPPA, "SVD+NOG+OW+OLR", FIG5_ROWS,
        "NOG+OW+OLR has the lowest κ of Fig. 5",
    ),
    *(
        _claim(
            f"§6.2, Table 5 ({n} vs {TABLE5_FAILURES['SVD']} failure times)", GCP, FAILURES,
            LOWER, row, "SVD", f"fewer solver failures with {_short(row)} than with SVD",
        )
        for row, n in TABLE5_FAILURES.items()
        if row != "SVD"
    ),
)  # fmt: skip

ECCV22_CLAIMS: tuple[Claim, ...] = (*DBN_CLAIMS, *GCP_CLAIMS)

ECCV22_UNTESTABLE = (
    Untestable(
        "eccv22", "§5.1, Fig. 3", "SN with NOG gives no obvious improvement in conditioning",
        "an absence claim on κ needs a margin for a κ difference, and the paper gives none "
        "(its error half is tested, with the error margin)",
    ),
    Untestable(
        "eccv22", "§6.2", "GCP's conditioning improves less than decorrelated BN's",
        "it compares two applications, and a study runs one",
    ),
    Untestable(
        "eccv22", "§5.2, Proposition 1", "η* is bounded when W and its gradient are orthogonal",
        "a theorem, not a measurement (tests/unit/test_treatments_nog_olr.py checks η*'s bounds)",
    ),
)  # fmt: skip
