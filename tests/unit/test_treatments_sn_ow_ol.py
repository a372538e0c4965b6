"""Invariants of the ECCV'22 weight treatments: SN, spectral normalisation (eq. 11), OW, the
orthogonal weight of the matrix map (eq. 13), and OL, the orthogonality loss and its
gradient (eq. 12).
"""

from __future__ import annotations

import pytest
import torch
from orthogonality import _assert_orthonormal, _rand_orthogonal
from torch import nn

from svdablate.treatments import (
    attach_treatments,
)

# ---------------------------------------------------------------------------------------------
# SN (eq. 11), OW (eq. 13), OL (eq. 12)


@pytest.mark.parametrize("gap", [True, False], ids=["spectral-gap", "random"])
def test_sn_sigma_max_one_in_training(gap):
    """One power iteration per training forward (torch's spectral_norm): σ_max(W) → 1.

    The error shrinks like (σ2/σ1)² per pass: a few passes with a spectral gap, ~150 for this
    random init, whose top two singular values are within 3 % ((σ2/σ1)² = 0.94).
    """
    gen = torch.Generator().manual_seed(5)
    with torch.random.fork_rng():  # the default init, but the same one whatever ran before
        torch.manual_seed(5)
        conv = nn.Conv2d(8, 16, 3)
    with torch.no_grad():
        if gap:
            U = _rand_orthogonal(16, 16, gen)
            V = _rand_orthogonal(72, 16, gen)
            s = torch.linspace(4.0, 0.5, 16, dtype=torch.float64)
            s[0] = 9.0
            conv.weight.copy_((U @ torch.diag(s) @ V.T).reshape(16, 8, 3, 3))
        else:
            conv.weight.mul_(7.0)
    with torch.random.fork_rng():  # the power iteration's random start vectors, too
        torch.manual_seed(5)
        h = attach_treatments(conv, "SN")
    x = torch.randn(2, 8, 5, 5, generator=gen)
    conv.train()
    for _ in range(3 if gap else 200):
        conv(x)
    W = h.effective_weight().detach()
    assert W.shape == (16, 72)
    assert torch.linalg.matrix_norm(W, ord=2).item() == pytest.approx(1.0, abs=1e-3)
    assert (
        torch.linalg.matrix_norm(conv.parametrizations.weight.original.reshape(16, -1), ord=2) > 5
    )
    conv.eval()  # eval: no power iteration, the weight is fixed
    assert torch.equal(h.effective_weight().detach(), h.effective_weight().detach())


@pytest.mark.parametrize("ow_map", ["matrix_exp", "cayley"])
@pytest.mark.parametrize(
    "layer_fn",
    [
        lambda: nn.Conv2d(3, 4, 3),
        lambda: nn.Conv2d(3, 64, 3),
        lambda: nn.Conv2d(32, 16, 1),
        lambda: nn.Linear(16, 16),
    ],
    ids=["conv-wide", "conv-tall", "conv1x1", "linear-square"],
)
def test_ow_effective_weight_orthonormal(layer_fn, ow_map):
    torch.manual_seed(6)
    layer = layer_fn()
    h = attach_treatments(layer, "OW", ow_map=ow_map)
    W = h.effective_weight().detach()
    assert W.shape == (layer.weight.shape[0], layer.weight[0].numel())
    _assert_orthonormal(W, 1e-5)
    # it stays orthonormal under training of the free parameter
    opt = torch.optim.SGD(h.parameters(), lr=0.05)
    x = torch.randn(
        2,
        *(
            (3, 6, 6)
            if isinstance(layer, nn.Conv2d) and layer.in_channels == 3
            else (32, 2, 2)
            if isinstance(layer, nn.Conv2d)
            else (16,)
        ),
    )
    for _ in range(3):
        opt.zero_grad()
        layer(x).tanh().sum().backward()  # bounded gradients
        opt.step()
    W1 = h.effective_weight().detach()
    _assert_orthonormal(W1, 1e-5)
    assert not torch.allclose(W1, W)


def test_ow_is_on_the_matrix_not_on_the_kernels():
    torch.manual_seed(7)
    conv = nn.Conv2d(4, 4, 3)
    h = attach_treatments(conv, "OW")
    _assert_orthonormal(h.effective_weight().detach(), 1e-5)
    k = conv.weight.detach()[:, :, 0, 0]  # torch's orthogonal on the 4-D weight orthogonalises
    gram = k @ k.mT  # each 3×3 kernel instead; a (4, 36) orthonormal-row W does not do that
    assert not torch.allclose(gram, torch.eye(4), atol=1e-2)


def test_ow_map_validated():
    with pytest.raises(ValueError, match="matrix_exp, cayley, soc"):
        attach_treatments(nn.Linear(3, 3), "OW", ow_map="householder-ish")


def test_ol_zero_for_orthogonal_and_formula():
    gen = torch.Generator().manual_seed(8)
    for n, m in [(4, 12), (12, 4), (6, 6)]:
        lin = nn.Linear(m, n, bias=False).double()
        h = attach_treatments(lin, "OL", ol_weight=0.5)
        with torch.no_grad():
            lin.weight.copy_(_rand_orthogonal(n, m, gen))
        assert h.regularizer().item() == pytest.approx(0.0, abs=1e-12)
        W = torch.randn(n, m, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(W)
        gram = W @ W.T if n <= m else W.T @ W
        expected = 0.5 * torch.linalg.matrix_norm(gram - torch.eye(min(n, m), dtype=W.dtype))
        assert h.regularizer().item() == pytest.approx(expected.item(), rel=1e-12)
    # OL on the OW weight is zero, and without OL the regularizer is a zero scalar
    assert attach_treatments(nn.Conv2d(3, 4, 3), "OL+OW").regularizer().item() < 1e-5
    reg = attach_treatments(nn.Conv2d(3, 4, 3), "NOG").regularizer()
    assert reg.shape == () and reg.item() == 0.0


def test_ol_gradient_matches_finite_differences():
    torch.manual_seed(9)
    conv = nn.Conv2d(3, 4, 2, bias=False).double()  # W: (4, 12)
    h = attach_treatments(conv, "OL", ol_weight=0.3)
    conv.weight.grad = None
    h.regularizer().backward()
    grad = conv.weight.grad.clone()
    assert grad.abs().sum() > 0
    eps = 1e-6
    fd = torch.zeros_like(grad)
    with torch.no_grad():
        for idx in range(conv.weight.numel()):
            flat = conv.weight.view(-1)
            orig = flat[idx].item()
            flat[idx] = orig + eps
            up = h.regularizer().item()
            flat[idx] = orig - eps
            down = h.regularizer().item()
            flat[idx] = orig
            fd.view(-1)[idx] = (up - down) / (2 * eps)
    assert torch.allclose(grad, fd, atol=1e-7, rtol=1e-6)
    # and the analytic gradient of λ‖WWᵀ−I‖_F: 2λ (WWᵀ−I) W / ‖WWᵀ−I‖_F
    W = conv.weight.detach().reshape(4, -1)
    D = W @ W.T - torch.eye(4, dtype=W.dtype)
    analytic = 2 * 0.3 * D @ W / torch.linalg.matrix_norm(D)
    assert torch.allclose(grad.reshape(4, -1), analytic, atol=1e-10)
