"""K-matrix builders of the eigendecomposition backward (ICCV'21 eqs. 5, 12, 16, 21).

Each K builder is a pure function of the (floored, ascending) eigenvalues ``lam`` of shape
(..., d) that returns K of shape (..., d, d) with a zero diagonal. The series-based rules are
defined by their approximant g(x) ≈ 1/(1−x) (:func:`taylor_series`, :func:`pade_series`), which
``eigen_rules.py`` registers with one decorator line; :func:`series_k` turns g into K. The sign/tie
conventions follow the official code (KingJamesSong/DifferentiableSVD): K_ij = +g(x)/λ_i when
λ_i ≥ λ_j and −g(x)/λ_j otherwise, with x = λ_small/λ_large, so at equal eigenvalues
K_ij = K_ji = g(1)/λ.

SVD-Padé and the degenerate [50/50] table. 1/(1−x) is itself rational, so its [50/50] Padé
approximant is not unique: every P/Q = c(x)/(c(x)(1−x)) matches the degree-100 Taylor series (the
50 equations for Q all read Q(1) = 0, and p_k = q_0 + … + q_k). The official recipe
``mp.dps = 20; pade(taylor(1/(1−x), 0, 100), 50, 50)`` returns one member selected by the round-off
of the singular solve (for degree < 46 mpmath reports the system singular); coefficients in
:func:`pade_coefficients`. Consequences, measured: (i) for x < 1, P(x)/Q(x) equals 1/(1−x) to
float64 round-off (|error| ≈ 1e-12 at x = 0.99, 6e-10 at x = 0.999, the order of the paper's
Table 6: see :func:`svdablate.metalayers.analysis.approximation_errors`), so SVD-Padé *is* the
exact gradient, not a smoothed one; (ii) at x = 1 the value is arbitrary: Q(1) = 4.1e-22 in mpmath
(P(1)/Q(1) = −1.33e21, which is the paper's Table 7 bound 6.00e36 = 1.33e21/EPS) but exactly 0.0
in float64, so the official code gets ±inf there and replaces it by the batch's largest finite K.
:func:`pade_k` (the paper's K, for the analyses) puts the mpmath value of P(1)/Q(1) at x = 1; the
SVD-Padé *backward* does not use it: its ties take the Loewner limit f'(λ), the value its
approximant tends to (``spectral.TIES``). With −1.33e21 there, a rank-deficient GCP covariance
(256 channels over 196 positions) gave a gradient 1e14× the exact one. Elsewhere P and Q are
evaluated in float64 by Horner's rule (the official code sums the power basis; both are float64
evaluations of the same polynomials and differ by round-off).
:func:`svdablate.metalayers.analysis.pade_degeneracy` shows all of this.

Ties in the exact rule: K_ij = 1/(λ_i − λ_j) is ±inf at equal eigenvalues (in practice: several
eigenvalues floored at eps). The official code replaces ±inf by the batch's largest finite K; here
:func:`exact_k` leaves 0 there, and the exact methods (``svd``, ``svd-topn``) never form K:
their backward uses the closed-form divided difference (f_i − f_j)/(λ_i − λ_j) of f = λ^{±1/2},
whose value at equal eigenvalues is the limit f'(λ), so it is the Fréchet derivative of f at the
floored matrix U max(Λ, eps) Uᵀ, repeated eigenvalues included (no batch-wide reduction).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "exact_k",
    "geometric_sum",
    "pade_coefficients",
    "pade_k",
    "pade_mp_coefficients",
    "pade_series",
    "pade_value_at_one",
    "polyval_pair",
    "series_k",
    "symmetric_map",
    "taylor_k",
    "taylor_series",
    "truncated_k",
]


def _pairs(lam: Tensor) -> tuple[Tensor, Tensor]:
    """(x = λ_small/λ_large, signed λ_large: +λ_i if λ_i ≥ λ_j else −λ_j) for all pairs (i, j)."""
    li = lam.unsqueeze(-1)
    lj = lam.unsqueeze(-2)
    big = torch.maximum(li, lj)
    x = torch.minimum(li, lj).div_(big)
    signed_big = torch.where(li >= lj, big, big.neg())
    return x, signed_big


_PACK_MIN_DIM = 128


@functools.cache
def _upper_mask(h: int, device: torch.device) -> Tensor:
    return torch.ones(h, h, dtype=torch.bool, device=device).triu()


def symmetric_map(fn: Callable[..., Tensor], *mats: Tensor) -> Tensor:
    """fn(*mats) for symmetric matrices (..., d, d) and an elementwise fn, once per unordered pair.

    For even d ≥ 128 the unordered pairs are packed without index gathers: with h = d/2, the
    off-diagonal block m[:h, h:] plus one h×h matrix holding the upper triangle of m[:h, :h] and
    the lower triangle of m[h:, h:]; fn runs on those 2·h² entries only. The diagonal of the
    result is fn of the diagonal of the [:h, :h] blocks in both halves (callers overwrite or
    ignore it).
    """
    d = mats[0].shape[-1]
    if d % 2 or d < _PACK_MIN_DIM:  # small d: fewer tensor ops beat fewer elements
        return fn(*mats)
    h = d // 2
    up = _upper_mask(h, mats[0].device)
    packed = [
        torch.cat((m[..., :h, h:], torch.where(up, m[..., :h, :h], m[..., h:, h:])), -2)
        for m in mats
    ]
    gp = fn(*packed)
    gb, gm = gp[..., :h, :], gp[..., h:, :]
    out = torch.empty((*gp.shape[:-2], d, d), dtype=gp.dtype, device=gp.device)
    gmt = gm.mT
    torch.where(up, gm, gmt, out=out[..., :h, :h])
    torch.where(up, gmt, gm, out=out[..., h:, h:])
    out[..., :h, h:] = gb
    out[..., h:, :h] = gb.mT
    return out


def series_k(lam: Tensor, g: Callable[[Tensor], Tensor]) -> Tensor:
    """K_ij = ±g(x)/λ_large with the official signs, g ≈ 1/(1−x) (ICCV'21 eqs. 14-21).

    K_ij = g(x)/λ_i if λ_i ≥ λ_j else −g(x)/λ_j (so K_ij = K_ji = g(1)/λ at ties), zero diagonal;
    g is evaluated once per unordered pair (:func:`symmetric_map`).
    """
    x, signed_big = _pairs(lam)
    return _zero_diagonal_(symmetric_map(g, x).div_(signed_big))


def _zero_diagonal_(k: Tensor) -> Tensor:
    k.diagonal(dim1=-2, dim2=-1).zero_()
    return k


def geometric_sum(x: Tensor, terms: int) -> Tensor:
    """Σ_{k<terms} x^k for 0 ≤ x ≤ 1 as expm1(terms·log x)/(x − 1), ``terms`` at x = 1 (eq. 15).

    Equal to the float64 series at the same x to a few ulp: x − 1 is exact for x ≥ 1/2 and
    expm1(n·log x) has relative error O(u). (The textbook (1 − x^n)/(1 − x) with x^n = pow(x, n) is
    not: it cancels catastrophically as x → 1.)
    """
    s = torch.log(x).mul_(terms).expm1_().div_(x - 1)
    return s.masked_fill_(x == 1, float(terms))


def exact_k(lam: Tensor) -> Tensor:
    """K_ij = 1/(λ_i − λ_j); 0 on the diagonal and at equal eigenvalues (ICCV'21 eq. 5)."""
    diff = lam.unsqueeze(-1) - lam.unsqueeze(-2)
    k = diff.reciprocal()
    return k.masked_fill_(diff == 0, 0.0)


def truncated_k(lam: Tensor, threshold: float = 1e10) -> Tensor:
    """K_ij = 1/(λ_i − λ_j) clipped to ±T; equal eigenvalues give +T both ways (ICCV'21 eq. 12)."""
    k = (lam.unsqueeze(-1) - lam.unsqueeze(-2)).reciprocal_()
    return _zero_diagonal_(k.clamp_(-threshold, threshold))


def taylor_series(x: Tensor, degree: int = 100) -> Tensor:
    """g(x) = Σ_{k=0..K} x^k, the degree-K Taylor polynomial of 1/(1−x) (ICCV'21 eq. 15)."""
    return geometric_sum(x, degree + 1)


def taylor_k(lam: Tensor, degree: int = 100) -> Tensor:
    """K_ij = ±(1/λ_large) Σ_{k=0..K} x^k, x = λ_small/λ_large; (K+1)/λ at ties (ICCV'21 eq. 16)."""
    return series_k(lam, functools.partial(taylor_series, degree=degree))


@functools.cache
def pade_mp_coefficients(m: int = 50, n: int = 50) -> tuple[tuple, tuple]:
    """mpmath coefficients (ascending) of the official [m/n] Padé of 1/(1−x) (mp.dps = 20).

    The system is singular in exact arithmetic (all its rows say Q(1) = 0); mpmath solves it
    only because round-off perturbs it, which happens for m + n >= 46. Otherwise: ValueError.
    """
    from mpmath import mp, mpf, pade, taylor

    with mp.workdps(20):  # the official recipe: mp.dps = 20; pade(taylor(f, 0, m+n), m, n)
        one = mpf(1)
        try:
            p, q = pade(taylor(lambda x: one / (one - x), 0, m + n), m, n)
        except ZeroDivisionError as exc:
            raise ValueError(
                f"the [{m}/{n}] Padé table of 1/(1-x) is degenerate and mpmath reports its "
                "linear system singular (at mp.dps = 20 only degree >= 46 gets through, on "
                "round-off); use the default degree=100"
            ) from exc
    return tuple(p), tuple(q)


@functools.cache
def _pade_mp(m: int, n: int) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    from mpmath import mp

    p, q = pade_mp_coefficients(m, n)
    with mp.workdps(20):
        at_one = sum(p) / sum(q)
    return tuple(float(c) for c in p), tuple(float(c) for c in q), float(at_one)


def pade_coefficients(m: int = 50, n: int = 50) -> tuple[Tensor, Tensor]:
    """Float64 coefficients (ascending) of the official [m/n] Padé of 1/(1−x), cached (eq. 19)."""
    p, q, _ = _pade_mp(m, n)
    return torch.tensor(p, dtype=torch.float64), torch.tensor(q, dtype=torch.float64)


def pade_value_at_one(m: int = 50, n: int = 50) -> float:
    """P(1)/Q(1) of the official [m/n] Padé in mpmath (float64 gives Q(1) = 0: ±inf)."""
    return _pade_mp(m, n)[2]


_CHUNK = 1 << 17  # pairs per Horner pass: x and the (2, chunk) accumulator (3 MiB) stay in cache


@functools.cache
def _horner_coefficients(
    m: int, n: int, dtype: torch.dtype, device: torch.device
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Ascending coefficients of P and Q as 0-d tensors on ``device`` (cached per dtype/device)."""
    p, q, _ = _pade_mp(m, n)
    pt = torch.tensor(p, dtype=torch.float64).to(dtype=dtype, device=device)
    qt = torch.tensor(q, dtype=torch.float64).to(dtype=dtype, device=device)
    return tuple(pt.unbind()), tuple(qt.unbind())


def _horner(coef: tuple[Tensor, ...], x: Tensor) -> Tensor:
    """Horner's rule, acc ← c_k + acc·x; 0-d coefficients or (2, 1) columns (P and Q stacked)."""
    top = coef[-1]
    acc = top.expand(torch.broadcast_shapes(top.shape, x.shape)).clone()
    for c in coef[-2::-1]:
        torch.addcmul(c, acc, x, out=acc)  # acc ← c + acc·x, one fused pass per degree
    return acc


@functools.cache
def _stacked_coefficients(
    m: int, n: int, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, ...]:
    """Per degree (ascending) the (2, 1) column [p_k, q_k], zero-padded to one degree."""
    pc, qc = _horner_coefficients(m, n, dtype, device)
    zero = torch.zeros((), dtype=dtype, device=device)
    deg = max(len(pc), len(qc))
    pc = pc + (zero,) * (deg - len(pc))
    qc = qc + (zero,) * (deg - len(qc))
    return tuple(torch.stack((a, b)).reshape(2, 1) for a, b in zip(pc, qc, strict=True))


def polyval_pair(x: Tensor, m: int, n: int) -> Tensor:
    """P_m(x)/Q_n(x) of the official Padé, elementwise, by Horner's rule (ICCV'21 eq. 20).

    One fused multiply-add (``addcmul``) per degree for P and Q together, over chunks that stay
    in cache; no Python loop over elements.
    """
    flat = x.reshape(-1)
    coef = _stacked_coefficients(m, n, x.dtype, x.device)
    out = torch.empty_like(flat)
    for start in range(0, flat.shape[0], _CHUNK):
        acc = _horner(coef, flat[start : start + _CHUNK])  # P and Q in one (2, chunk) pass
        torch.div(acc[0], acc[1], out=out[start : start + _CHUNK])
    return out.view_as(x)


def pade_series(x: Tensor, degree: int = 100) -> Tensor:
    """g(x) = P_M(x)/Q_N(x), the official [M/N] Padé of 1/(1−x) (ICCV'21 eq. 19).

    At x = 1 (ties) the mpmath value of P(1)/Q(1): in float64 Q(1) evaluates to 0.
    """
    m = degree // 2
    n = degree - m
    return polyval_pair(x, m, n).masked_fill_(x == 1, _pade_mp(m, n)[2])


def pade_k(lam: Tensor, degree: int = 100) -> Tensor:
    """K_ij = ±(1/λ_large) P_M(x)/Q_N(x), [M/N] = [degree/2 / degree/2] (ICCV'21 eq. 21)."""
    return series_k(lam, functools.partial(pade_series, degree=degree))
