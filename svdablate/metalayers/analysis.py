"""Numerical analyses of the backward rules: ICCV'21 Table 6 (approximation error of the Taylor
polynomial and the Padé approximant of 1/(1−x)) and Table 7 (largest |K_ij| at the eps floor), plus
the degeneracy of the official [50/50] Padé table. Pure functions returning lists of dicts; the
``method``/``metric`` keys use the names of ``reference/published.csv``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from svdablate.metalayers import krules
from svdablate.metalayers.eigen_rules import top_n_spectrum

__all__ = ["approximation_errors", "gradient_bounds", "pade_degeneracy"]

_F64 = torch.float64


def _exact(x: float):
    from mpmath import mp, mpf

    with mp.workdps(60):
        return 1 / (1 - mpf(x))


def _mp_taylor(x: float, degree: int):
    from mpmath import mp, mpf

    with mp.workdps(20):
        xm = mpf(x)
        acc = mpf(0)
        for _ in range(degree + 1):  # Horner of Σ_{k≤K} x^k
            acc = acc * xm + 1
        return acc


def _mp_pade(x: float, m: int, n: int):
    from mpmath import mp, mpf, polyval

    p, q = krules.pade_mp_coefficients(m, n)
    with mp.workdps(20):
        xm = mpf(x)
        return polyval(list(reversed(p)), xm) / polyval(list(reversed(q)), xm)


def _abs_err(approx: Any, exact: Any) -> float:
    from mpmath import mp, mpf

    with mp.workdps(60):
        return float(abs(mpf(approx) - exact))


def approximation_errors(
    xs: Iterable[float] = (0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999), degree: int = 100
) -> list[dict[str, Any]]:
    """ICCV'21 Table 6: |approximation − 1/(1−x)| of the degree-K Taylor polynomial and the
    [K/2 / K/2] Padé approximant, each evaluated in float64 (the layer's own code:
    ``krules.geometric_sum`` and ``krules.polyval_pair``) and in mpmath at the official
    ``mp.dps = 20`` (mp coefficients); the reference 1/(1−x) is taken at the same binary x with
    60 digits. Rows: method (``Taylor-100``, ``Pade-50/50``), x, metric (``abs_err_x0.1`` …),
    float64, mpmath.
    """
    m = degree // 2
    n = degree - m
    xs = [float(x) for x in xs]
    xt = torch.tensor(xs, dtype=_F64)
    taylor64 = krules.geometric_sum(xt, degree + 1).tolist()
    try:
        pade64: list[float] | None = krules.polyval_pair(xt, m, n).tolist()
    except ValueError:  # degenerate table that mpmath cannot solve (degree < 46)
        pade64 = None
    rows: list[dict[str, Any]] = []
    for name, f64, mpf_fn in (
        (f"Taylor-{degree}", taylor64, lambda x: _mp_taylor(x, degree)),
        (f"Pade-{m}/{n}", pade64, lambda x: _mp_pade(x, m, n)),
    ):
        for i, x in enumerate(xs):
            exact = _exact(x)
            row = {"method": name, "x": x, "metric": f"abs_err_x{x:g}"}
            if f64 is None:
                row.update(float64=None, mpmath=None, note="mpmath: singular Padé system")
            else:
                row.update(float64=_abs_err(f64[i], exact), mpmath=_abs_err(mpf_fn(x), exact))
            rows.append(row)
    return rows


def pade_degeneracy(degree: int = 100) -> list[dict[str, Any]]:
    """Why SVD-Padé is the exact gradient: the official [K/2 / K/2] Padé of 1/(1−x) is one member
    of a degenerate family (every c(x)/(c(x)(1−x)) matches the series), so Q(1) ≈ 0 and
    P(x)/Q(x) = 1/(1−x) to round-off for x < 1, while P(1)/Q(1) is noise. Rows: quantity, float64
    (float64 coefficients, the layer's evaluation), mpmath (mp coefficients, mp.dps = 20).
    """
    from mpmath import mp

    m = degree // 2
    n = degree - m
    p, q = krules.pade_mp_coefficients(m, n)
    p64, q64 = krules.pade_coefficients(m, n)
    one = torch.ones(1, dtype=_F64)
    with mp.workdps(20):
        p1, q1 = sum(p), sum(q)
        ratio_mp = float(p1 / q1)
        p1, q1 = float(p1), float(q1)
    # the layer's float64 Horner at x = 1 (the value K would take without the mpmath substitute)
    pc, qc = krules._horner_coefficients(m, n, _F64, one.device)
    p1_64, q1_64 = float(krules._horner(pc, one)[0]), float(krules._horner(qc, one)[0])
    ratio_64 = p1_64 / q1_64 if q1_64 != 0 else (float("-inf") if p1_64 < 0 else float("inf"))
    grid = torch.linspace(0.0, 0.999, 4000, dtype=_F64)
    rel = (krules.polyval_pair(grid, m, n) * (1 - grid) - 1).abs().max().item()
    return [
        {"quantity": "Q(1)", "float64": q1_64, "mpmath": q1},
        {"quantity": "P(1)", "float64": p1_64, "mpmath": p1},
        {"quantity": "P(1)/Q(1)", "float64": ratio_64, "mpmath": ratio_mp},
        {"quantity": "max|q_k|", "float64": float(q64.abs().max()), "mpmath": None},
        {"quantity": "max|p_k|", "float64": float(p64.abs().max()), "mpmath": None},
        {"quantity": "max_x<=0.999 |P/Q·(1−x) − 1|", "float64": rel, "mpmath": None},
    ]


def gradient_bounds(
    eps: float = float(torch.finfo(_F64).eps),
    degree: int = 100,
    threshold: float = 1e10,
) -> list[dict[str, Any]]:
    """ICCV'21 Table 7: the largest |K_ij| each rule can produce at the eigenvalue floor ``eps``.

    ``measured`` calls the layer's K builders at the rule's worst case (``trigger``); ``analytic``
    is the closed form. SVD-Padé's bound is |P(1)/Q(1)|/eps with P(1)/Q(1) from mpmath (float64
    evaluates Q(1) to 0: see :func:`pade_degeneracy`), so it depends on round-off in the
    coefficient solve, not on the approximation. SVD-Newton builds no K (``None``); the exact SVD
    is unbounded (``inf``; measured at the two closest distinct floats above eps).
    """
    m = degree // 2
    ties = torch.tensor([eps, eps], dtype=_F64)
    closest = torch.tensor([eps, float(torch.nextafter(torch.tensor(eps, dtype=_F64),
                                                       torch.tensor(1.0, dtype=_F64)))],
                           dtype=_F64)  # fmt: skip
    topn = top_n_spectrum(torch.tensor([0.0, 2 * eps], dtype=_F64), eps, keep=1)

    def kmax(k: torch.Tensor) -> float:
        return float(k.abs().max())

    try:
        at_one: float | None = krules.pade_value_at_one(m, degree - m)
        pade_measured: float | None = kmax(krules.pade_k(ties, degree))
    except ValueError:  # degenerate table that mpmath cannot solve (degree < 46)
        at_one = pade_measured = None
    return [
        {
            "method": "SVD-Pade", "rule": "svd-pade", "metric": "grad_upper_bound",
            "measured": pade_measured,
            "analytic": None if at_one is None else abs(at_one) / eps,
            "analytic_form": "|P_M(1)/Q_N(1)|/λ", "trigger": "λ_i = λ_j ≤ eps", "eps": eps,
        },
        {
            "method": "SVD-Taylor", "rule": "svd-taylor", "metric": "grad_upper_bound",
            "measured": kmax(krules.taylor_k(ties, degree)), "analytic": (degree + 1) / eps,
            "analytic_form": "(K+1)/λ", "trigger": "λ_i = λ_j ≤ eps", "eps": eps,
        },
        {
            "method": "SVD-Trunc", "rule": "svd-trunc", "metric": "grad_upper_bound",
            "measured": kmax(krules.truncated_k(ties, threshold)), "analytic": threshold,
            "analytic_form": "T", "trigger": "|1/(λ_i − λ_j)| > T", "eps": eps,
        },
        {
            "method": "SVD-TopN", "rule": "svd-topn", "metric": "grad_upper_bound",
            "measured": kmax(krules.exact_k(topn)), "analytic": 1.0 / eps,
            "analytic_form": "1/λ_i", "trigger": "λ_j < eps (dropped, set to eps)", "eps": eps,
        },
        {
            "method": "SVD-Newton", "rule": "svd-newton", "metric": "grad_upper_bound",
            "measured": None, "analytic": None, "analytic_form": "/",
            "trigger": "/", "eps": eps,
        },
        {
            "method": "SVD", "rule": "svd", "metric": "grad_upper_bound",
            "measured": kmax(krules.exact_k(closest)), "analytic": float("inf"),
            "analytic_form": "1/(λ_i − λ_j)", "trigger": "λ_i → λ_j", "eps": eps,
        },
    ]  # fmt: skip
