"""Invariants of the ECCV'22 Pre-SVD treatments (svdablate.treatments)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from svdablate.schema import TREATMENT_ORDER
from svdablate.treatments import (
    TREATMENTS,
    SkewOrthogonalConv2d,
    SOCOptions,
    Treatment,
    attach_treatments,
    combination_warning,
    nearest_orthogonal,
    olr_switch,
    optimal_lr,
    parse_treatments,
    register_treatment,
)
from svdablate.treatments.registry import check_registry_order

ECCV22_ROWS = [
    "",
    "SN",
    "OL",
    "OW",
    "NOG",
    "OLR",
    "NOG+SN",
    "NOG+OL",
    "NOG+OW",
    "NOG+OLR",
    "OW+OLR",
    "NOG+OW+OLR",
]


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


# ---------------------------------------------------------------------------------------------
# OW as Skew Orthogonal Convolution (ow_map="soc"; ECCV'22 ref. [43], the official code's operator)

#: the project's Pre-SVD convs SOC can represent: convnet stems (dbn), the CIFAR ResNet/AlexNet
#: stems (dbn) and the GCP 1×1 reductions (C_out < C_in, = and a small one with C_out > C_in)
SOC_LAYERS = {
    "convnet-stem-3to16-5x5": lambda: nn.Conv2d(3, 16, 5, padding=2, bias=False),
    "convnet-stem-1to16-5x5": lambda: nn.Conv2d(1, 16, 5, padding=2, bias=False),
    "resnet-cifar-stem-3to64": lambda: nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False),
    "alexnet-cifar-stem-3to64-bias": lambda: nn.Conv2d(3, 64, 3, padding=1),
    "gcp-2048to256-1x1": lambda: nn.Conv2d(2048, 256, 1, bias=False),
    "gcp-512to256-1x1": lambda: nn.Conv2d(512, 256, 1, bias=False),
    "gcp-256to256-1x1": lambda: nn.Conv2d(256, 256, 1, bias=False),
    "convnet-gcp-64to32-1x1": lambda: nn.Conv2d(64, 32, 1, bias=False),
}


def _soc(conv: nn.Conv2d, row: str = "OW") -> tuple[SkewOrthogonalConv2d, object]:
    h = attach_treatments(conv, row, ow_map="soc")
    assert isinstance(h.layer, SkewOrthogonalConv2d) and h.layer is not conv
    return h.layer, h


@pytest.mark.parametrize("name", list(SOC_LAYERS))
def test_soc_jacobian_is_orthogonal(name):
    """Eval (10 Taylor terms), float32: C_out ≥ C_in: ‖y − b‖ = ‖x‖ (the input, zero-padded to
    C_out channels, keeps its norm and exp(L⋆) is orthogonal); C_out < C_in: y = the first C_out
    channels of exp(L⋆)x, so ‖y‖ ≤ ‖x‖ and the Jacobian has orthonormal rows: ‖Jᵀg‖ = ‖g‖."""
    torch.manual_seed(14)
    conv = SOC_LAYERS[name]()
    soc, _ = _soc(conv)
    assert (soc.in_channels, soc.out_channels) == (conv.in_channels, conv.out_channels)
    soc.eval()
    x = torch.randn(3, conv.in_channels, 8, 8, requires_grad=True)
    y = soc(x)
    assert y.shape == conv(x).shape
    lin = y if soc.bias is None else y - soc.bias.view(1, -1, 1, 1)
    x_norm, y_norm = x.detach().flatten(1).norm(dim=1), lin.detach().flatten(1).norm(dim=1)
    if conv.out_channels >= conv.in_channels:
        assert torch.allclose(y_norm, x_norm, rtol=1e-4, atol=0)
    else:
        assert (y_norm < x_norm).all()
        g = torch.randn_like(y)
        (Jt_g,) = torch.autograd.grad(y, x, g)
        assert torch.allclose(Jt_g.flatten(1).norm(dim=1), g.flatten(1).norm(dim=1), rtol=1e-4)


@pytest.mark.parametrize("c_in,c_out", [(2, 4), (4, 2)])
def test_soc_is_exp_of_a_skew_symmetric_conv(c_in, c_out):
    """The dense operator (float64, 10 terms: to 1e-7): L⋆ is skew-symmetric and the Jacobian is
    exp(L⋆) with the input zero-padded after its channels (columns of the first C_in channels) and
    the output's first C_out channels kept (rows), as the official code: JᵀJ = I or JJᵀ = I."""
    torch.manual_seed(15)
    soc, _ = _soc(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False).double())
    soc.eval()
    M, H = max(c_in, c_out), 4
    L = soc.scaled_skew_kernel().detach()
    basis = torch.eye(M * H * H, dtype=torch.float64).reshape(-1, M, H, H)
    A = torch.nn.functional.conv2d(basis, L, padding=1).reshape(M * H * H, -1).T  # column j = L⋆e_j
    assert torch.allclose(A, -A.T, atol=1e-14)
    n_in, n_out = c_in * H * H, c_out * H * H
    x_basis = torch.eye(n_in, dtype=torch.float64).reshape(-1, c_in, H, H)
    J = soc(x_basis).reshape(n_in, -1).T
    assert torch.allclose(J, torch.linalg.matrix_exp(A)[:n_out, :n_in], atol=1e-7)
    gram = J.T @ J if c_out >= c_in else J @ J.T
    assert torch.allclose(gram, torch.eye(min(n_in, n_out), dtype=torch.float64), atol=1e-7)


