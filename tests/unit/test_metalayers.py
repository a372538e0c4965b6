"""Tests of svdablate.metalayers: API contract, forward accuracy, gradients, failure handling."""

from __future__ import annotations

import pytest
import torch

from svdablate.metalayers import (
    METHODS,
    MetaLayerFailure,
    covariance,
    inv_sqrtm,
    resolve_method,
    spectrum_stats,
    sqrtm,
)

CANONICAL = [
    "svd",
    "svd-topn",
    "svd-trunc",
    "svd-pi",
    "svd-newton",
    "svd-taylor",
    "svd-pade",
    "ns",
    "mpa-lya",
    "mpa-lya-inv",
]
MPA = ["mpa-lya", "mpa-lya-inv"]
SVD_FAMILY = [m for m in CANONICAL if m.startswith("svd")]
F64 = torch.float64


def spd(eigs, batch: int = 2, seed: int = 0, dtype=F64) -> torch.Tensor:
    """Batch of SPD matrices with the given spectrum and random eigenvectors."""
    g = torch.Generator().manual_seed(seed)
    d = len(eigs)
    q, _ = torch.linalg.qr(torch.randn(batch, d, d, generator=g, dtype=F64))
    lam = torch.as_tensor(eigs, dtype=F64)
    return ((q * lam) @ q.mT).to(dtype)


def eigh_ref(p: torch.Tensor, power: float) -> torch.Tensor:
    """Plain autograd through torch.linalg.eigh: the exact matrix function."""
    lam, u = torch.linalg.eigh(p)
    return (u * lam.pow(power).unsqueeze(-2)) @ u.mT


FUNCS = {"sqrtm": (sqrtm, 0.5), "inv_sqrtm": (inv_sqrtm, -0.5)}


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
