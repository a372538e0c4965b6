"""Tests of svdablate.metalayers: API contract (the registry, option values), shapes, dtypes
and forward accuracy, degenerate inputs and failure handling, covariance and spectrum
statistics. Gradients are in test_metalayers_gradients.py, the papers' literal equations in
test_metalayers_papers.py.
"""

from __future__ import annotations

import pytest
import torch
from metalayer_inputs import CANONICAL, F64, FUNCS, MPA, eigh_ref, spd

from svdablate.metalayers import (
    METHODS,
    MetaLayerFailure,
    covariance,
    inv_sqrtm,
    resolve_method,
    spectrum_stats,
    sqrtm,
)

# ------------------------------------------------------------------------------ registry


def test_registry_has_canonical_names():
    assert sorted(METHODS) == sorted(CANONICAL)


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("MPN-COV", "svd"),
        ("SVD", "svd"),
        ("iSQRT-COV", "ns"),
        ("NS", "ns"),
        ("Newton-Schulz", "ns"),
        ("SVD-Padé", "svd-pade"),
        ("SVD-Pade", "svd-pade"),
        ("svd-pade", "svd-pade"),
        ("SVD-Taylor", "svd-taylor"),
        ("SVD-Trunc", "svd-trunc"),
        ("SVD-TopN", "svd-topn"),
        ("SVD-PI", "svd-pi"),
        ("SVD-Newton", "svd-newton"),
        ("MPA-Lya", "mpa-lya"),
        ("MPA_Lya_Inv", "mpa-lya-inv"),
        ("mpn-cov", "svd"),
        ("isqrt-cov", "ns"),
        ("svd-padÉ", "svd-pade"),
    ],
)
def test_resolve_method_aliases(alias, canonical):
    assert resolve_method(alias) == canonical


def test_unknown_method_lists_valid_names():
    with pytest.raises(ValueError, match="svd-pade") as info:
        resolve_method("cholesky")
    for name in CANONICAL:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="unknown meta-layer method"):
        sqrtm(spd([1.0, 2.0]), "nope")


