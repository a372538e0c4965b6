"""Invariants of the ECCV'22 gradient treatments: NOG, the nearest orthogonal gradient (eqs.
14-17), and OLR, the optimal learning rate with its switch (eqs. 18-21) and the bounds of
Proposition 1, on the Pre-SVD layer's own parameter group.
"""

from __future__ import annotations

import math

import pytest
import torch
from orthogonality import _assert_orthonormal, _rand_orthogonal
from torch import nn

from svdablate.treatments import (
    attach_treatments,
    nearest_orthogonal,
    olr_switch,
    optimal_lr,
)

# ---------------------------------------------------------------------------------------------
# NOG (eqs. 14-17)


@pytest.mark.parametrize("shape", [(6, 10), (10, 6), (7, 7), (8, 3, 3, 3), (4, 16, 1, 1)])
def test_nearest_orthogonal_unit_singular_values_and_polar_factor(shape):
    gen = torch.Generator().manual_seed(1)
    G = torch.randn(*shape, generator=gen, dtype=torch.float64)
    R = nearest_orthogonal(G)
    assert R.shape == G.shape and R.dtype == G.dtype
    Gm, Rm = G.reshape(shape[0], -1), R.reshape(shape[0], -1)
    sv = torch.linalg.svdvals(Rm)
    assert torch.allclose(sv, torch.ones_like(sv), atol=1e-10)
    # same singular vectors as G = USVᵀ: R = UVᵀ  <=>  G Rᵀ = U S Uᵀ and Rᵀ G = V S Vᵀ are
    # symmetric PSD with G's singular values as their nonzero eigenvalues
    s = torch.linalg.svdvals(Gm)
    for P in (Gm @ Rm.mT, Rm.mT @ Gm):
        assert torch.allclose(P, P.mT, atol=1e-10)
        ev = torch.linalg.eigvalsh(P).flip(0)[: s.numel()]
        assert torch.allclose(ev, s, atol=1e-9)


def test_nearest_orthogonal_matches_eq16_and_is_nearest():
    gen = torch.Generator().manual_seed(2)
    G = torch.randn(9, 5, generator=gen, dtype=torch.float64)  # tall, full column rank
    ev, V = torch.linalg.eigh(G.mT @ G)
    R16 = G @ (V @ torch.diag(ev.rsqrt()) @ V.mT)  # eq. 16: G (GᵀG)^(-1/2)
    R = nearest_orthogonal(G)
    assert torch.allclose(R, R16, atol=1e-10)
    best = torch.linalg.matrix_norm(G - R)
    for _ in range(50):  # eq. 14: no other orthonormal-column matrix is nearer
        Q = _rand_orthogonal(9, 5, gen)
        assert torch.linalg.matrix_norm(G - Q) >= best


@pytest.mark.parametrize("bad", ["zero", "nan", "inf"])
def test_nearest_orthogonal_leaves_zero_or_nonfinite_alone(bad):
    G = torch.zeros(4, 3, 3, 3)
    if bad != "zero":
        G = torch.randn(4, 3, 3, 3)
        G[1, 2, 0, 0] = float(bad)
    R = nearest_orthogonal(G)
    assert R.shape == G.shape
    assert torch.equal(torch.nan_to_num(R), torch.nan_to_num(G))
    if bad == "zero":
        assert not R.isnan().any()


def test_nearest_orthogonal_rejects_vectors():
    with pytest.raises(ValueError, match="at least 2 dims"):
        nearest_orthogonal(torch.ones(5))


def _conv_step(names: str, **kw):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3)
    h = attach_treatments(conv, names, **kw)
    x = torch.randn(4, 3, 6, 6)
    (conv(x) ** 2).mean().add(h.regularizer()).backward()
    return conv, h


def test_after_backward_nog_orthogonalises_weight_grad():
    conv, h = _conv_step("NOG")
    assert conv.weight.grad.shape == (8, 3, 3, 3)
    raw = conv.weight.grad.clone()
    h.after_backward()
    G = conv.weight.grad.reshape(8, -1)
    sv = torch.linalg.svdvals(G)
    assert torch.allclose(sv, torch.ones_like(sv), atol=1e-5)
    assert torch.allclose(G, nearest_orthogonal(raw).reshape(8, -1))
    assert float(h.last_grad_norm) == pytest.approx(float(raw.norm()), rel=1e-5)


def test_after_backward_without_nog_leaves_grad():
    conv, h = _conv_step("OL")
    raw = conv.weight.grad.clone()
    h.after_backward()
    assert torch.equal(conv.weight.grad, raw)


def test_after_backward_nog_with_ow_acts_on_free_parameter():
    conv, h = _conv_step("NOG+OW")
    free = conv.parametrizations.weight.original
    assert h.weight_parameter() is free and free.grad is not None
    h.after_backward()
    sv = torch.linalg.svdvals(free.grad.reshape(8, -1))
    assert torch.allclose(sv, torch.ones_like(sv), atol=1e-5)


