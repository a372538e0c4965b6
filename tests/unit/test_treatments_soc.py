"""Invariants of OW as Skew Orthogonal Convolution (ow_map="soc"; ECCV'22 ref. [43], the
official code's operator): an orthogonal Jacobian, exp of a skew-symmetric convolution, its
options and defaults, NOG and OLR on its free kernel, state dicts and the layers and
treatments it refuses.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from svdablate.treatments import (
    SkewOrthogonalConv2d,
    SOCOptions,
    attach_treatments,
    nearest_orthogonal,
    olr_switch,
    optimal_lr,
)

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
