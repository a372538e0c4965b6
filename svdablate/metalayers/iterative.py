"""Iterative meta-layers: Newton-Schulz (iSQRT-COV) and MPA-Lya; registered as methods here.

``ns`` (iSQRT-COV, ICCV'21 eqs. 7-10): coupled Newton-Schulz on A = P/tr(P), 5 iterations,
post-compensated by √tr(P) (inverse: Z_N/√tr(P)); backward by autograd through the iteration.
The same :func:`newton_schulz` is SVD-Newton's backward (``iteration_rules.py``).
Forward accuracy (tested): with the spectrum of A in [0.1, 1] the relative error of 5 iterations
is below 1e-3; NS converges slowly for small eigenvalues of A (an eigenvalue a grows by ≤ 1.5× per
iteration until it is near 1), which is the intended smoothing, not a bug.

``mpa-lya`` (Song et al., "Fast differentiable matrix square root", ICLR'22), as the released
ECCV'22 decorrelated-BN code runs it (``torch_utils.MPA_Lya``, ``ZCANorm.ZCANormBatch``): forward
√P ≈ √‖P‖_F · Q₅(X)⁻¹P₅(X), the [5/5] matrix Padé approximant of √(1−x) on X = I − P/‖P‖_F;
backward solves the Lyapunov equation B X + X B = C, B = √P/√‖P‖_F, C = G/√‖P‖_F, by 8 coupled
Newton-Schulz sign iterations B ← ½B(3I − B²), C ← ½(C(3I − B²) − B²C + BCB), ∂l/∂P = ½C. The
inverse square root is ``torch.linalg.inv`` of that √P, differentiated by autograd through the
inverse (the official ``torch.inverse(MPA_Lya.apply(xxt))``). Op for op the official computation
(tested against recorded official outputs), except that each matrix of a batch is normalised by
its own norm (the released 2-D ``MPA_Lya`` takes one matrix: the official scripts' groups=1).
``mpa-lya-inv``: MPA-Lya's direct inverse (official ``MPA_Lya_Inv``, which no released script
calls): S = P₅(X)⁻¹Q₅(X)/√‖P‖_F, the same Lyapunov solve with B = S/‖S‖_F and
C = −S²GS²/‖S‖_F. Forward accuracy of both (tested): relative error below 1e-4 when all
eigenvalues of P/‖P‖_F exceed 0.05; far less at the ill-conditioned stem covariances of a ResNet
(docs/methods.md).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from svdablate.metalayers.registry import (
    MetaLayerFailure,
    check_finite,
    check_positive_int,
    compute_dtype,
    register_method,
)

__all__ = ["mpa_lya", "mpa_lya_inv", "newton_schulz", "ns"]


class _GradGuard(torch.autograd.Function):
    """Identity whose backward checks the incoming gradient once (one device sync)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        check_finite(grad, "backward")
        return grad


def _run(p: Tensor, opts: dict[str, Any], body: Any) -> Tensor:
    cdt = compute_dtype(opts["precision"], p.dtype)
    x = _GradGuard.apply(p) if p.requires_grad else p
    try:
        out = body(x.to(cdt)).to(p.dtype)
    except torch.linalg.LinAlgError as exc:
        raise MetaLayerFailure(f"linear solve failed: {exc}") from exc
    check_finite(out, "forward")
    return out