def test_after_backward_nog_zero_and_nan_grad_left_alone():
    conv, h = _conv_step("NOG")
    conv.weight.grad.zero_()
    h.after_backward()
    assert torch.equal(conv.weight.grad, torch.zeros_like(conv.weight.grad))
    conv.weight.grad[0, 0, 0, 0] = float("nan")
    h.after_backward()
    assert conv.weight.grad.isnan().sum() == 1


# ---------------------------------------------------------------------------------------------
# OLR (eqs. 18-21, Proposition 1)


def test_optimal_lr_closed_form():
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        w = torch.randn(8, 27, generator=gen, dtype=torch.float64)
        g = torch.randn(8, 27, generator=gen, dtype=torch.float64)
        ww, lw, ll = (w * w).sum().item(), (g * w).sum().item(), (g * g).sum().item()
        expected = ww * lw / (ww * ll + 2 * lw * lw)
        assert optimal_lr(w, g) == pytest.approx(expected, rel=1e-12)
        # structure of eq. 20: sign of lᵀw; η*(w, c·l) = η*/c; η*(c·w, l) = c·η*
        assert math.copysign(1.0, optimal_lr(w, g)) == math.copysign(1.0, lw)
        assert optimal_lr(w, 3.0 * g) == pytest.approx(expected / 3.0, rel=1e-12)
        assert optimal_lr(3.0 * w, g) == pytest.approx(3.0 * expected, rel=1e-12)
    assert optimal_lr(torch.zeros(3, 3), torch.ones(3, 3)) == 0.0
    assert optimal_lr(torch.ones(3, 3), torch.zeros(3, 3)) == 0.0


def test_olr_switch_eq21():
    assert olr_switch(0.01, 0.1) == 0.01
    assert olr_switch(0.2, 0.1) == 0.1
    assert olr_switch(0.1, 0.1) == 0.1
    assert olr_switch(-0.01, 0.1) == 0.1
    assert olr_switch(0.0, 0.1) == 0.1
    assert olr_switch(float("nan"), 0.1) == 0.1


@pytest.mark.parametrize("n,m", [(4, 4), (16, 16), (64, 64), (8, 24)])
def test_optimal_lr_proposition1_bounds(n, m):
    """Prop. 1 with N = row dimension of W (W orthonormal rows, G = UVᵀ): wᵀw = lᵀl = N.

    Then η* = x / (1 + 2x²) with x = lᵀw / N; the stated bounds [1/(N²+2), N²/(N²+2)] hold for
    every lᵀw ≥ 1/N (the proof bounds lᵀl/lᵀw ≤ N² and lᵀw/wᵀw ≥ 1/N² separately).
    """
    N = n
    lo, hi = 1.0 / (N * N + 2), N * N / (N * N + 2.0)
    gen = torch.Generator().manual_seed(4 + n + m)
    checked = 0
    for _ in range(40):
        W = _rand_orthogonal(n, m, gen)
        G = nearest_orthogonal(torch.randn(n, m, generator=gen, dtype=torch.float64))
        lw = float((W * G).sum())
        if lw < 0:
            G, lw = -G, -lw
        assert (W * W).sum().item() == pytest.approx(N) and (G * G).sum().item() == pytest.approx(N)
        eta = optimal_lr(W, G)
        x = lw / N
        assert eta == pytest.approx(x / (1 + 2 * x * x), rel=1e-10)
        assert eta <= 1 / (2 * math.sqrt(2)) + 1e-12  # the exact maximum, below the stated hi
        if lw >= 1.0 / N:
            assert lo <= eta <= hi
            checked += 1
    assert checked > 20
    # the extremes: G = W (x = 1) and the maximiser x = 1/√2 both lie inside the bounds
    W = _rand_orthogonal(n, m, gen)
    assert optimal_lr(W, W) == pytest.approx(1 / 3)
    assert lo <= optimal_lr(W, W) <= hi


def test_proposition1_lower_bound_needs_positive_alignment():
    """With W, G orthogonal but lᵀw = tr(WᵀG) below 1/N, η* falls under 1/(N²+2) (or ≤ 0)."""
    N = 4
    W = torch.eye(N, dtype=torch.float64)

    def rot(t: float) -> torch.Tensor:
        c, s = math.cos(t), math.sin(t)
        return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)

    t = math.acos(1e-4)  # tr(G) = 4·1e-4 = 4e-4 < 1/N
    G = torch.block_diag(rot(t), rot(t))
    _assert_orthonormal(G, 1e-12)
    assert 0 < optimal_lr(W, G) < 1.0 / (N * N + 2)
    assert optimal_lr(W, -G) < 0