def test_unknown_option_lists_valid_ones():
    p = spd([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="degree") as info:
        sqrtm(p, "svd-taylor", iters=3)
    assert "precision" in str(info.value) and "eps" in str(info.value)
    with pytest.raises(ValueError, match="iters"):
        sqrtm(p, "ns", degree=3)
    with pytest.raises(ValueError, match="precision"):
        sqrtm(p, "svd", precision="float16")


@pytest.mark.parametrize("method", CANONICAL)
def test_options_of_each_method(method):
    opts = set(METHODS[method].options)
    assert "precision" in opts
    expected = {
        "svd": set(),
        "svd-topn": {"keep"},
        "svd-trunc": {"threshold"},
        "svd-pi": {"iters"},
        "svd-newton": {"iters"},
        "svd-taylor": {"degree"},
        "svd-pade": {"degree"},
        "ns": {"iters"},
        "mpa-lya": {"degree", "iters"},
        "mpa-lya-inv": {"degree", "iters"},
    }[method]
    assert expected <= opts
    if method.startswith("svd"):
        assert "eps" in opts


# ------------------------------------------------------------------- shapes, dtypes, forward


@pytest.mark.parametrize("method", CANONICAL)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("fname", list(FUNCS))
def test_shape_dtype_and_forward(method, dtype, fname):
    fn, power = FUNCS[fname]
    eigs = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    p = spd(eigs, batch=3, dtype=dtype)
    opts = {"keep": 6} if method == "svd-topn" else {}
    out = fn(p, method, **opts)
    assert out.shape == p.shape and out.dtype == dtype
    single = fn(p[1], method, **opts)
    assert single.shape == p[1].shape and single.dtype == dtype
    torch.testing.assert_close(single, out[1], rtol=1e-5, atol=1e-6)
    ref = eigh_ref(p.to(F64), power)
    err = float((out.to(F64) - ref).norm() / ref.norm())
    tol = {"ns": 1e-3, "mpa-lya": 1e-4, "mpa-lya-inv": 1e-4}.get(
        method, 1e-12 if dtype == F64 else 1e-6
    )
    assert err < tol, (method, err)


def test_svd_family_float32_input_computes_in_float64():
    p = spd([1e-6, 1e-3, 1.0, 2.0], dtype=torch.float32)
    ref = eigh_ref(p.to(F64), 0.5)
    exact = sqrtm(p, "svd")
    low = sqrtm(p, "svd", precision="float32")
    assert exact.dtype == low.dtype == torch.float32
    assert float((exact.to(F64) - ref).norm()) <= float((low.to(F64) - ref).norm()) + 1e-7


def test_ns_forward_converges_with_iterations():
    p = spd([0.3, 0.5, 1.0, 2.0, 4.0])
    ref = eigh_ref(p, 0.5)
    errs = [float((sqrtm(p, "ns", iters=k) - ref).norm() / ref.norm()) for k in (1, 3, 5, 15)]
    assert errs[0] > errs[1] > errs[2] > errs[3]
    assert errs[3] < 1e-12
    refi = eigh_ref(p, -0.5)
    assert float((inv_sqrtm(p, "ns", iters=15) - refi).norm() / refi.norm()) < 1e-12


@pytest.mark.parametrize("method", MPA)
def test_mpa_lya_forward_tolerance(method):
    # documented: relative error < 1e-4 when all eigenvalues of P/||P||_F exceed 0.05
    p = spd([1.0, 1.5, 2.0, 3.0, 4.0]) * 7.0
    for fn, power in FUNCS.values():
        ref = eigh_ref(p, power)
        assert float((fn(p, method) - ref).norm() / ref.norm()) < 1e-4


def test_topn_drops_smallest_eigenvalues():
    eigs = [1e-3, 2e-3, 0.5, 1.0, 2.0]
    p = spd(eigs)
    q = sqrtm(p, "svd-topn", keep=3)
    lam = torch.linalg.eigvalsh(q @ q)
    eps = torch.finfo(F64).eps
    torch.testing.assert_close(lam[..., 2:], torch.tensor([0.5, 1.0, 2.0], dtype=F64).expand(2, 3))
    assert float(lam[..., :2].abs().max()) < 1e-12 + 2 * eps
    # default keep = d - 50, at least 1
    q1 = sqrtm(p, "svd-topn")
    assert float((torch.linalg.eigvalsh(q1 @ q1)[..., -1] - 2.0).abs().max()) < 1e-12
    with pytest.raises(ValueError, match="keep"):
        sqrtm(p, "svd-topn", keep=0)


def test_eps_floor():
    p = spd([0.0, 1.0, 4.0])
    p = 0.5 * (p + p.mT)
    s = inv_sqrtm(p, "svd", eps=1e-4)
    assert torch.isfinite(s).all()
    assert float(torch.linalg.eigvalsh(s).max()) == pytest.approx(100.0, rel=1e-6)


# --------------------------------------------------------- degenerate inputs and failures


def _degenerate_inputs():
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 12, 5, generator=g, dtype=F64)  # d = 12 > N = 5: rank 4
    yield "rank-deficient", covariance(x)
    yield "repeated", spd([1.0, 1.0, 1.0, 2.0, 2.0, 3.0])
    yield "identity", torch.eye(6, dtype=F64).expand(2, 6, 6).clone()
    yield "near-repeated", spd([1.0, 1.0 + 1e-13, 1.0 + 2e-13, 2.0, 2.0 + 1e-14, 3.0])
    yield "zero-eigen", spd([0.0, 0.0, 0.0, 1.0, 2.0, 3.0])


