"""The inputs of the backward-rule equivalence test, shared with the script that recorded them.

`scripts/record_official_rules.py` runs the official ICCV'21 meta-layers on these inputs and
writes `tests/data/official_rules.pt`; `test_official_rules.py` runs ours on the same inputs.
Everything is generated from seeds (torch's CPU generator), so the file holds only outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

D = 256  # the GCP head's channels (the Pre-SVD 1×1 conv)
BATCH = 2
SKETCH = 16  # a gradient (B, d, N) is kept as A·G·Bᵀ, A (16, d), B (16, N): 256 numbers an image


@dataclass(frozen=True)
class Case:
    """A full-scale GCP covariance: ReLU features of d = 256 channels over N positions."""

    name: str
    positions: int  # N: 196 (ResNet 14×14), 169 (AlexNet 13×13), 49 (7×7), 784 (448 px, 28×28)
    dtype: torch.dtype
    seed: int

    @property
    def rank_deficient(self) -> bool:
        return self.positions <= D


CASES = (
    Case("resnet-14x14-float64", 196, torch.float64, 1),
    Case("alexnet-13x13-float64", 169, torch.float64, 2),
    Case("7x7-float64", 49, torch.float64, 3),
    Case("448px-28x28-float64", 784, torch.float64, 4),
    Case("resnet-14x14-float32", 196, torch.float32, 5),
    Case("448px-28x28-float32", 784, torch.float32, 6),
)
RULES = ("svd", "svd-topn", "svd-trunc", "svd-taylor", "svd-pade", "svd-newton", "svd-pi")


def features(case: Case) -> torch.Tensor:
    """X (B, d, N), float64: ReLU of a standard normal, as after the head's BN + ReLU."""
    g = torch.Generator().manual_seed(case.seed)
    return torch.randn(BATCH, D, case.positions, dtype=torch.float64, generator=g).relu_()


def upstream(case: Case) -> torch.Tensor:
    """∂l/∂vec (B, d(d+1)/2) of the upper triangle of Q, float32-representable (the official
    Power backward keeps it in float32)."""
    g = torch.Generator().manual_seed(1000 + case.seed)
    return torch.randn(BATCH, D * (D + 1) // 2, dtype=torch.float64, generator=g).float().double()


def triu_index() -> torch.Tensor:
    """Row-major indices of the upper triangle of a d×d matrix (the official Triuvec order)."""
    return torch.ones(D, D).triu().reshape(-1).nonzero().squeeze(-1)


def covariance_in(case: Case, x: torch.Tensor) -> torch.Tensor:
    """P (eq. 2) of X in float64 by subtracting the mean, then in the case's dtype."""
    xc = x - x.mean(-1, keepdim=True)
    return (xc @ xc.mT / x.shape[-1]).to(case.dtype)


def gradient_of_features(x: torch.Tensor, grad_p: torch.Tensor) -> torch.Tensor:
    """∂l/∂X from ∂l/∂P through eq. 2 in float64: (G + Gᵀ) X̄ / N (one linear map for both)."""
    g = grad_p.double()
    xc = x - x.mean(-1, keepdim=True)
    return (g + g.mT) @ xc / x.shape[-1]


def sketch(grad_x: torch.Tensor) -> torch.Tensor:
    """A (SKETCH, d) · ∂l/∂X_b · B (N, SKETCH) per image: a Gaussian sketch that keeps the norm of
    any fixed difference within about ±20 % (256 Gaussian measurements an image)."""
    g = torch.Generator().manual_seed(7)
    n = grad_x.shape[-1]
    a = torch.randn(SKETCH, D, dtype=torch.float64, generator=g) / SKETCH**0.5
    b = torch.randn(n, SKETCH, dtype=torch.float64, generator=g) / SKETCH**0.5
    return a @ grad_x.double() @ b


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖."""
    return float((a - b).norm() / b.norm())