def _optimizer_with_groups(h, other: nn.Module, third: nn.Module):
    return torch.optim.SGD(
        [
            {"params": list(other.parameters()), "lr": 0.05},
            {"params": h.parameters(), "lr": 0.05},
            {"params": list(third.parameters()), "lr": 0.02},
        ],
        lr=0.05,
        momentum=0.9,
    )


@pytest.mark.parametrize(
    "sign,base_lr,expected", [(1.0, 1.0, 1 / 3), (1.0, 0.1, 0.1), (-1.0, 1.0, 1.0)]
)
def test_set_learning_rate_olr_sets_only_pre_svd_group(sign, base_lr, expected):
    lin = nn.Linear(6, 4, bias=False)
    h = attach_treatments(lin, "OLR")
    other, third = nn.Linear(4, 3), nn.Linear(3, 2)
    opt = _optimizer_with_groups(h, other, third)
    lin.weight.grad = sign * lin.weight.detach().clone()  # l = ±w: η* = ±1/3 exactly
    lr = h.set_learning_rate(opt, base_lr)
    assert lr == pytest.approx(expected)
    assert [g["lr"] for g in opt.param_groups] == [0.05, pytest.approx(expected), 0.02]


def test_set_learning_rate_olr_random_matches_eq21():
    conv, h = _conv_step("NOG+OW+OLR")
    h.after_backward()
    opt = _optimizer_with_groups(h, nn.Linear(2, 2), nn.Linear(2, 2))
    free = conv.parametrizations.weight.original
    with torch.no_grad():
        free.normal_()  # torch's trivialization starts it at -I (its forward ignores that)
    for base_lr in (1.0, 1e-3):
        lr = h.set_learning_rate(opt, base_lr)
        eta = optimal_lr(free, free.grad)
        assert lr == pytest.approx(olr_switch(eta, base_lr))
        assert lr in (pytest.approx(eta), base_lr)
        assert opt.param_groups[1]["lr"] == lr
        assert [opt.param_groups[i]["lr"] for i in (0, 2)] == [0.05, 0.02]


@pytest.mark.parametrize(
    "row,ow_map", [("OW+OLR", "matrix_exp"), ("SN+OLR", "matrix_exp"), ("OW+OLR", "soc")]
)
def test_olr_uses_the_free_parameter_and_its_gradient(row, ow_map):
    """OLR in one space (official script): η* = η*(free parameter, its gradient), not η* of the
    effective (orthogonal / spectrally normalised) weight with the free parameter's gradient."""
    torch.manual_seed(13)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    h = attach_treatments(conv, row, ow_map=ow_map)
    free = h.weight_parameter()
    assert free is not getattr(h.layer, "weight", None)
    with torch.no_grad():
        free.normal_()
    free.grad = free.detach() + 0.3 * torch.randn_like(free)  # lᵀw > 0: η* ≈ 1/3, inside (0, 10)
    opt = torch.optim.SGD([{"params": h.parameters()}], lr=10.0)
    lr = h.set_learning_rate(opt, 10.0)
    assert lr == pytest.approx(optimal_lr(free, free.grad), rel=1e-9)
    assert 0.1 < lr < 1.0
    if ow_map != "soc":  # what the effective-weight convention would have given
        assert lr != pytest.approx(optimal_lr(h.effective_weight(), free.grad), rel=1e-2)


def test_set_learning_rate_without_olr_is_base_lr():
    _, h = _conv_step("NOG+OW")
    opt = _optimizer_with_groups(h, nn.Linear(2, 2), nn.Linear(2, 2))
    assert h.set_learning_rate(opt, 0.3) == 0.3
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.3, 0.02]


def test_set_learning_rate_finds_group_by_identity_through_dataparallel():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    h = attach_treatments(model[0], "OLR")
    wrapped = nn.DataParallel(model)  # names become "module.0.*": a by-name lookup misses them
    ids = {id(p) for p in h.parameters()}
    rest = [p for p in wrapped.parameters() if id(p) not in ids]
    opt = torch.optim.SGD([{"params": rest}, {"params": h.parameters()}], lr=0.1)
    model[0].weight.grad = model[0].weight.detach().clone()
    assert h.set_learning_rate(opt, 1.0) == pytest.approx(1 / 3)
    assert opt.param_groups[0]["lr"] == 0.1


def test_set_learning_rate_requires_own_group():
    lin = nn.Linear(5, 4)
    other = nn.Linear(4, 2)
    h = attach_treatments(lin, "OLR")
    mixed = torch.optim.SGD(list(lin.parameters()) + list(other.parameters()), lr=0.1)
    with pytest.raises(ValueError, match="own group"):
        h.set_learning_rate(mixed, 0.1)
    partial = torch.optim.SGD([{"params": [lin.weight]}, {"params": [lin.bias]}], lr=0.1)
    with pytest.raises(ValueError, match="exactly the 2 Pre-SVD parameters"):
        h.set_learning_rate(partial, 0.1)
