"""Public entry points: ``sqrtm``, ``inv_sqrtm``, ``covariance``, ``spectrum_stats``."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from svdablate.metalayers.registry import (
    METHODS,
    MetaLayerFailure,
    resolve_method,
    validate_options,
)

__all__ = ["covariance", "inv_sqrtm", "spectrum_stats", "sqrtm"]


def _apply(p: Tensor, method: str, power: float, opts: dict[str, Any]) -> Tensor:
    spec = METHODS[resolve_method(method)]
    merged = validate_options(spec, opts)
    if not isinstance(p, Tensor):
        raise TypeError(f"P must be a torch.Tensor, got {type(p).__name__}")
    if p.dim() not in (2, 3) or p.shape[-1] != p.shape[-2]:
        raise ValueError(f"P must have shape (B, d, d) or (d, d), got {tuple(p.shape)}")
    if p.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"P must be float32 or float64, got {p.dtype}")
    single = p.dim() == 2
    out = spec.impl(p.unsqueeze(0) if single else p, power, merged)
    return out.squeeze(0) if single else out


def sqrtm(P: Tensor, method: str = "svd", **opts: Any) -> Tensor:
    """Matrix square root Q = P^{1/2} of SPD P (B, d, d) or (d, d) by ``method`` (ICCV'21 eq. 4).

    Options (per method, see ``METHODS[name].options``): ``precision``, ``eps``, ``iters``,
    ``degree``, ``keep``, ``threshold``. Raises ``MetaLayerFailure`` on solver failure.
    """
    return _apply(P, method, 0.5, opts)


def inv_sqrtm(P: Tensor, method: str = "svd", **opts: Any) -> Tensor:
    """Inverse square root S = P^{-1/2} of SPD P (B, d, d) or (d, d) by ``method``.

    Same options and failure behaviour as :func:`sqrtm`.
    """
    return _apply(P, method, -0.5, opts)


def covariance(X: Tensor) -> Tensor:
    """P = X̄ X̄ᵀ / N with X̄ = X − mean over N (ICCV'21 eq. 1); X (B, d, N) → (B, d, d).

    Centring subtracts the mean in X's dtype; no N×N centring matrix is built.
    """
    if X.dim() not in (2, 3):
        raise ValueError(f"X must have shape (B, d, N) or (d, N), got {tuple(X.shape)}")
    xc = X - X.mean(dim=-1, keepdim=True)
    return torch.matmul(xc, xc.mT) / X.shape[-1]


def _kappa_and_ratio(lam: Tensor) -> tuple[Tensor, Tensor]:
    """κ = λmax/λmin and λ1/λ2 of ascending eigenvalues (..., d); λ1/λ2 = 1 when d = 1."""
    kappa = lam[..., -1] / lam[..., 0]
    ratio = lam[..., -1] / lam[..., -2] if lam.shape[-1] > 1 else torch.ones_like(kappa)
    return kappa, ratio


def spectrum_stats(
    P: Tensor, eps: float | None = None, ridge: float | None = None
) -> dict[str, Tensor]:
    """κ = λmax/λmin and λ1/λ2 of P per matrix (the papers' κ of the covariance, ICCV'21 eq. 2).

    With ``ridge`` = ε also ``kappa_ridged``, κ of P + εI, taken from the same eigenvalues (those
    of P + εI are λ + ε): one ``eigvalsh`` gives both. In float64, no grad. Eigenvalues (λ, and
    λ + ε) are floored at ``eps`` (default float64 machine epsilon, the meta-layer's floor): a
    rank-deficient P, whose smallest eigenvalues come out of ``eigvalsh`` as ~0 or slightly
    negative round-off, gets a finite, positive κ = λmax/eps instead of ±inf or a negative value.
    Returns Tensors of shape (B,) (scalars for a single (d, d) matrix).
    """
    floor = float(torch.finfo(torch.float64).eps) if eps is None else float(eps)
    with torch.no_grad():
        try:
            lam = torch.linalg.eigvalsh(P.detach().to(torch.float64))
        except torch.linalg.LinAlgError as exc:
            raise MetaLayerFailure(f"eigvalsh failed: {exc}") from exc
        kappa, ratio = _kappa_and_ratio(lam.clamp_min(floor))
        stats = {"kappa": kappa, "lambda_ratio": ratio}
        if ridge is not None:
            stats["kappa_ridged"] = _kappa_and_ratio((lam + ridge).clamp_min_(floor))[0]
    return stats