def test_soc_sigma_is_the_smallest_fantastic_four_norm():
    """σ (converged power iteration) = min over the four reshapes of the skew kernel L (out, in,
    h, w) of their spectral norms: (out·h)×(in·w), (out·w)×(in·h), out×(in·h·w), in×(out·h·w)."""
    torch.manual_seed(20)
    opts = SOCOptions(init_iters=300)
    soc = SkewOrthogonalConv2d(3, 6, (5, 3), bias=False, options=opts, dtype=torch.float64)
    soc.eval()
    L = 0.5 * (soc.kernel - soc.kernel.transpose(0, 1).flip(2, 3)).detach()
    o, i, h, w = L.shape
    reshapes = [
        torch.einsum("oihw->ohiw", L).reshape(o * h, i * w),
        torch.einsum("oihw->owih", L).reshape(o * w, i * h),
        L.reshape(o, i * h * w),
        torch.einsum("oihw->iohw", L).reshape(i, o * h * w),
    ]
    sigma = min(float(torch.linalg.matrix_norm(R, ord=2)) for R in reshapes)
    scaled = soc.scaled_skew_kernel().detach()
    assert torch.allclose(scaled, soc.correction * L / sigma, rtol=1e-6)


def test_soc_options_named_with_official_defaults():
    opts = SOCOptions()
    assert (opts.train_terms, opts.eval_terms) == (5, 10)
    assert (opts.init_iters, opts.update_iters, opts.update_freq) == (50, 1, 200)
    assert (opts.correction, opts.correction_1x1) == (0.7, 1.0)
    torch.manual_seed(16)
    stem, _ = _soc(nn.Conv2d(3, 16, 5, padding=2, bias=False))
    reduction, _ = _soc(nn.Conv2d(64, 32, 1, bias=False))
    assert (stem.correction, reduction.correction) == (0.7, 1.0)
    # σ bounds the 1×1 operator's norm exactly (one reshape is the matrix): ‖scaled L‖₂ ≈ 1
    L = reduction.scaled_skew_kernel().detach()[:, :, 0, 0]
    assert torch.linalg.matrix_norm(L, ord=2).item() == pytest.approx(1.0, abs=0.05)
    # fewer Taylor terms in training: the norm is kept less precisely (‖L‖ ≈ 1.6 for this stem)
    x = torch.randn(4, 3, 8, 8)
    errs = {}
    for mode in ("train", "eval"):
        getattr(stem, mode)()
        with torch.no_grad():
            y = stem(x)
        errs[mode] = float((y.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1) - 1).abs().max())
    assert errs["eval"] < 1e-5 < errs["train"] < 1e-2
    custom, _ = (
        SkewOrthogonalConv2d(3, 16, (5, 5), bias=False, options=SOCOptions(eval_terms=2)),
        None,
    )
    custom.eval()
    with torch.no_grad():
        assert abs(float(custom(x).norm() / x.norm()) - 1) > 1e-3  # 2 terms: visibly not exact
    with pytest.raises(ValueError, match="train_terms"):
        SOCOptions(train_terms=0)
    with pytest.raises(ValueError, match="correction"):
        SOCOptions(correction=float("nan"))


