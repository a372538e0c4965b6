"""The registered iteration rules of the eigendecomposition family: ``svd-newton``, ``svd-pi``.

Both keep the eigh forward of ``spectral.py`` and compute ∂l/∂P themselves from its factors
(:class:`~svdablate.metalayers.spectral.SpectralState`): SVD-Newton backpropagates through the
Newton-Schulz iteration on P (ICCV'21 §3.3), SVD-PI through power iteration with deflation
(Wang et al. NeurIPS'19; ICCV'21 eq. 13).
"""

from __future__ import annotations

import torch
from torch import Tensor

from svdablate.metalayers import krules
from svdablate.metalayers.iterative import newton_schulz
from svdablate.metalayers.registry import check_positive_int
from svdablate.metalayers.spectral import SpectralState, iteration_rule


def _check_iters(iters: int) -> None:
    check_positive_int("iters", iters, 1)


@iteration_rule("svd-newton", aliases=("SVD-Newton", "Newton"), validate=_check_iters)
def _svd_newton(state: SpectralState, grad: Tensor, *, iters: int = 10) -> Tensor:
    """Backprop through ``iters`` Newton-Schulz iterations on P (ICCV'21 §3.3, eqs. 7-10)."""
    with torch.enable_grad():
        p = state.p.detach().requires_grad_(True)
        out = newton_schulz(p, state.power, iters)
        (gp,) = torch.autograd.grad(out, p, grad)
    return 0.5 * (gp + gp.mT)


@iteration_rule("svd-pi", aliases=("SVD-PI", "PI", "power-iteration"), validate=_check_iters)
def _svd_pi(state: SpectralState, grad: Tensor, *, iters: int = 20) -> Tensor:
    """Power-iteration gradient with deflation (Wang et al. NeurIPS'19; ICCV'21 eq. 13).

    Eigenvectors v_1..v_d in descending order are taken as ``iters`` power iterations
    v ← M_k v/‖M_k v‖ started at the eigh eigenvector, on the deflated
    M_k = P − Σ_{j<k} λ_j v_j v_jᵀ with λ_k = v_kᵀ M_k v_k. Backpropagating that unrolled graph
    at its fixed point has a closed form, used here (it equals autograd through the literal loop,
    see the tests): in the eigenbasis, with Ĝ = Uᵀ sym(G) U,
    W_jk = 2Ĝ_jk τ_jk (f_k − λ_k f_j/λ_j) for λ_j below λ_k, where
    τ_jk = (1/λ_k) Σ_{s<iters} (λ_j/λ_k)^s is the Taylor form of 1/(λ_k − λ_j);
    W_jk = 2Ĝ_jk f_k/λ_k for λ_j above λ_k (the deflated directions); diagonal f'(λ_k) Ĝ_kk;
    ∂l/∂P = U sym(W) Uᵀ. The official code instead multiplies by (I − V Vᵀ) with the full V,
    which is ≈ 0, so it passes no gradient through the eigenvectors; that is not reproduced.
    """
    u, lam, f = state.u, state.lam, state.f
    gh = torch.matmul(torch.matmul(u.mT, grad), u)
    gh = gh + gh.mT  # 2 sym(Ĝ)
    d = lam.shape[-1]
    # ascending order: index j < k means λ_j ≤ λ_k, i.e. j is computed *after* k (below k)
    lj = lam.unsqueeze(-1)  # rows j
    lk = lam.unsqueeze(-2)  # columns k
    below = torch.ones(d, d, dtype=torch.bool, device=lam.device).triu(1)  # row j < column k
    x = (lj / lk).clamp_max(1.0)
    tau = krules.geometric_sum(x, iters) / lk
    fj_over = (f / lam).unsqueeze(-1)  # f_j/λ_j on rows
    w_below = tau * (f.unsqueeze(-2) - lk * fj_over)
    w_above = (f / lam).unsqueeze(-2).expand_as(w_below)
    w = torch.where(below, w_below, w_above).mul_(gh)
    w = 0.5 * (w + w.mT)
    fprime = state.power * f / lam
    w.diagonal(dim1=-2, dim2=-1).copy_(fprime * 0.5 * gh.diagonal(dim1=-2, dim2=-1))
    return torch.matmul(torch.matmul(u, w), u.mT)