def newton_schulz(p: Tensor, power: float, iters: int) -> Tensor:
    """Coupled Newton-Schulz, trace pre-normalisation and post-compensation (ICCV'21 eqs. 7-9).

    A = P/tr(P), Y₀ = A, Z₀ = I, T = ½(3I − Z Y), Y ← Y T, Z ← T Z; returns √tr(P)·Y_N
    (power +½) or Z_N/√tr(P) (power −½). Differentiable by autograd.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters!r}")
    tr = p.diagonal(dim1=-2, dim2=-1).sum(-1).unsqueeze(-1).unsqueeze(-1)
    a = p / tr
    eye = torch.eye(p.shape[-1], dtype=p.dtype, device=p.device)
    eye15 = (1.5 * eye).expand_as(p)
    t = eye15 - 0.5 * a  # Z₀ = I
    y = torch.matmul(a, t) if (power > 0 or iters > 1) else None
    z = t
    for k in range(1, iters):
        last = k == iters - 1
        t = torch.baddbmm(eye15, z, y, alpha=-0.5)
        if power > 0:
            y = torch.matmul(y, t)
            if not last:
                z = torch.matmul(t, z)
        else:
            z = torch.matmul(t, z)
            if not last:
                y = torch.matmul(y, t)
    s = tr.sqrt()
    return y * s if power > 0 else z / s


def ns(p: Tensor, power: float, *, iters: int = 5) -> Tensor:
    """Coupled Newton-Schulz with trace normalisation (iSQRT-COV, ICCV'21 eqs. 7-9)."""
    return newton_schulz(p, power, iters)


def _ns_impl(p: Tensor, power: float, opts: dict[str, Any]) -> Tensor:
    check_positive_int("iters", opts["iters"], 1)
    return _run(p, opts, lambda a: ns(a, power, iters=opts["iters"]))


register_method(
    "ns",
    family="iterative",
    impl=_ns_impl,
    option_sources=(ns,),
    aliases=("iSQRT-COV", "iSQRT", "NS", "Newton-Schulz", "newton-schulz-iteration"),
)


@functools.cache
def _mpa_mp(m: int, n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from mpmath import mp, mpf, pade, sqrt, taylor

    with mp.workdps(32):  # the official recipe (FastDifferentiableMatSqrt/torch_utils.py)
        one = mpf(1)
        p, q = pade(taylor(lambda x: sqrt(one - x), 0, m + n), m, n)
    return tuple(float(c) for c in p), tuple(float(c) for c in q)


def _mpa_parts(a: Tensor, degree: int) -> tuple[Tensor, Tensor, Tensor]:
    """(P_m(X), Q_n(X), ‖A‖_F) with X = I − A/‖A‖_F, summed in the official order."""
    pc, qc = _mpa_mp(degree, degree)
    norm = torch.linalg.vector_norm(a, dim=(-2, -1), keepdim=True)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    x = eye - a / norm
    pm = pc[0] * eye + pc[1] * x
    qn = qc[0] * eye + qc[1] * x
    xk = x
    for k in range(2, degree + 1):
        xk = torch.matmul(xk, x)
        pm = pm + pc[k] * xk
        qn = qn + qc[k] * xk
    return pm, qn, norm


def _lyapunov_sign(b: Tensor, c: Tensor, iters: int) -> Tensor:
    """Solve B X + X B = C by ``iters`` coupled NS sign iterations; returns X (ICLR'22 eq. 16)."""
    eye3 = 3.0 * torch.eye(b.shape[-1], dtype=b.dtype, device=b.device)
    for _ in range(iters):
        b2 = torch.matmul(b, b)
        t = eye3 - b2
        c = 0.5 * (torch.matmul(c, t) - torch.matmul(b2, c) + torch.matmul(torch.matmul(b, c), b))
        b = 0.5 * torch.matmul(b, t)
    return 0.5 * c


class _MPALyaSqrt(torch.autograd.Function):
    """Q = √‖P‖_F · Q₅(X)⁻¹P₅(X); backward: B X + X B = C, B = Q/√‖P‖_F, C = G/√‖P‖_F.

    The official ``MPA_Lya`` op for op (ICLR'22 eqs. 10-16): Q, G and ∂l/∂P are not
    symmetrised, as there (for a symmetric P only the symmetric part of ∂l/∂P acts).
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor, degree: int, lya_iters: int) -> Tensor:
        pm, qn, norm = _mpa_parts(a, degree)
        out = torch.linalg.solve(qn, pm) * torch.sqrt(norm)
        ctx.lya_iters = lya_iters
        ctx.save_for_backward(out, norm)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        out, norm = ctx.saved_tensors
        s = torch.sqrt(norm)
        return _lyapunov_sign(out / s, grad / s, ctx.lya_iters), None, None


def mpa_lya(p: Tensor, power: float, *, degree: int = 5, iters: int = 8) -> Tensor:
    """MPA-Lya as the released ECCV'22 code runs it: Q = MPA √P; P^{-1/2} = Q⁻¹ (autograd).

    Forward: [degree/degree] Padé of √(1−x) (ICLR'22 eq. 10); backward of Q: Lyapunov by
    ``iters`` sign steps; the inverse square root is ``torch.linalg.inv`` of Q with autograd's
    backward through it, as ``ZCANormBatch`` computes ``torch.inverse(MPA_Lya.apply(xxt))``.
    """
    q = _MPALyaSqrt.apply(p, degree, iters)
    return q if power > 0 else torch.linalg.inv(q)


class _MPALyaInv(torch.autograd.Function):
    """S = √‖P‖_F⁻¹ · P₅(X)⁻¹Q₅(X); backward: B X + X B = C, B = S/‖S‖_F, C = −S²GS²/‖S‖_F."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, degree: int, lya_iters: int) -> Tensor:
        pm, qn, norm = _mpa_parts(a, degree)
        out = torch.linalg.solve(pm, qn) / norm.sqrt()
        out = 0.5 * (out + out.mT)
        ctx.lya_iters = lya_iters
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (out,) = ctx.saved_tensors
        g = 0.5 * (grad + grad.mT)
        m_inv = torch.matmul(out, out)
        c = -torch.matmul(torch.matmul(m_inv, g), m_inv)
        s = torch.linalg.matrix_norm(out).unsqueeze(-1).unsqueeze(-1)
        gx = _lyapunov_sign(out / s, c / s, ctx.lya_iters)
        return 0.5 * (gx + gx.mT), None, None


def mpa_lya_inv(p: Tensor, power: float, *, degree: int = 5, iters: int = 8) -> Tensor:
    """MPA-Lya's direct inverse (official ``MPA_Lya_Inv``, ICLR'22 §3.4); its √P is mpa-lya's."""
    if power > 0:
        return mpa_lya(p, power, degree=degree, iters=iters)
    return _MPALyaInv.apply(p, degree, iters)


def _mpa_impl(fn: Any) -> Any:
    def impl(p: Tensor, power: float, opts: dict[str, Any]) -> Tensor:
        check_positive_int("degree", opts["degree"], 1)
        check_positive_int("iters", opts["iters"], 0)
        return _run(p, opts, lambda a: fn(a, power, degree=opts["degree"], iters=opts["iters"]))

    return impl


register_method(
    "mpa-lya",
    family="iterative",
    impl=_mpa_impl(mpa_lya),
    option_sources=(mpa_lya,),
    aliases=("MPA-Lya", "MPA", "MPA_Lya"),
)
register_method(
    "mpa-lya-inv",
    family="iterative",
    impl=_mpa_impl(mpa_lya_inv),
    option_sources=(mpa_lya_inv,),
    aliases=("MPA-Lya-Inv", "MPA_Lya_Inv"),
)
