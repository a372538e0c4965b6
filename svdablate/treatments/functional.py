"""Pure functions behind NOG and OLR (ECCV'22 §5): no state, no modules."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

__all__ = ["as_matrix", "nearest_orthogonal", "olr_switch", "optimal_lr"]


def as_matrix(t: Tensor) -> Tensor:
    """View a weight or gradient (C_out, ...) as the (C_out, C_in·k·k) matrix W of eq. 9."""
    if t.dim() < 2:
        raise ValueError(
            f"expected a tensor with at least 2 dims (C_out, ...), got shape {tuple(t.shape)}"
        )
    return t.reshape(t.shape[0], -1)


def nearest_orthogonal(G: Tensor) -> Tensor:
    """Nearest orthogonal matrix UVᵀ of G = USVᵀ (eq. 17) on G's (C_out, -1) view, shape preserved.

    A zero or non-finite G is returned unchanged (no NaN is ever produced); the SVD runs in at
    least float32 and the result has G's dtype. Which of the two is returned is decided on the
    device (``torch.where``): no host read, so a GPU step is not made to wait here.
    """
    M = as_matrix(G)
    work = M if M.dtype in (torch.float32, torch.float64) else M.float()
    try:
        U, _, Vh = torch.linalg.svd(work, full_matrices=False)
    except torch.linalg.LinAlgError as exc:  # LAPACK failure (a non-finite G on some builds)
        warnings.warn(
            f"NOG: SVD of the gradient failed ({exc}); gradient left unchanged", stacklevel=2
        )
        return G
    R = (U @ Vh).to(G.dtype)
    usable = torch.isfinite(M).all() & M.any() & torch.isfinite(R).all()
    return torch.where(usable, R, M).reshape(G.shape)


def optimal_lr(weight: Tensor, grad: Tensor) -> float:
    """η* = (wᵀw)(lᵀw) / ((wᵀw)(lᵀl) + 2(lᵀw)²) of eq. 20, unclipped (float64; 0 if w or l = 0)."""
    w = weight.detach().reshape(-1).double()
    g = grad.detach().reshape(-1).double()
    if w.numel() != g.numel():
        raise ValueError(f"weight and grad differ in size: {w.numel()} vs {g.numel()}")
    ww = torch.dot(w, w)
    lw = torch.dot(g, w)
    ll = torch.dot(g, g)
    den = ww * ll + 2.0 * lw * lw
    if float(den) == 0.0:
        return 0.0
    return float(ww * lw / den)


def olr_switch(eta: float, base_lr: float) -> float:
    """Eq. 21: η* when 0 < η* < base_lr (and finite), else base_lr."""
    if math.isfinite(eta) and 0.0 < eta < base_lr:
        return eta
    return base_lr
