"""The Loewner matrix L of the eigendecomposition family's backward and the backward itself.

∂l/∂P = U (L ∘ sym(Uᵀ G U)) Uᵀ (ICCV'21 eqs. 5-7, Daleckii-Krein; :func:`spectral_backward`),
where a rule only says how the symmetric L is built from the eigenvalues λ and f(λ) = λ^{±1/2}:
from its K (:func:`loewner_from_k`), as the closed-form divided difference of f for the exact
rule (:func:`power_loewner`), from a series approximant of 1/(1−x) (:func:`series_loewner`), and
at ties as the official code's overflow check (:func:`largest_k_at_ties`). The rules and their
registration are in :mod:`.spectral`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from svdablate.metalayers import krules

__all__ = [
    "largest_finite_k",
    "largest_k_at_ties",
    "loewner_from_k",
    "power_loewner",
    "series_loewner",
    "spectral_backward",
]


def spectral_backward(u: Tensor, loewner: Tensor, g: Tensor) -> Tensor:
    """∂l/∂P = U (L ∘ sym(Uᵀ G U)) Uᵀ for a symmetric L (ICCV'21 eqs. 5-7, Daleckii-Krein).

    Four batched matmuls (the ½ of sym rides on the second one's alpha) and two elementwise
    passes, in two fresh buffers: at the GCP size a fresh 16 MiB buffer costs as much as an
    elementwise pass (page faults). ``loewner`` (fresh) is overwritten.
    """
    ut = u.mT
    a = torch.bmm(ut, g)
    m = torch.baddbmm(a, a, u, beta=0.0, alpha=0.5)  # ½ Uᵀ G U
    loewner.mul_(torch.add(m, m.mT, out=a))
    torch.bmm(u, loewner, out=m)
    return torch.bmm(m, ut, out=a)


def power_loewner(lam: Tensor, f: Tensor, power: float) -> Tensor:
    """L = (f_i − f_j)/(λ_i − λ_j) for f = λ^{±1/2}, f'(λ) at ties (Daleckii-Krein, eq. 5).

    Closed forms without cancellation: 1/(√λ_i + √λ_j) for the square root and
    −1/(√λ_i √λ_j (√λ_i + √λ_j)) for the inverse square root; their diagonal is f'(λ), so the
    exact rule's backward is the Fréchet derivative of f at U max(Λ, eps) Uᵀ, repeated
    eigenvalues included. Exactly symmetric (every product and sum is formed symmetrically).
    """
    if power == 0.5:
        return (f.unsqueeze(-1) + f.unsqueeze(-2)).reciprocal_()
    if power == -0.5:
        root = lam.sqrt()
        t = root.unsqueeze(-1) + root.unsqueeze(-2)
        return t.mul_(root.unsqueeze(-1) * root.neg().unsqueeze(-2)).reciprocal_()
    raise ValueError(f"power must be 0.5 or -0.5, got {power!r}")


def loewner_from_k(k: Tensor, lam: Tensor, f: Tensor, power: float) -> Tensor:
    """L = K ∘ f_i + Kᵀ ∘ f_j off the diagonal, f'(λ) on it (eqs. 5-7 with ∂l/∂U, ∂l/∂Λ).

    ``k`` (fresh) is overwritten. For an antisymmetric K this is K_ij (f_i − f_j).
    """
    t = k.mul_(f.unsqueeze(-1))  # K_ij f_i
    out = t + t.mT
    out.diagonal(dim1=-2, dim2=-1).copy_(power * f / lam)
    return out


def series_loewner(
    lam: Tensor,
    f: Tensor,
    power: float,
    g: Callable[[Tensor], Tensor],
    *,
    limit_at_ties: bool = False,
) -> Tensor:
    """L of the series rule K_ij = ±g(x)/λ_large, x = λ_small/λ_large (ICCV'21 eqs. 14-21).

    Off ties K_ij f_i + K_ji f_j = g(x)(1 − x)·(f_i − f_j)/(λ_i − λ_j), which reuses the
    cancellation-free :func:`power_loewner`; at ties (x = 1, the official K_ij = K_ji = g(1)/λ)
    it is 2g(1) f/λ = (2/p)·g(1)·f'(λ) with f = λ^p, or with ``limit_at_ties`` the limit of
    g(x)(1 − x) → 1 times the Loewner limit, f'(λ); the diagonal is f'(λ). All of it runs once
    per unordered pair (:func:`krules.symmetric_map`).
    """
    li, lj = lam.unsqueeze(-1), lam.unsqueeze(-2)
    x = torch.minimum(li, lj).div_(torch.maximum(li, lj))

    def pairs(x: Tensor, loewner: Tensor) -> Tensor:
        tie = x == 1.0
        weight = torch.rsub(x, 1.0).masked_fill_(tie, 2.0 / power)
        out = g(x).mul_(loewner).mul_(weight)
        return torch.where(tie, loewner, out) if limit_at_ties else out

    out = krules.symmetric_map(pairs, x, power_loewner(lam, f, power))
    out.diagonal(dim1=-2, dim2=-1).copy_(power * f / lam)
    return out


def largest_finite_k(lam: Tensor) -> Tensor:
    """max of the finite K_ij = 1/(λ_i − λ_j) over the whole batch, 0 if none (eq. 5).

    The official code's overflow check (``k[k == inf] = k[k != inf].max()``, its zero diagonal
    included). For ascending eigenvalues that is 1/(the smallest positive gap between
    neighbours): rounding is monotonic, so no other pair's difference is smaller.
    """
    gaps = lam.diff(dim=-1)
    smallest = gaps.masked_fill(gaps <= 0, float("inf")).amin()
    return smallest.reciprocal()  # 1/inf = 0: no two eigenvalues differ


def largest_k_at_ties(loewner: Tensor, lam: Tensor, f: Tensor) -> Tensor:
    """L_ij = K_max (f_i + f_j) where λ_i = λ_j, i ≠ j, K_max the batch's largest finite K.

    What K ∘ f_i + Kᵀ ∘ f_j gives when the official code's overflow check has replaced the
    +inf of 1/(λ_i − λ_j) by :func:`largest_finite_k` (ICCV'21 SVD-TopN, ``SVD_TopN.py``).
    """
    ties = lam.unsqueeze(-1) == lam.unsqueeze(-2)
    ties.diagonal(dim1=-2, dim2=-1).fill_(False)
    tie_value = (f.unsqueeze(-1) + f.unsqueeze(-2)).mul_(largest_finite_k(lam))
    return torch.where(ties, tie_value, loewner)