@pytest.mark.parametrize("row", ["OW", "NOG+OW", "NOG+OW+OLR"])
def test_soc_gradient_nog_and_olr_act_on_the_free_kernel(row):
    torch.manual_seed(17)
    conv = nn.Conv2d(3, 16, 5, padding=2, bias=False)
    soc, h = _soc(conv, row)
    kernel = soc.kernel
    assert kernel.shape == (16, 16, 5, 5)
    assert h.weight_parameter() is kernel
    assert [id(p) for p in h.parameters()] == [id(kernel)]  # buffers are not parameters
    x = torch.randn(8, 3, 8, 8)
    (soc(x).tanh() ** 2).mean().backward()
    assert kernel.grad is not None and torch.isfinite(kernel.grad).all()
    assert kernel.grad.abs().sum() > 0
    raw = kernel.grad.clone()
    h.after_backward()
    G = kernel.grad.reshape(16, -1)
    if "NOG" in row:
        sv = torch.linalg.svdvals(G)
        assert torch.allclose(sv, torch.ones_like(sv), atol=1e-5)
        assert torch.allclose(G, nearest_orthogonal(raw).reshape(16, -1))
    else:
        assert torch.equal(kernel.grad, raw)
    opt = torch.optim.SGD([{"params": h.parameters()}], lr=10.0)
    lr = h.set_learning_rate(opt, 10.0)
    expected = olr_switch(optimal_lr(kernel, kernel.grad), 10.0) if "OLR" in row else 10.0
    assert lr == pytest.approx(expected, rel=1e-9)
    before = kernel.detach().clone()
    opt.step()
    assert not torch.equal(kernel.detach(), before)


def test_soc_state_dict_round_trip():
    torch.manual_seed(18)
    a, _ = _soc(nn.Conv2d(3, 8, 3, padding=1))
    b, _ = _soc(nn.Conv2d(3, 8, 3, padding=1))
    x = torch.randn(2, 3, 6, 6)
    a.train()
    for _ in range(3):  # moves the power-iteration buffers and the step counter
        a(x)
    keys = set(a.state_dict())
    assert {"kernel", "bias", "num_updates", "u1", "v4"} <= keys
    assert int(a.num_updates) == 3
    b.load_state_dict(a.state_dict())
    for mode in ("train", "eval"):
        getattr(a, mode)()
        getattr(b, mode)()
        assert torch.equal(a(x), b(x))
    assert int(b.num_updates) == int(a.num_updates) == 4


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), "stride"),  # ImageNet ResNet
        (lambda: nn.Conv2d(3, 64, 11, stride=4, padding=2), "stride"),  # ImageNet AlexNet
        (lambda: nn.Conv2d(3, 8, 4, padding=2), "odd kernel"),
        (lambda: nn.Conv2d(3, 8, 3), "padding"),
        (lambda: nn.Conv2d(3, 8, 3, padding=1, padding_mode="circular"), "padding"),
        (lambda: nn.Conv2d(4, 8, 3, padding=2, dilation=2), "dilation"),
        (lambda: nn.Conv2d(4, 8, 3, padding=1, groups=2), "groups"),
        (lambda: nn.Linear(8, 8), "nn.Conv2d"),
    ],
)
def test_soc_rejects_layers_it_cannot_represent(make, match):
    with pytest.raises(ValueError, match=match) as info:
        attach_treatments(make(), "NOG+OW", ow_map="soc")
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith("use ow_map='matrix_exp' for this layer")


@pytest.mark.parametrize("row", ["SN+OW", "OL+OW", "NOG+SN+OW"])
def test_soc_rejects_treatments_on_the_weight_matrix(row):
    with pytest.raises(ValueError, match="use ow_map='matrix_exp'"):
        attach_treatments(nn.Conv2d(3, 8, 3, padding=1), row, ow_map="soc")


