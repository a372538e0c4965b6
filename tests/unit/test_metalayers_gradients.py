"""Gradients of svdablate.metalayers: the exact rules agree with autograd through eigh and the
approximate ones are only approximate, gradcheck (and that it catches a wrong backward),
svd-newton and svd-pi against their unrolled iterations, MPA-Lya against the exact gradient,
and float32 gradients in the input's dtype.
"""

from __future__ import annotations

import pytest
import torch
from metalayer_inputs import CANONICAL, F64, FUNCS, MPA, eigh_ref, spd

from svdablate.metalayers import (
    covariance,
    sqrtm,
)

# ------------------------------------------------------------------------------- gradients


def _xcov_input(d=5, n=40, batch=2, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, d, n, generator=g, dtype=F64)
    # well separated spectrum: scale rows differently
    scale = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0][:d], dtype=F64).sqrt().unsqueeze(-1)
    return (x * scale).requires_grad_(True)


def _grad_vs_eigh(method, fname, opts, seed=3):
    fn, power = FUNCS[fname]
    x = _xcov_input(seed=seed)
    w = torch.randn(
        x.shape[0],
        x.shape[1],
        x.shape[1],
        dtype=F64,
        generator=torch.Generator().manual_seed(seed + 1),
    )
    (g,) = torch.autograd.grad((fn(covariance(x), method, **opts) * w).sum(), x)
    (gr,) = torch.autograd.grad((eigh_ref(covariance(x), power) * w).sum(), x)
    return float((g - gr).norm() / gr.norm())


@pytest.mark.parametrize(
    ("method", "opts"),
    [
        ("svd", {}),
        ("svd-pade", {}),
        ("svd-trunc", {}),
        ("svd-newton", {"iters": 40}),
        ("svd-topn", {"keep": 5}),
        ("svd-taylor", {"degree": 400}),
        ("svd-pi", {"iters": 400}),
    ],
)
@pytest.mark.parametrize("fname", list(FUNCS))
def test_exact_gradient_agreement(method, opts, fname):
    assert _grad_vs_eigh(method, fname, opts) < 1e-6