@pytest.mark.parametrize("method", CANONICAL)
@pytest.mark.parametrize("fname", list(FUNCS))
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_degenerate_inputs_never_nan(method, fname, dtype):
    fn, _ = FUNCS[fname]
    for label, p in _degenerate_inputs():
        p = p.to(dtype).requires_grad_(True)
        w = torch.randn(p.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
        try:
            out = fn(p, method)
            assert torch.isfinite(out).all(), label
            (g,) = torch.autograd.grad((out * w).sum(), p)
        except MetaLayerFailure:
            continue
        assert torch.isfinite(g).all(), (label, method)


@pytest.mark.parametrize("method", CANONICAL)
def test_nonfinite_input_raises_failure(method):
    p = spd([1.0, 2.0, 3.0])
    p[0, 0, 0] = float("nan")
    with pytest.raises(MetaLayerFailure):
        sqrtm(p, method)


@pytest.mark.parametrize("method", CANONICAL)
def test_nonfinite_backward_raises_failure(method):
    p = spd([1.0, 2.0, 3.0]).requires_grad_(True)
    opts = {"keep": 3} if method == "svd-topn" else {}
    out = sqrtm(p, method, **opts)
    bad = torch.zeros_like(out)
    bad[0, 0, 1] = float("inf")
    with pytest.raises(MetaLayerFailure):
        torch.autograd.grad(out, p, bad)


def test_failure_is_runtime_error():
    assert issubclass(MetaLayerFailure, RuntimeError)


# ------------------------------------------------------------------ covariance and stats


def test_covariance_matches_centring_matrix():
    x = torch.randn(3, 4, 9, dtype=F64, generator=torch.Generator().manual_seed(0))
    n = x.shape[-1]
    ibar = (torch.eye(n, dtype=F64) - torch.ones(n, n, dtype=F64) / n) / n
    torch.testing.assert_close(covariance(x), x @ ibar @ x.mT)
    assert covariance(x.float()).dtype == torch.float32


def test_spectrum_stats():
    p = spd([0.5, 1.0, 2.0, 8.0], batch=3)
    st = spectrum_stats(p)
    assert st["kappa"].shape == (3,) and st["kappa"].dtype == F64
    torch.testing.assert_close(st["kappa"], torch.full((3,), 16.0, dtype=F64))
    torch.testing.assert_close(st["lambda_ratio"], torch.full((3,), 4.0, dtype=F64))
    st1 = spectrum_stats(p[0].float().requires_grad_(True))
    assert st1["kappa"].dim() == 0 and not st1["kappa"].requires_grad
    sing = spectrum_stats(spd([0.0, 1.0]))
    assert torch.isfinite(sing["kappa"]).all() and float(sing["kappa"].min()) > 1e15


def test_spectrum_stats_ridge_shifts_the_same_eigenvalues(monkeypatch):
    # P with a known spectrum: κ(P) = 1e4, λ1/λ2 = 10, κ(P + εI) = (10 + ε)/(1e-3 + ε) ≈ 910
    p = spd([1e-3, 0.1, 1.0, 10.0], batch=2)
    real, calls = torch.linalg.eigvalsh, []

    def counted(a):
        calls.append(a.shape)
        return real(a)

    monkeypatch.setattr(torch.linalg, "eigvalsh", counted)
    st = spectrum_stats(p, ridge=1e-2)
    assert len(calls) == 1  # one eigendecomposition for both κ: telemetry cost unchanged
    assert set(st) == {"kappa", "kappa_ridged", "lambda_ratio"}

    def full(v):
        return torch.full((2,), v, dtype=F64)

    torch.testing.assert_close(st["kappa"], full(1e4), rtol=1e-9, atol=0)
    torch.testing.assert_close(st["lambda_ratio"], full(10.0), rtol=1e-12, atol=0)
    torch.testing.assert_close(st["kappa_ridged"], full(10.01 / 0.011), rtol=1e-12, atol=0)
    lam = real(p + 1e-2 * torch.eye(4, dtype=F64))  # κ of the ridged matrix, taken directly
    torch.testing.assert_close(st["kappa_ridged"], lam[:, -1] / lam[:, 0], rtol=1e-12, atol=0)
    assert set(spectrum_stats(p)) == {"kappa", "lambda_ratio"}


def test_spectrum_stats_floors_negative_round_off_at_float64_eps():
    # a covariance's null eigenvalue can come out of eigvalsh slightly negative
    p = torch.diag(torch.tensor([-1e-12, 0.5, 2.0], dtype=F64))
    eps = torch.finfo(F64).eps
    st = spectrum_stats(p, ridge=1e-2)
    assert float(st["kappa"]) == pytest.approx(2.0 / eps, rel=1e-15)
    assert float(st["lambda_ratio"]) == pytest.approx(4.0, rel=1e-15)
    assert float(st["kappa_ridged"]) == pytest.approx(2.01 / (1e-2 - 1e-12), rel=1e-15)


@pytest.mark.parametrize(
    ("method", "opts"),
    [
        ("ns", {"iters": 0}),
        ("svd-newton", {"iters": 0}),
        ("svd-pi", {"iters": 1.5}),
        ("svd-taylor", {"degree": -1}),
        ("svd-trunc", {"threshold": 0.0}),
        ("mpa-lya", {"degree": 0}),
        ("svd", {"eps": -1.0}),
    ],
)
def test_bad_option_values_fail_at_forward(method, opts):
    with pytest.raises(ValueError):
        sqrtm(spd([1.0, 2.0]), method, **opts)