def test_soc_only_with_ow_and_same_layer_otherwise():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    h = attach_treatments(conv, "NOG+OLR", ow_map="soc")  # no OW: the map is not used
    assert h.layer is conv and h.weight_parameter() is conv.weight
    h2 = attach_treatments(nn.Conv2d(3, 8, 3, stride=2), "NOG", ow_map="soc")
    assert isinstance(h2.layer, nn.Conv2d)
    with pytest.raises(ValueError, match="weight matrix"):
        attach_treatments(nn.Conv2d(3, 8, 3, padding=1), "OW", ow_map="soc").effective_weight()


# ---------------------------------------------------------------------------------------------
# parsing, registry, warnings, attach errors


def test_registry_follows_schema_treatment_order():
    assert tuple(TREATMENTS) == TREATMENT_ORDER == ("NOG", "SN", "OL", "OW", "OLR")
    check_registry_order(TREATMENTS, TREATMENT_ORDER)
    check_registry_order({**TREATMENTS, "HALF": Treatment}, TREATMENT_ORDER)  # after the five
    swapped = dict(reversed(list(TREATMENTS.items())))
    with pytest.raises(RuntimeError, match="TREATMENT_ORDER"):
        check_registry_order(swapped, TREATMENT_ORDER)
    with pytest.raises(RuntimeError, match="missing OLR"):
        check_registry_order({k: v for k, v in TREATMENTS.items() if k != "OLR"}, TREATMENT_ORDER)
    with pytest.raises(RuntimeError, match="TREATMENT_ORDER"):
        check_registry_order({"HALF": Treatment, **TREATMENTS}, TREATMENT_ORDER)


@pytest.mark.parametrize(
    "given,expected",
    [
        ("OLR+ow+Nog", ("NOG", "OW", "OLR")),
        ("sn+NOG", ("NOG", "SN")),
        (["olr", "OW"], ("OW", "OLR")),
        ((" nog ", "Sn"), ("NOG", "SN")),
        ("", ()),
        (None, ()),
        ([], ()),
        ("OL", ("OL",)),
    ],
)
def test_parse_treatments_canonical(given, expected):
    assert parse_treatments(given) == expected


@pytest.mark.parametrize("bad", ["NOG+XYZ", ["OW", "bn"], "SVD+NOG", "NOG++OW"])
def test_parse_treatments_rejects_unknown_with_valid_list(bad):
    with pytest.raises(ValueError, match="valid: NOG, SN, OL, OW, OLR"):
        parse_treatments(bad)


@pytest.mark.parametrize("bad", ["NOG+nog", ["OW", "ow"]])
def test_parse_treatments_rejects_duplicates(bad):
    with pytest.raises(ValueError, match="twice"):
        parse_treatments(bad)


@pytest.mark.parametrize(
    "names,warns",
    [
        ("OW+OLR", True),
        ("NOG+OLR", True),
        ("olr+ow", True),
        ("NOG+OW+OLR", False),
        ("OLR", False),
        ("NOG+OW", False),
        ("", False),
        ("SN+OLR", False),
    ],
)
def test_combination_warning(names, warns):
    msg = combination_warning(names)
    if warns:
        assert isinstance(msg, str) and "OLR" in msg and "\n" not in msg
    else:
        assert msg is None


class Halve(Treatment):
    """A throwaway treatment: the Pre-SVD gradient halved."""

    name = "HALF"

    def transform_grad(self, grad):
        return grad / 2


@pytest.fixture
def halve():
    """`Halve` registered for one test (the one place a treatment is added), then removed."""
    register_treatment(Halve)
    yield Halve
    TREATMENTS.pop("HALF")


def test_a_registered_treatment_is_parsed_after_the_papers_and_attached(halve):
    assert tuple(TREATMENTS) == (*TREATMENT_ORDER, "HALF")
    assert parse_treatments("half+NOG") == ("NOG", "HALF")
    assert parse_treatments(["HALF", "olr", "ow"]) == ("OW", "OLR", "HALF")
    lin = nn.Linear(3, 2)
    h = attach_treatments(lin, "HALF")
    lin.weight.grad = torch.ones(2, 3)
    h.after_backward()
    assert torch.equal(lin.weight.grad, torch.full((2, 3), 0.5))


