"""Models: every backbone builds and trains a step (dbn, gcp); ZCA whitening and GCP numerics."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from svdablate.metalayers import CovariancePooling, MetaLayerFailure, ZCAWhitening, modules
from svdablate.models import MODELS, build_model
from svdablate.models.svdnet import SVDNet
from svdablate.spec.model_options import ModelOptions


def _spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[tuple[str, torch.dtype, dict]]:
    """Record (method, dtype, opts) of each call the meta-layer modules make to <name>."""
    calls: list[tuple[str, torch.dtype, dict]] = []
    real = getattr(modules, name)

    def spy(P: torch.Tensor, method: str = "svd", **opts: Any) -> torch.Tensor:
        calls.append((method, P.dtype, opts))
        return real(P, method, **opts)

    monkeypatch.setattr(modules, name, spy)
    return calls


# ------------------------------------------------------------------------------- whole models
CASES = [(m, a) for m in MODELS for a in ("dbn", "gcp")]


@pytest.mark.parametrize(("name", "application"), CASES)
def test_model_builds_and_trains_one_step(name: str, application: str) -> None:
    torch.manual_seed(0)
    model = build_model(
        name,
        application=application,
        num_classes=7,
        in_channels=3,
        image_size=16,
        method="svd",
        options=ModelOptions(
            reduction_dim=6,
            # 3×3×3 stem patches span 27 < 64 dims: whiten 4 groups of 16 so P is not degenerate
            groups=4 if name != "convnet" else 1,
            # keep ≥ 16 spatial positions at 16 px so the 6×6 covariance has full rank
            layer4_stride1=name.startswith("resnet"),
        ),
    )
    if application == "dbn":
        assert model.metalayer.groups == (4 if name != "convnet" else 1)
    ml_cls = ZCAWhitening if application == "dbn" else CovariancePooling
    assert isinstance(model.metalayer, ml_cls)
    assert isinstance(model.pre_svd_layer, nn.Conv2d)
    seen: dict[str, torch.Tensor] = {}
    h1 = model.pre_svd_layer.register_forward_hook(lambda m, i, o: seen.update(pre=o))
    h2 = model.metalayer.register_forward_hook(lambda m, i, o: seen.update(meta_in=i[0]))
    model.train()
    x = torch.randn(3, 3, 16, 16)
    out = model(x)
    h1.remove()
    h2.remove()
    assert out.shape == (3, 7)
    if application == "dbn":  # the ZCA layer whitens exactly the Pre-SVD conv's output
        assert seen["meta_in"] is seen["pre"]
    else:  # the Pre-SVD conv is the GCP head's 1×1 reduction conv
        assert model.pre_svd_layer is model.metalayer.conv
        assert seen["pre"].shape[1] == 6
    nn.functional.cross_entropy(out, torch.arange(3)).backward()
    g = model.pre_svd_layer.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(x[:2]).shape == (2, 7)


def test_resnet_stems_and_layer4_stride() -> None:
    small = build_model(
        "resnet18", application="dbn", num_classes=3, in_channels=1, image_size=32, method="svd"
    )
    assert small.pre_svd_layer.kernel_size == (3, 3) and small.pre_svd_layer.stride == (1, 1)
    assert small.pre_svd_layer.in_channels == 1 and isinstance(small.body.maxpool, nn.Identity)
    big = build_model(
        "resnet50", application="dbn", num_classes=3, in_channels=3, image_size=224, method="svd"
    )
    assert big.pre_svd_layer.kernel_size == (7, 7) and big.pre_svd_layer.stride == (2, 2)
    assert isinstance(big.body.maxpool, nn.MaxPool2d)

    def head_input_hw(**opts: Any) -> tuple[int, int]:
        m = build_model(
            "resnet18",
            application="gcp",
            num_classes=3,
            in_channels=3,
            image_size=96,
            method="svd",
            options=ModelOptions(reduction_dim=8, **opts),
        )
        shape: list[torch.Size] = []
        m.metalayer.register_forward_hook(lambda mod, i, o: shape.append(i[0].shape))
        m.train()
        m(torch.randn(2, 3, 96, 96))
        return tuple(shape[0][2:])

    assert head_input_hw() == (3, 3)
    assert head_input_hw(layer4_stride1=True) == (6, 6)


def test_gcp_alexnet_is_the_official_iccv21_network() -> None:
    """ICCV'21 official `model_init.py` on `src/network/alexnet.py`: BN after every conv, no last
    max-pool, and the classifier 32896 → 4096 → ReLU → 4096 → ReLU → 1000 without dropout (the
    official AlexNet comments both dropouts out): 158,162,472 parameters, counted on the official
    model built on a CPU (`get_model('alexnet', MPNCOV with dimension_reduction=256, 1000, 0)`)."""
    model = build_model(
        "alexnet", application="gcp", num_classes=1000, in_channels=3, image_size=224, method="ns"
    )
    assert sum(p.numel() for p in model.parameters()) == 158_162_472
    features = [type(m).__name__ for m in model.body.features]
    assert (
        features
        == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"] * 2
        + [
            "Conv2d",
            "BatchNorm2d",
            "ReLU",
        ]
        * 3
    )
    head = model.classifier
    assert (
        model.classifier is model.body.classifier and model.classifier_prefix == "body.classifier."
    )
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert [(m.in_features, m.out_features) for m in head if isinstance(m, nn.Linear)] == [
        (32896, 4096),
        (4096, 4096),
        (4096, 1000),
    ]
    model.train()  # no dropout: a training forward is deterministic
    x = torch.randn(2, 3, 224, 224)
    torch.manual_seed(1)
    first = model(x)
    torch.manual_seed(2)
    assert torch.equal(first, model(x))


def test_build_model_rejects_unknowns() -> None:
    kw: dict[str, Any] = dict(num_classes=3, in_channels=3, image_size=32, method="svd")
    with pytest.raises(ValueError, match="convnet"):
        build_model("vgg16", application="dbn", **kw)
    with pytest.raises(ValueError, match="dbn"):
        build_model("convnet", application="whiten", **kw)
    with pytest.raises(ValueError, match="reduction_dim"):
        build_model("convnet", application="gcp", options=ModelOptions(reduction_dims=3), **kw)
    with pytest.raises(ValueError):
        build_model("convnet", application="gcp", **{**kw, "method": "not-a-method"})
    with pytest.raises(ValueError, match="float64"):
        build_model("convnet", application="gcp", precision="float16", **kw)


# ---------------------------------------------------------------------------------- ZCA (dbn)
def _digits_convnet(application: str, method: str = "svd", **kw: Any) -> SVDNet:
    """The convnet on 16-px one-channel images of 10 classes."""
    return build_model(
        "convnet",
        application=application,
        num_classes=10,
        in_channels=1,
        image_size=16,
        method=method,
        **kw,
    )


def _group_cov(y: torch.Tensor, groups: int) -> torch.Tensor:
    C = y.shape[1]
    Y = y.transpose(0, 1).reshape(groups, C // groups, -1).double()
    Yc = Y - Y.mean(-1, keepdim=True)
    return Yc @ Yc.transpose(1, 2) / Y.shape[-1]


def _correlated(B: int = 16, C: int = 8, HW: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(C, C, generator=g) * 2
    z = torch.randn(B, HW, HW, C, generator=g) @ mix.T + 3.0
    return z.permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("groups", [1, 2])
def test_zca_training_output_is_white(groups: int) -> None:
    x = _correlated()
    zca = ZCAWhitening(8, method="svd", groups=groups, eps=1e-9, affine=False).train()
    y = zca(x)
    assert y.dtype == x.dtype and y.shape == x.shape
    cov = _group_cov(y, groups)
    eye = torch.eye(8 // groups, dtype=cov.dtype).expand_as(cov)
    assert torch.allclose(cov, eye, atol=1e-4)
    assert _group_cov(x, groups).sub(eye).abs().max() > 1  # the input was far from white
    assert y.mean(dim=(0, 2, 3)).abs().max() < 1e-5


def test_zca_default_eps_gives_p_over_p_plus_eps() -> None:
    x = _correlated(seed=1) * 0.05  # small variance so eps = 1e-2 matters
    zca = ZCAWhitening(8, method="svd", affine=False).train()
    cov_y = _group_cov(zca(x), 1)[0]
    P = _group_cov(x, 1)[0]
    expected = P @ torch.linalg.inv(P + 1e-2 * torch.eye(8, dtype=P.dtype))
    assert torch.allclose(cov_y, expected, atol=1e-5)
    assert (cov_y - torch.eye(8, dtype=P.dtype)).abs().max() > 1e-2


def test_zca_eval_uses_running_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _correlated(seed=2)
    zca = ZCAWhitening(8, method="svd", groups=2, momentum=1.0).train()
    with torch.no_grad():
        zca.weight.uniform_(0.5, 2.0)
        zca.bias.normal_()
    y_train = zca(x)
    assert zca.num_batches_tracked.item() == 1
    X = x.transpose(0, 1).reshape(2, 4, -1).double()
    assert torch.allclose(zca.running_mean.double(), X.mean(-1, keepdim=True), atol=1e-5)

    def boom(*a: Any, **k: Any) -> torch.Tensor:
        raise AssertionError("eval must not call the meta-layer")

    monkeypatch.setattr(modules, "inv_sqrtm", boom)
    zca.eval()
    state = {k: v.clone() for k, v in zca.state_dict().items()}
    y_eval = zca(x)
    assert torch.allclose(y_eval, y_train, atol=1e-4)  # momentum 1: running = this batch
    y_other = zca(x * 2)  # eval is affine in x with fixed stats, not re-whitened
    assert not torch.allclose(_group_cov(y_other, 2), _group_cov(y_eval, 2), atol=1e-2)
    for k, v in zca.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_zca_running_stats_momentum() -> None:
    x = _correlated(seed=3)
    zca = ZCAWhitening(8, method="svd", momentum=0.1).train()
    zca(x)
    mu = x.transpose(0, 1).reshape(1, 8, -1).double().mean(-1, keepdim=True)
    assert torch.allclose(zca.running_mean.double(), 0.1 * mu, atol=1e-5)
    P = _group_cov(x, 1) + 1e-2 * torch.eye(8, dtype=torch.float64)
    lam, U = torch.linalg.eigh(P)
    S = (U * lam.rsqrt().unsqueeze(-2)) @ U.transpose(-1, -2)
    expected = 0.9 * torch.eye(8, dtype=torch.float64) + 0.1 * S
    assert torch.allclose(zca.running_S.double(), expected, atol=1e-5)


def test_zca_failure_propagates_and_keeps_running_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    zca = ZCAWhitening(8, method="svd").train()

    def fail(*a: Any, **k: Any) -> torch.Tensor:
        raise MetaLayerFailure("eigh did not converge")

    monkeypatch.setattr(modules, "inv_sqrtm", fail)
    with pytest.raises(MetaLayerFailure):
        zca(_correlated())
    assert zca.num_batches_tracked.item() == 0
    assert torch.equal(zca.running_S, torch.eye(8).expand(1, 8, 8))


def test_method_switch_and_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy(monkeypatch, "inv_sqrtm")
    model = _digits_convnet("dbn", method="SVD", precision="float32")
    model.train()
    x = torch.randn(8, 1, 16, 16)
    model(x)
    model.metalayer.method = "iSQRT-COV"  # the hybrid protocol's switch, by a paper name
    assert model.metalayer.method == "ns"
    model.metalayer.precision = "float64"
    out = model(x)
    assert out.dtype == torch.float32
    assert [c[0] for c in calls] == ["svd", "ns"]
    assert [c[1] for c in calls] == [torch.float32, torch.float64]
    assert [c[2]["precision"] for c in calls] == ["float32", "float64"]
    with pytest.raises(ValueError):
        model.metalayer.method = "bogus"
    with pytest.raises(ValueError):
        model.metalayer.precision = "half"


def test_metalayer_opts_reach_the_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy(monkeypatch, "sqrtm")
    model = _digits_convnet("gcp", options=ModelOptions(metalayer_opts={"eps": 1e-8}))
    model.train()
    model(torch.randn(4, 1, 16, 16))
    # eigh_device: where its eigh runs (the meta-layer's placement: `same` on a CPU)
    assert calls and calls[0][2] == {"eps": 1e-8, "precision": "float64", "eigh_device": "same"}


@pytest.mark.parametrize(("application", "name"), [("dbn", "inv_sqrtm"), ("gcp", "sqrtm")])
def test_solver_runs_whatever_method_is_set(
    application: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """model option `solver`: the released code's solver under the paper's row names; the
    hybrid protocol's (or anyone's) later `.method = ...` does not undo it."""
    calls = _spy(monkeypatch, name)
    model = _digits_convnet(application, options=ModelOptions(reduction_dim=6, solver="MPA-Lya"))
    assert model.metalayer.solver == "mpa-lya"
    model.metalayer.method = "ns"
    model.train()
    model(torch.randn(4, 1, 16, 16))
    assert model.metalayer.method == "mpa-lya" and [c[0] for c in calls] == ["mpa-lya"]
    model.metalayer.solver = None
    assert model.metalayer.method == "ns"
    with pytest.raises(ValueError, match="unknown meta-layer method"):
        model.metalayer.solver = "bogus"


@pytest.mark.parametrize("application", ["dbn", "gcp"])
def test_record_stats_fills_last_stats(application: str, monkeypatch: pytest.MonkeyPatch) -> None:
    captured: list[torch.Tensor] = []
    name = "inv_sqrtm" if application == "dbn" else "sqrtm"
    real = getattr(modules, name)

    def capture(P: torch.Tensor, method: str = "svd", **o: Any) -> torch.Tensor:
        captured.append(P.detach().double())
        return real(P, method, **o)

    monkeypatch.setattr(modules, name, capture)
    model = _digits_convnet(application, options=ModelOptions(reduction_dim=6))
    model.train()
    x = torch.randn(5, 1, 16, 16)
    model(x)
    assert model.metalayer.last_stats is None  # off by default
    model.metalayer.record_stats = True
    model(x)
    stats = model.metalayer.last_stats
    assert stats is not None and all(isinstance(v, float) for v in stats.values())
    solved = captured[-1]  # the matrices that entered the solver: P + εI (dbn) or P (gcp)
    if application == "dbn":
        assert set(stats) == {"kappa", "kappa_ridged", "lambda_ratio"}
        eps = model.metalayer.eps
        lam = torch.linalg.eigvalsh(solved - eps * torch.eye(solved.shape[-1], dtype=solved.dtype))
        lam_ridged = torch.linalg.eigvalsh(solved)
        kappa_ridged = (lam_ridged[..., -1] / lam_ridged[..., 0]).median().item()
        assert stats["kappa_ridged"] == pytest.approx(kappa_ridged, rel=1e-6)
        assert stats["kappa"] > stats["kappa_ridged"]
    else:
        assert set(stats) == {"kappa", "lambda_ratio"}  # no ridge in covariance pooling
        lam = torch.linalg.eigvalsh(solved)
    lam = lam.clamp_min(torch.finfo(torch.float64).eps)
    kappa = (lam[..., -1] / lam[..., 0]).median().item()
    ratio = (lam[..., -1] / lam[..., -2]).median().item()
    assert stats["kappa"] == pytest.approx(kappa, rel=1e-6)
    assert stats["lambda_ratio"] == pytest.approx(ratio, rel=1e-6)
    assert stats["kappa"] >= stats["lambda_ratio"] >= 1.0


def _with_covariance(eigs: list[float], B: int = 4, HW: int = 5, seed: int = 0) -> torch.Tensor:
    """(B, C, HW, HW) float64 input whose channel covariance (eq. 2) has exactly ``eigs``."""
    g = torch.Generator().manual_seed(seed)
    C, N = len(eigs), B * HW * HW
    a = torch.randn(N, C, generator=g, dtype=torch.float64)
    z, _ = torch.linalg.qr(a - a.mean(0))  # orthonormal, zero-mean columns
    u, _ = torch.linalg.qr(torch.randn(C, C, generator=g, dtype=torch.float64))
    X = u @ torch.diag(torch.tensor(eigs, dtype=torch.float64).sqrt()) @ z.mT * N**0.5
    return X.reshape(C, B, HW, HW).transpose(0, 1)


def test_zca_kappa_is_of_the_covariance_not_of_the_ridged_matrix() -> None:
    # P = cov(x) has spectrum (1e-3, 0.1, 1, 10): κ(P) = 1e4, λ1/λ2 = 10; the solver sees
    # P + εI with ε = 1e-2, whose κ is (10 + ε)/(1e-3 + ε) ≈ 910, the old "kappa"
    zca = ZCAWhitening(4, method="svd", affine=False).train()
    zca.record_stats = True
    zca(_with_covariance([1e-3, 0.1, 1.0, 10.0]))
    stats = zca.last_stats
    assert stats is not None
    assert stats["kappa"] == pytest.approx(1e4, rel=1e-9)
    assert stats["lambda_ratio"] == pytest.approx(10.0, rel=1e-9)
    assert stats["kappa_ridged"] == pytest.approx(10.01 / 0.011, rel=1e-9)


def test_gcp_kappa_is_of_the_covariance() -> None:
    # GCP has no ridge: κ of the covariance the solver sees, and no kappa_ridged. Its covariance
    # is per image (over positions), so one image carries the constructed spectrum
    head = CovariancePooling(4, reduction_dim=4, method="svd").double().train()
    with torch.no_grad():  # the head's conv-BN-ReLU passes x through unchanged
        head.conv.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
    head.bn, head.relu = nn.Identity(), nn.Identity()
    head.record_stats = True
    head(_with_covariance([1e-3, 0.1, 1.0, 10.0], B=1))
    assert head.last_stats is not None and set(head.last_stats) == {"kappa", "lambda_ratio"}
    assert head.last_stats["kappa"] == pytest.approx(1e4, rel=1e-9)
    assert head.last_stats["lambda_ratio"] == pytest.approx(10.0, rel=1e-9)


# ---------------------------------------------------------------------------------- GCP (gcp)
def test_gcp_is_upper_triangle_of_sqrt_covariance() -> None:
    torch.manual_seed(0)
    head = CovariancePooling(5, reduction_dim=4, method="svd").train()
    x = torch.randn(3, 5, 6, 6)
    out = head(x)
    assert out.shape == (3, 10) and head.output_dim == 10 and out.dtype == torch.float32
    z = head.relu(head.bn(head.conv(x))).flatten(2).double()
    zc = z - z.mean(-1, keepdim=True)
    P = zc @ zc.transpose(1, 2) / z.shape[-1]
    lam, U = torch.linalg.eigh(P)
    Q = (U * lam.clamp_min(0).sqrt().unsqueeze(-2)) @ U.transpose(-1, -2)
    r, c = torch.triu_indices(4, 4)
    assert torch.allclose(out.double(), Q[:, r, c], atol=1e-4)


def test_modules_follow_dtype_conversion() -> None:
    model = _digits_convnet("dbn").to(torch.float64)
    assert model.metalayer.running_S.dtype == torch.float64
    model.train()
    assert model(torch.randn(4, 1, 16, 16, dtype=torch.float64)).dtype == torch.float64
    bufs = dict(model.named_buffers())
    assert "body.bn1.running_S" in bufs and "body.bn1.running_mean" in bufs
