"""Orthogonality helpers of the treatments' tests: random matrices with orthonormal rows or
columns, and the check that a matrix has them."""

from __future__ import annotations

import torch


def _rand_orthogonal(n: int, m: int, gen: torch.Generator) -> torch.Tensor:
    """(n, m) float64 with orthonormal rows (n <= m) or columns (n > m)."""
    A = torch.randn(max(n, m), min(n, m), generator=gen, dtype=torch.float64)
    Q, _ = torch.linalg.qr(A)
    return Q.mT.contiguous() if n <= m else Q


def _assert_orthonormal(W: torch.Tensor, atol: float) -> None:
    n, m = W.shape
    gram = W @ W.mT if n <= m else W.mT @ W
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    assert torch.allclose(gram, eye, atol=atol), float((gram - eye).abs().max())