def test_register_treatment_refuses_a_taken_or_malformed_name(halve):
    with pytest.raises(ValueError, match="registered already"):
        register_treatment(Halve)
    lower = type("Lower", (Treatment,), {"name": "half2"})
    with pytest.raises(ValueError, match="upper case"):
        register_treatment(lower)
    assert "half2" not in TREATMENTS and "HALF2" not in TREATMENTS


def test_attach_errors():
    with pytest.raises(TypeError, match=r"Conv2d or nn\.Linear"):
        attach_treatments(nn.Conv1d(2, 2, 3), "NOG")
    conv = nn.Conv2d(3, 4, 3)
    attach_treatments(conv, "OW")
    with pytest.raises(ValueError, match="already parametrized"):
        attach_treatments(conv, "SN")
    with pytest.raises(ValueError, match="ol_weight"):
        attach_treatments(nn.Linear(2, 2), "OL", ol_weight=-1.0)


def test_parametrized_state_dict_round_trip():
    torch.manual_seed(10)
    a, b = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)
    ha, hb = attach_treatments(a, "OW"), attach_treatments(b, "OW")
    b.load_state_dict(a.state_dict())
    assert torch.equal(ha.effective_weight(), hb.effective_weight())


# ---------------------------------------------------------------------------------------------
# 3-step SGD run per ECCV'22 row on a stand-in Pre-SVD network


