"""The registered K and series rules of the eigendecomposition family (ICCV'21 eqs. 5, 11-21).

Each method is one decorator line on one function (machinery: ``spectral.py``; the K builders and
approximants themselves: ``krules.py``):

* K rules: ``svd`` (exact K = 1/(λ_i − λ_j), MPN-COV), ``svd-topn`` (exact K on the Top-N
  spectrum, eq. 11), ``svd-trunc`` (K clipped to ±T, eq. 12);
* series rules, g(x) ≈ 1/(1−x): ``svd-taylor`` (degree-K Taylor polynomial, eq. 16) and
  ``svd-pade`` (the official [K/2 / K/2] Padé approximant, eq. 21).

At equal eigenvalues (``ties``, see ``spectral.TIES``): ``svd`` and ``svd-pade`` take the
Loewner limit f'(λ); ``svd-taylor`` and ``svd-trunc`` their own K ((K+1)/λ, +T), as the official
code; ``svd-topn`` the batch's largest finite K, as the official code's overflow check.

Option checks run at forward time, so a bad option fails before any backward.
"""

from __future__ import annotations

from torch import Tensor

from svdablate.metalayers import krules
from svdablate.metalayers.registry import check_positive_int
from svdablate.metalayers.spectral import k_rule, series_rule

__all__ = ["top_n_spectrum"]


def _check_degree(degree: int) -> None:
    check_positive_int("degree", degree, 0)


def _check_pade(degree: int) -> None:
    check_positive_int("degree", degree, 2)
    krules.pade_value_at_one(degree // 2, degree - degree // 2)  # computes and caches


def _check_threshold(threshold: float) -> None:
    if not (isinstance(threshold, (int, float)) and threshold > 0):
        raise ValueError(f"threshold must be > 0, got {threshold!r}")


@k_rule("svd", aliases=("MPN-COV", "SVD", "eig", "exact"), exact=True)
def _svd(lam: Tensor) -> Tensor:
    """Exact K_ij = 1/(λ_i − λ_j) (ICCV'21 eq. 5; MPN-COV)."""
    return krules.exact_k(lam)


def top_n_spectrum(lam: Tensor, eps: float, *, keep: int | None = None) -> Tensor:
    """Keep the ``keep`` largest eigenvalues, set the others to eps (ICCV'21 eq. 11).

    Default ``keep`` = d − 50 as the official code (at least 1).
    """
    d = lam.shape[-1]
    n = max(d - 50, 1) if keep is None else int(keep)
    if not 1 <= n <= d:
        raise ValueError(f"keep must be in [1, {d}], got {keep!r}")
    if n == d:
        return lam
    out = lam.clone()
    out[..., : d - n] = eps  # ascending order: the first d - n are the smallest
    return out


@k_rule(
    "svd-topn",
    aliases=("SVD-TopN", "TopN"),
    spectrum=top_n_spectrum,
    exact=True,
    ties="largest-k",  # the N-smallest eigenvalues, all set to eps, tie: K as the official code
)
def _svd_topn(lam: Tensor) -> Tensor:
    """Exact K on the Top-N spectrum (ICCV'21 eqs. 5, 11)."""
    return krules.exact_k(lam)


@k_rule("svd-trunc", aliases=("SVD-Trunc", "Trunc"), validate=_check_threshold)
def _svd_trunc(lam: Tensor, *, threshold: float = 1e10) -> Tensor:
    """K_ij = 1/(λ_i − λ_j) clipped to ±T (ICCV'21 eq. 12)."""
    return krules.truncated_k(lam, threshold)


@series_rule("svd-taylor", aliases=("SVD-Taylor", "Taylor"), validate=_check_degree)
def _svd_taylor(x: Tensor, *, degree: int = 100) -> Tensor:
    """K from the degree-K Taylor series of 1/(1−x) (ICCV'21 eq. 16)."""
    return krules.taylor_series(x, degree)


@series_rule(
    "svd-pade",
    aliases=("SVD-Padé", "SVD-Pade", "Pade", "Padé"),
    validate=_check_pade,
    ties="limit",  # P/Q is 1/(1−x) to round-off below x = 1 and arbitrary at it (−1.33e21)
)
def _svd_pade(x: Tensor, *, degree: int = 100) -> Tensor:
    """K from the official [degree/2 / degree/2] Padé approximant of 1/(1−x) (ICCV'21 eq. 21)."""
    return krules.pade_series(x, degree)
