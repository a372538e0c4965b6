"""Inputs the metalayers' tests share: the canonical method names, SPD matrices of a given
spectrum, and the exact matrix functions (autograd through torch.linalg.eigh) to compare with."""

from __future__ import annotations

import torch

from svdablate.metalayers import inv_sqrtm, sqrtm

CANONICAL = [
    "svd",
    "svd-topn",
    "svd-trunc",
    "svd-pi",
    "svd-newton",
    "svd-taylor",
    "svd-pade",
    "ns",
    "mpa-lya",
    "mpa-lya-inv",
]
MPA = ["mpa-lya", "mpa-lya-inv"]
SVD_FAMILY = [m for m in CANONICAL if m.startswith("svd")]
F64 = torch.float64


def spd(eigs, batch: int = 2, seed: int = 0, dtype=F64) -> torch.Tensor:
    """Batch of SPD matrices with the given spectrum and random eigenvectors."""
    g = torch.Generator().manual_seed(seed)
    d = len(eigs)
    q, _ = torch.linalg.qr(torch.randn(batch, d, d, generator=g, dtype=F64))
    lam = torch.as_tensor(eigs, dtype=F64)
    return ((q * lam) @ q.mT).to(dtype)


def eigh_ref(p: torch.Tensor, power: float) -> torch.Tensor:
    """Plain autograd through torch.linalg.eigh: the exact matrix function."""
    lam, u = torch.linalg.eigh(p)
    return (u * lam.pow(power).unsqueeze(-2)) @ u.mT


FUNCS = {"sqrtm": (sqrtm, 0.5), "inv_sqrtm": (inv_sqrtm, -0.5)}