class _StandIn(nn.Module):
    """conv stem (the Pre-SVD layer) → BN → ReLU → channel covariance → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.pre_svd_layer = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = torch.relu(self.bn(self.pre_svd_layer(x))).flatten(2)
        f = f - f.mean(-1, keepdim=True)
        cov = f @ f.mT / f.shape[-1]
        return self.fc(cov.flatten(1))


#: every ECCV'22 row with the matrix form of OW, and the rows SOC can run (OW without SN or OL)
ROW_CASES = [(r, "matrix_exp") for r in ECCV22_ROWS] + [
    (r, "soc") for r in ECCV22_ROWS if "OW" in r and "SN" not in r and "OL+" not in r + "+"
]


def _assert_soc_norm_preserving(layer: nn.Module, in_channels: int) -> None:
    """Eval-mode SOC with C_out ≥ C_in: ‖y − b‖ = ‖x‖ to 1e-4."""
    assert isinstance(layer, SkewOrthogonalConv2d)
    was_training = layer.training
    layer.eval()
    x = torch.randn(4, in_channels, 8, 8)
    with torch.no_grad():
        y = layer(x)
        if layer.bias is not None:
            y = y - layer.bias.view(1, -1, 1, 1)
    layer.train(was_training)
    assert torch.allclose(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-4)


@pytest.mark.parametrize("row,ow_map", ROW_CASES, ids=[f"{r or 'SVD'}-{m}" for r, m in ROW_CASES])
def test_three_step_sgd_each_row(row, ow_map):
    torch.manual_seed(11)
    model = _StandIn()
    h = attach_treatments(model.pre_svd_layer, row, ow_map=ow_map)
    model.set_submodule("pre_svd_layer", h.layer)  # a new module under SOC, else the same one
    ids = {id(p) for p in h.parameters()}
    rest = [p for p in model.parameters() if id(p) not in ids]
    assert len(rest) + len(ids) == len(list(model.parameters()))
    base_lr = 0.05
    opt = torch.optim.SGD(
        [{"params": rest}, {"params": h.parameters()}], lr=base_lr, momentum=0.9, weight_decay=5e-4
    )
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,))
    free0 = h.weight_parameter().detach().clone()
    for _ in range(3):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) + h.regularizer()
        assert torch.isfinite(loss)
        loss.backward()
        h.after_backward()
        lr = h.set_learning_rate(opt, base_lr)
        assert 0 < lr <= base_lr and opt.param_groups[0]["lr"] == base_lr
        opt.step()
    free = h.weight_parameter().detach()
    assert torch.isfinite(free).all() and not torch.allclose(free, free0)
    if ow_map == "soc":
        _assert_soc_norm_preserving(model.pre_svd_layer, 3)
    elif "OW" in row:
        _assert_orthonormal(h.effective_weight().detach(), 1e-5)
    assert (combination_warning(row) is not None) == (row in ("NOG+OLR", "OW+OLR"))


DEMO_ROWS = ["", "NOG", "OW", "NOG+OW+OLR"]
DEMO_CASES = [(r, "matrix_exp") for r in DEMO_ROWS] + [("OW", "soc"), ("NOG+OW+OLR", "soc")]


def _build_model(name: str, application: str, in_channels: int, image_size: int) -> nn.Module:
    try:
        from svdablate.models import build_model
    except ImportError as exc:  # models/ or metalayers/ not importable in this checkout
        pytest.skip(f"svdablate.models unavailable: {exc}")
    return build_model(
        name,
        application=application,
        num_classes=10,
        in_channels=in_channels,
        image_size=image_size,
        method="svd",
    )


def _train_steps(model: nn.Module, h, x: torch.Tensor, steps: int) -> None:
    ids = {id(p) for p in h.parameters()}
    rest = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.SGD([{"params": rest}, {"params": h.parameters()}], lr=0.05, momentum=0.9)
    y = torch.randint(0, 10, (x.shape[0],))
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y) + h.regularizer()
        assert torch.isfinite(loss)
        loss.backward()
        h.after_backward()
        assert 0 < h.set_learning_rate(opt, 0.05) <= 0.05
        opt.step()


@pytest.mark.parametrize("application", ["dbn", "gcp"])
@pytest.mark.parametrize("row,ow_map", DEMO_CASES, ids=[f"{r or 'SVD'}-{m}" for r, m in DEMO_CASES])
def test_three_step_sgd_demo_rows_on_convnet(application, row, ow_map):
    """The same run on the project's `convnet` (models/), Pre-SVD layer as the model declares it;
    under SOC the caller installs ``handle.layer`` at ``model.pre_svd_path``."""
    torch.manual_seed(12)
    model = _build_model("convnet", application, in_channels=1, image_size=8)
    layer = model.pre_svd_layer
    assert isinstance(layer, nn.Conv2d)
    h = attach_treatments(layer, row, ow_map=ow_map)
    model.body.set_submodule(model.pre_svd_path, h.layer)
    assert model.pre_svd_layer is h.layer
    free0 = h.weight_parameter().detach().clone()
    _train_steps(model, h, torch.randn(8, 1, 8, 8), steps=3)
    free = h.weight_parameter().detach()
    assert torch.isfinite(free).all() and not torch.allclose(free, free0)
    if "NOG" in row:
        G = h.weight_parameter().grad.reshape(free.shape[0], -1)
        sv = torch.linalg.svdvals(G)
        assert torch.allclose(sv, torch.ones_like(sv), atol=1e-4)
    if ow_map == "soc" and application == "dbn":  # 1 → 16 channels: norm-preserving
        _assert_soc_norm_preserving(model.pre_svd_layer, 1)


@pytest.mark.parametrize("application", ["dbn", "gcp"])
def test_soc_installs_in_resnet18(application):
    """ResNet-18's Pre-SVD layers: the CIFAR stem 3→64 3×3 (dbn) and the 512→256 1×1 reduction
    (gcp) run as SOC after ``set_submodule``; the state_dict carries the SOC kernel."""
    torch.manual_seed(19)
    model = _build_model("resnet18", application, in_channels=3, image_size=32)
    h = attach_treatments(model.pre_svd_layer, "NOG+OW+OLR", ow_map="soc")
    model.body.set_submodule(model.pre_svd_path, h.layer)
    expected = (3, 64, (3, 3)) if application == "dbn" else (512, 256, (1, 1))
    soc = model.pre_svd_layer
    assert (soc.in_channels, soc.out_channels, soc.kernel_size) == expected
    assert f"body.{model.pre_svd_path}.kernel" in model.state_dict()
    free0 = h.weight_parameter().detach().clone()
    _train_steps(model, h, torch.randn(4, 3, 32, 32), steps=1)
    assert not torch.allclose(h.weight_parameter().detach(), free0)