@pytest.mark.parametrize("fname", list(FUNCS))
def test_approximate_rules_are_approximate(fname):
    # defaults of the smoothing rules visibly differ from the exact gradient on close eigenvalues
    fn, power = FUNCS[fname]
    # Taylor/PI: close eigenvalues; Newton-Schulz: small eigenvalues (slow NS convergence)
    w = torch.randn(2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    for method, eigs in (
        ("svd-taylor", [1.0, 1.02, 1.04, 3.0]),
        ("svd-pi", [1.0, 1.02, 1.04, 3.0]),
        ("svd-newton", [1e-4, 1e-3, 1.0, 3.0]),
    ):
        p = spd(eigs).requires_grad_(True)
        (gr,) = torch.autograd.grad((eigh_ref(p, power) * w).sum(), p)
        (g,) = torch.autograd.grad((fn(p, method) * w).sum(), p)
        sym = 0.5 * (gr + gr.mT)
        assert float((g - sym).norm() / sym.norm()) > 1e-3, method


GRADCHECK = [
    ("svd", {}),
    ("svd-topn", {"keep": 4}),
    ("svd-trunc", {}),
    ("svd-pade", {}),
    ("svd-taylor", {}),
    ("svd-newton", {"iters": 30}),
    ("svd-pi", {}),
    ("ns", {}),
    ("mpa-lya", {}),
    ("mpa-lya-inv", {}),
]


@pytest.mark.parametrize(("method", "opts"), GRADCHECK)
@pytest.mark.parametrize("fname", list(FUNCS))
def test_gradcheck(method, opts, fname):
    # well-separated spectrum (ratios <= 0.5): the Taylor/PI truncation is below 1e-6 and the
    # Newton-Schulz, Padé and MPA iterations have converged, so every backward is the derivative
    fn, _ = FUNCS[fname]
    base = spd([1.0, 2.0, 4.0, 8.0], batch=1, seed=5)[0] * 0.1
    if method in MPA:
        base = spd([3.0, 4.0, 5.0, 6.0], batch=1, seed=5)[0]
    a = torch.zeros(4, 4, dtype=F64).requires_grad_(True)

    def f(a):
        s = 1e-3 * (a + a.mT)
        return fn(base + s, method, **opts)

    tol = 1e-5 if method in MPA else 1e-7
    assert torch.autograd.gradcheck(f, (a,), eps=1e-6, atol=tol, rtol=1e-4)


def test_gradcheck_detects_a_wrong_backward():
    # the gradcheck set-up above can fail: Taylor of degree 1 is far from the derivative
    base = spd([1.0, 2.0, 4.0, 8.0], batch=1, seed=5)[0] * 0.1
    a = torch.zeros(4, 4, dtype=F64).requires_grad_(True)
    assert not torch.autograd.gradcheck(
        lambda a: sqrtm(base + 1e-3 * (a + a.mT), "svd-taylor", degree=1),
        (a,),
        eps=1e-6,
        atol=1e-7,
        rtol=1e-4,
        raise_exception=False,
    )


@pytest.mark.parametrize("fname", list(FUNCS))
def test_svd_newton_equals_backprop_through_ns(fname):
    fn, _ = FUNCS[fname]
    p = spd([0.2, 0.5, 1.0, 3.0]).requires_grad_(True)
    w = torch.randn(2, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(2))
    (g,) = torch.autograd.grad((fn(p, "svd-newton", iters=7) * w).sum(), p)
    (gn,) = torch.autograd.grad((fn(p, "ns", iters=7) * w).sum(), p)
    torch.testing.assert_close(g, 0.5 * (gn + gn.mT), rtol=1e-10, atol=1e-12)


def _pi_literal(p, power, iters):
    """Wang et al.: per-eigenvector power iteration with deflation, unrolled for autograd."""
    u = torch.linalg.eigh(p.detach())[1].flip(-1)
    m, q = p, 0.0
    for k in range(p.shape[-1]):
        v = u[..., :, k : k + 1].clone()
        for _ in range(iters):
            w = m @ v
            v = w / w.norm(dim=-2, keepdim=True)
        rq = v.mT @ m @ v
        m = m - rq * (v @ v.mT)
        q = q + rq.pow(power) * (v @ v.mT)
    return q


@pytest.mark.parametrize("fname", list(FUNCS))
@pytest.mark.parametrize("iters", [3, 20])
def test_svd_pi_equals_unrolled_power_iteration(fname, iters):
    fn, power = FUNCS[fname]
    x = torch.randn(2, 5, 12, dtype=F64, generator=torch.Generator().manual_seed(7))
    x.requires_grad_(True)
    w = torch.randn(2, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(8))
    shift = 0.05 * torch.eye(5, dtype=F64)
    (g1,) = torch.autograd.grad((_pi_literal(covariance(x) + shift, power, iters) * w).sum(), x)
    (g2,) = torch.autograd.grad((fn(covariance(x) + shift, "svd-pi", iters=iters) * w).sum(), x)
    assert float((g1 - g2).norm() / g1.norm()) < 1e-10


@pytest.mark.parametrize("method", MPA)
@pytest.mark.parametrize("fname", list(FUNCS))
def test_mpa_lya_gradient_close_to_exact(fname, method):
    # mpa-lya returns the official, unsymmetrised ∂l/∂P: its symmetric part is what acts
    fn, power = FUNCS[fname]
    p = (spd([1.0, 1.5, 2.0, 3.0, 4.0]) * 3.0).requires_grad_(True)
    w = torch.randn(2, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(4))
    (g,) = torch.autograd.grad((fn(p, method) * w).sum(), p)
    (gr,) = torch.autograd.grad((eigh_ref(p, power) * w).sum(), p)
    sym = 0.5 * (gr + gr.mT)
    assert float((0.5 * (g + g.mT) - sym).norm() / sym.norm()) < 1e-3


def test_float32_gradients_have_input_dtype():
    x = _xcov_input().detach().float().requires_grad_(True)
    for method in CANONICAL:
        opts = {"keep": 5} if method == "svd-topn" else {}
        (g,) = torch.autograd.grad(sqrtm(covariance(x), method, **opts).sum(), x)
        assert g.dtype == torch.float32 and torch.isfinite(g).all(), method
