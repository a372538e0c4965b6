"""svdablate.metalayers against the literal equations of the papers and the official code: NS
as the coupled iteration of ICCV'21 eqs. 7-9, MPA as the [5/5] matrix Padé approximant, the
official MPA-Lya Lyapunov backward and its inverse, the exact rules' derivative at repeated
eigenvalues and a backward that is once differentiable.
"""

from __future__ import annotations

import pytest
import torch
from metalayer_inputs import F64, FUNCS, MPA, spd

from svdablate.metalayers import (
    inv_sqrtm,
    sqrtm,
)


@pytest.mark.parametrize("iters", [1, 2, 5])
def test_ns_is_the_coupled_iteration_of_eq7(iters):
    # literal ICCV'21 eqs. 7-9: A = P/tr P, Y0 = A, Z0 = I, Y <- ½Y(3I - ZY), Z <- ½(3I - ZY)Z
    p = spd([0.3, 0.5, 1.0, 2.0, 4.0])
    tr = p.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None]
    y, z = p / tr, torch.eye(5, dtype=F64).expand(2, 5, 5)
    eye3 = 3 * torch.eye(5, dtype=F64)
    for _ in range(iters):
        t = 0.5 * (eye3 - z @ y)
        y, z = y @ t, t @ z
    torch.testing.assert_close(sqrtm(p, "ns", iters=iters), y * tr.sqrt(), rtol=1e-13, atol=0)
    torch.testing.assert_close(inv_sqrtm(p, "ns", iters=iters), z / tr.sqrt(), rtol=1e-13, atol=0)


def test_mpa_forward_is_the_matrix_pade_approximant():
    # literal Song et al. (ICLR'22): [5/5] Padé of sqrt(1-z) at X = I - P/||P||_F
    from mpmath import mp, mpf, pade, taylor

    with mp.workdps(32):
        pc, qc = pade(taylor(lambda z: mp.sqrt(mpf(1) - z), 0, 10), 5, 5)
    p = spd([1.0, 1.5, 2.0, 3.0, 4.0]) * 7.0
    norm = torch.linalg.matrix_norm(p)[:, None, None]
    x = torch.eye(5, dtype=F64) - p / norm
    pm = sum(float(c) * torch.linalg.matrix_power(x, k) for k, c in enumerate(pc))
    qn = sum(float(c) * torch.linalg.matrix_power(x, k) for k, c in enumerate(qc))
    root = torch.linalg.solve(qn, pm) * norm.sqrt()
    for method in MPA:
        torch.testing.assert_close(sqrtm(p, method), root)
        torch.testing.assert_close(inv_sqrtm(p, method), torch.linalg.solve(pm, qn) / norm.sqrt())


def test_mpa_lya_backward_is_the_official_lyapunov_loop():
    # literal torch_utils.MPA_Lya.backward: b = Q/√‖P‖, c = G/√‖P‖ (neither symmetrised),
    # 8 × {b2 = b b; c = ½(c(3I − b2) − b2 c + b c b); b = ½ b(3I − b2)}, ∂l/∂P = ½c
    p = (spd([1.0, 1.5, 2.0, 3.0, 4.0], batch=1)[0] * 3.0).requires_grad_(True)
    grad = torch.randn(5, 5, dtype=F64, generator=torch.Generator().manual_seed(6))
    q = sqrtm(p, "mpa-lya")
    (g,) = torch.autograd.grad(q, p, grad)
    eye, s = torch.eye(5, dtype=F64), torch.linalg.matrix_norm(p.detach()).sqrt()
    b, c = q.detach() / s, grad / s
    for _ in range(8):
        b2 = b.mm(b)
        c = 0.5 * (c.mm(3.0 * eye - b2) - b2.mm(c) + b.mm(c).mm(b))
        b = 0.5 * b.mm(3.0 * eye - b2)
    torch.testing.assert_close(g, 0.5 * c, rtol=1e-12, atol=1e-14)


def test_mpa_lya_inverse_is_the_inverse_of_its_square_root_with_autograd():
    # the released ZCANormBatch: S = torch.inverse(MPA_Lya.apply(P)), backward through inverse
    p = (spd([1.0, 1.5, 2.0, 3.0, 4.0]) * 3.0).requires_grad_(True)
    w = torch.randn(2, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(4))
    s = inv_sqrtm(p, "mpa-lya")
    (g,) = torch.autograd.grad((s * w).sum(), p)
    s_ref = torch.linalg.inv(sqrtm(p, "mpa-lya"))
    (g_ref,) = torch.autograd.grad((s_ref * w).sum(), p)
    assert torch.equal(s, s_ref) and torch.equal(g, g_ref)


@pytest.mark.parametrize("method", ["svd", "svd-pade"])
@pytest.mark.parametrize("fname", list(FUNCS))
def test_exact_rules_are_the_derivative_at_repeated_eigenvalues(method, fname):
    # the matrix function is smooth at repeated eigenvalues; the rules whose ties are the Loewner
    # limit (svd; svd-pade, the exact gradient below x = 1) are its derivative there too
    # (svd-topn is not: at ties it takes the official batch-largest K, test_metalayers_rules)
    fn, _ = FUNCS[fname]
    base = torch.diag(torch.tensor([0.5, 0.5, 0.5, 2.0], dtype=F64))  # exactly repeated
    a = torch.zeros(4, 4, dtype=F64).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a: fn(base + 1e-4 * (a + a.mT), method), (a,), eps=1e-6, atol=1e-6
    )
    # at the identity: d sqrt(I + E) = E/2, d (I + E)^(-1/2) = -E/2
    p = torch.eye(3, dtype=F64).requires_grad_(True)
    g = torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    (gp,) = torch.autograd.grad(fn(p, method), p, g)
    sign = 1.0 if fname == "sqrtm" else -1.0
    torch.testing.assert_close(gp, sign * 0.25 * (g + g.mT))


@pytest.mark.parametrize("method", ["svd", "svd-pade", "svd-pi"])
def test_backward_is_once_differentiable(method):
    # create_graph=True still gives the first-order gradient; a second backward raises
    p = spd([1.0, 2.0, 4.0], batch=1)[0].requires_grad_(True)
    (plain,) = torch.autograd.grad((sqrtm(p, method) ** 2).sum(), p)
    (first,) = torch.autograd.grad((sqrtm(p, method) ** 2).sum(), p, create_graph=True)
    torch.testing.assert_close(first, plain, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        first.sum().backward()
