"""Tests of the K-matrix builders, the rule registry and the Table 6/7 analyses."""

from __future__ import annotations

import math

import pytest
import torch
from mpmath import mp, mpf

from svdablate.metalayers import (
    METHODS,
    inv_sqrtm,
    k_rule,
    krules,
    registry,
    resolve_method,
    spectral,
    sqrtm,
)
from svdablate.metalayers.analysis import approximation_errors, gradient_bounds, pade_degeneracy

F64 = torch.float64
EPS = torch.finfo(F64).eps


def _lams(d: int, seed: int = 0, ties: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lam = torch.rand(2, d, generator=g, dtype=F64) * 10.0 ** torch.randint(
        -6, 2, (2, d), generator=g
    )
    if ties:
        lam[:, 1] = lam[:, 0]
    return lam  # deliberately unsorted


def _k_reference(lam: torch.Tensor, g) -> torch.Tensor:
    """Official sign convention, one pair at a time: K_ij = g(x)/λ_i if λ_i ≥ λ_j else −g(x)/λ_j."""
    out = torch.zeros(lam.shape + lam.shape[-1:], dtype=F64)
    for b in range(lam.shape[0]):
        for i in range(lam.shape[1]):
            for j in range(lam.shape[1]):
                if i == j:
                    continue
                li, lj = float(lam[b, i]), float(lam[b, j])
                big, small = max(li, lj), min(li, lj)
                val = g(small / big) / big
                out[b, i, j] = val if li >= lj else -val
    return out


def _series(x: float, degree: int) -> float:
    acc = 0.0
    for _ in range(degree + 1):
        acc = acc * x + 1.0
    return acc


def _horner(coef, x: float) -> float:
    acc = 0.0
    for c in reversed(coef):
        acc = acc * x + c
    return acc


def test_exact_k_formula_and_ties():
    lam = _lams(6)
    k = krules.exact_k(lam)
    diff = lam.unsqueeze(-1) - lam.unsqueeze(-2)
    off = diff != 0
    torch.testing.assert_close(k[off], 1.0 / diff[off])
    assert (k[~off] == 0).all()


def test_truncated_k_clips_and_ties():
    lam = torch.tensor([[1.0, 1.0 + 1e-12, 1.0 + 1e-12, 3.0]], dtype=F64)
    k = krules.truncated_k(lam, 1e10)
    assert float(k.abs().max()) == 1e10
    assert float(k[0, 1, 2]) == float(k[0, 2, 1]) == 1e10  # ties: +T both ways (official)
    assert float(k[0, 0, 1]) == -1e10 and float(k[0, 1, 0]) == 1e10
    assert float(k[0, 0, 3]) == pytest.approx(-0.5)
    assert (k.diagonal(dim1=-2, dim2=-1) == 0).all()


@pytest.fixture(params=["direct", "packed"])
def pack_path(request, monkeypatch):
    """Run K-builder tests through both layouts of ``krules.symmetric_map``."""
    monkeypatch.setattr(krules, "_PACK_MIN_DIM", 4 if request.param == "packed" else 10**9)
    return request.param


@pytest.mark.parametrize("d", [5, 6, 8])  # odd d always takes the direct path
@pytest.mark.parametrize("degree", [1, 10, 100])
def test_taylor_k_matches_series(d, degree, pack_path):
    lam = _lams(d, seed=d)
    ref = _k_reference(lam, lambda x: _series(x, degree))
    torch.testing.assert_close(krules.taylor_k(lam, degree), ref, rtol=1e-13, atol=0.0)


def test_taylor_ties_give_k_plus_one_over_lambda():
    lam = torch.tensor([[0.5, 0.5, 2.0, 3.0]], dtype=F64)
    k = krules.taylor_k(lam, 100)
    assert float(k[0, 0, 1]) == float(k[0, 1, 0]) == pytest.approx(101 / 0.5, rel=1e-15)


@pytest.mark.parametrize("x", [0.0, 1e-300, 1e-8, 0.1, 0.5, 0.9, 0.99, 1 - 2**-20, 1 - 2**-40,
                               1 - 2**-52, 1.0])  # fmt: skip
def test_geometric_sum_equals_series(x):
    terms = 101
    with mp.workdps(50):
        exact = float(sum(mpf(x) ** k for k in range(terms)))
    got = float(krules.geometric_sum(torch.tensor([x], dtype=F64), terms))
    assert got == pytest.approx(exact, rel=1e-14)


def test_pade_coefficients_reproduce_official_recipe():
    old = mp.dps
    try:
        mp.dps = 20  # exactly as the official SVD_Pade.py: global mp.dps = 20
        one = mpf(1)
        a = mp.taylor(lambda x: one / (one - x), 0, 100)
        p, q = mp.pade(a, 50, 50)
        pf = [float(c) for c in p]
        qf = [float(c) for c in q]
    finally:
        mp.dps = old
    p64, q64 = krules.pade_coefficients(50, 50)
    assert p64.tolist() == pf and q64.tolist() == qf
    # the degenerate table: Q(1) = sum(q) is zero up to the solve's noise
    assert abs(math.fsum(qf)) < 1e-15


@pytest.mark.parametrize("d", [5, 8])
def test_pade_k_matches_horner_formula(d, pack_path):
    lam = _lams(d, seed=3, ties=False)
    p, q, _ = krules._pade_mp(50, 50)
    ref = _k_reference(lam, lambda x: _horner(p, x) / _horner(q, x))
    torch.testing.assert_close(krules.pade_k(lam, 100), ref, rtol=1e-12, atol=0.0)


def test_pade_k_equals_exact_k_away_from_ties():
    # the degenerate [50/50] Padé of 1/(1-x) is 1/(1-x) to round-off: SVD-Padé = exact gradient
    lam = torch.tensor([[0.1, 0.2, 0.5, 0.9, 1.7, 3.0]], dtype=F64)
    torch.testing.assert_close(krules.pade_k(lam), krules.exact_k(lam), rtol=1e-12, atol=0.0)


def test_pade_k_at_ties_uses_mpmath_value():
    lam = torch.tensor([[2.0, 2.0, 5.0]], dtype=F64)
    k = krules.pade_k(lam)
    at_one = krules.pade_value_at_one(50, 50)
    assert at_one == pytest.approx(-1.3328e21, rel=1e-3)
    assert float(k[0, 0, 1]) == float(k[0, 1, 0]) == pytest.approx(at_one / 2.0, rel=1e-15)
    assert torch.isfinite(k).all()


def test_polyval_pair_chunking(monkeypatch):
    x = torch.rand(3, 10, 10, dtype=F64, generator=torch.Generator().manual_seed(0))
    whole = krules.polyval_pair(x, 50, 50)
    monkeypatch.setattr(krules, "_CHUNK", 7)
    torch.testing.assert_close(krules.polyval_pair(x, 50, 50), whole, rtol=0, atol=0)


@pytest.mark.parametrize("method", ["svd", "svd-trunc", "svd-taylor", "svd-pade"])
def test_registered_rules_call_their_k_builder(method):
    lam = _lams(6, seed=1)
    rule = spectral.RULES[method]
    direct = {
        "svd": krules.exact_k,
        "svd-trunc": krules.truncated_k,
        "svd-taylor": krules.taylor_k,
        "svd-pade": krules.pade_k,
    }[method](lam)
    torch.testing.assert_close(rule.k_matrix(lam), direct, rtol=0, atol=0)


def test_k_backward_equals_loewner_for_antisymmetric_k():
    # with the exact K the combination is the Daleckii-Krein form Ĝ_ij (f_i - f_j)/(λ_i - λ_j)
    lam = torch.tensor([[0.3, 1.0, 2.5, 4.0]], dtype=F64)
    u, _ = torch.linalg.qr(
        torch.randn(1, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    )
    g = torch.randn(1, 4, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    f = lam.sqrt()
    s = spectral.loewner_from_k(krules.exact_k(lam), lam, f, 0.5)
    got = spectral.spectral_backward(u, s, g)
    gh = u.mT @ (0.5 * (g + g.mT)) @ u
    loew = (f.unsqueeze(-1) - f.unsqueeze(-2)) / (lam.unsqueeze(-1) - lam.unsqueeze(-2))
    loew.diagonal(dim1=-2, dim2=-1).copy_(0.5 / f)
    torch.testing.assert_close(got, u @ (loew * gh) @ u.mT, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("power", [0.5, -0.5])
def test_power_loewner_is_the_exact_k_combination(power):
    # closed form (f_i − f_j)/(λ_i − λ_j) = the generic K f_i + Kᵀ f_j with the exact K
    lam = _lams(7, seed=2, ties=False)
    f = lam**power
    closed = spectral.power_loewner(lam, f, power)
    generic = spectral.loewner_from_k(krules.exact_k(lam), lam, f, power)
    torch.testing.assert_close(closed, generic, rtol=1e-9, atol=0.0)
    torch.testing.assert_close(closed, closed.mT, rtol=0, atol=0)


@pytest.mark.parametrize("power", [0.5, -0.5])
def test_power_loewner_at_ties_is_the_derivative(power):
    lam = torch.tensor([[0.25, 0.25, 4.0]], dtype=F64)
    s = spectral.power_loewner(lam, lam**power, power)
    fprime = power * 0.25 ** (power - 1)
    for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):
        assert float(s[0, i, j]) == pytest.approx(fprime, rel=1e-14)
    assert float(s[0, 2, 2]) == pytest.approx(power * 4.0 ** (power - 1), rel=1e-14)


@pytest.mark.parametrize("power", [0.5, -0.5])
@pytest.mark.parametrize("method", ["svd-taylor", "svd-pade"])
def test_series_loewner_is_the_k_combination(method, power, pack_path):
    # the series rules skip K: g(x)(1−x)·Loewner off ties, f' on the diagonal, and at ties
    # SVD-Taylor's own 2g(1) f/λ (the official K_ij = K_ji = g(1)/λ) but SVD-Padé's Loewner limit
    # f'(λ); off ties both must equal K f_i + Kᵀ f_j with K = ±g(x)/λ_large, the official K
    lam = _lams(8, seed=4, ties=True)
    f = lam**power
    rule = spectral.RULES[method]
    fast = rule.loewner(lam, f, power, dict(METHODS[method].defaults))
    generic = spectral.loewner_from_k(rule.k_matrix(lam), lam, f, power)
    ties = (lam.unsqueeze(-1) == lam.unsqueeze(-2)) & ~torch.eye(8, dtype=torch.bool)
    assert ties.any()
    torch.testing.assert_close(fast[~ties], generic[~ties], rtol=1e-9, atol=0.0)
    fprime = power * float(f[0, 0] / lam[0, 0])  # lam[:, 1] == lam[:, 0]
    g1 = float(rule.fn(torch.ones((), dtype=F64)))
    tie = {"svd-taylor": 2.0 * g1 * float(f[0, 0] / lam[0, 0]), "svd-pade": fprime}[method]
    assert float(fast[0, 0, 1]) == float(fast[0, 1, 0]) == pytest.approx(tie, rel=1e-14)
    if method == "svd-taylor":
        torch.testing.assert_close(fast[ties], generic[ties], rtol=1e-9, atol=0.0)


@pytest.mark.parametrize("power", [0.5, -0.5])
def test_pade_backward_is_the_exact_backward_on_a_rank_deficient_covariance(power):
    # GCP at full scale: d = 64 channels over N = 20 positions, so 44 eigenvalues tie at the floor;
    # with P(1)/Q(1) = -1.33e21 at the ties the gradient was ~1e14x the exact one (issue 23)
    x = torch.randn(2, 64, 20, dtype=F64, generator=torch.Generator().manual_seed(0)).relu()
    xc = x - x.mean(-1, keepdim=True)
    p = xc @ xc.mT / 20
    w = torch.randn(2, 64, 64, dtype=F64, generator=torch.Generator().manual_seed(1))
    fn = sqrtm if power > 0 else inv_sqrtm
    grads = {}
    for method in ("svd", "svd-pade"):
        q = p.clone().requires_grad_(True)
        (fn(q, method) * w).sum().backward()
        grads[method] = q.grad
    torch.testing.assert_close(grads["svd-pade"], grads["svd"], rtol=1e-8, atol=0.0)


def test_topn_ties_take_the_batch_largest_finite_k():
    # official SVD_TopN: K = 1/(λ_i − λ_j) is +inf at the ties of the dropped eigenvalues (all set
    # to eps) and its overflow check puts there the largest finite K of the whole batch
    lam = torch.tensor([[1e-3, 1e-3, 0.5, 2.0], [1e-3, 1e-3, 1.0, 1.1]], dtype=F64)
    f = lam.sqrt()
    rule = spectral.RULES["svd-topn"]
    assert rule.ties == "largest-k"
    loewner = rule.loewner(lam, f, 0.5, {})
    k = krules.exact_k(lam)
    k_max = float(k[torch.isfinite(k) & (k != 0)].max())  # 1/(1.1 - 1.0), from the second matrix
    assert k_max == pytest.approx(10.0)
    for b in range(2):
        assert float(loewner[b, 0, 1]) == pytest.approx(k_max * 2 * 1e-3**0.5, rel=1e-14)
    off_ties = spectral.power_loewner(lam, f, 0.5)
    torch.testing.assert_close(loewner[:, 2:, :], off_ties[:, 2:, :], rtol=0, atol=0)
    assert float(spectral.largest_finite_k(torch.ones(1, 3, dtype=F64))) == 0.0


def test_rules_say_what_they_do_at_ties():
    ties = {name: rule.ties for name, rule in spectral.RULES.items() if rule.kind != "iteration"}
    assert ties == {
        "svd": "limit",
        "svd-pade": "limit",
        "svd-taylor": "own",
        "svd-trunc": "own",
        "svd-topn": "largest-k",
    }
    with pytest.raises(ValueError, match="ties must be one of"):
        spectral.k_rule("svd-bad-ties-test", ties="nearest")(krules.exact_k)


def test_symmetric_map_evaluates_each_pair_once(monkeypatch):
    monkeypatch.setattr(krules, "_PACK_MIN_DIM", 4)
    x = torch.rand(2, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(0))
    x = x + x.mT
    seen = []

    def g(t):
        seen.append(t.numel())
        return t.exp()

    out = krules.symmetric_map(g, x)
    assert seen == [2 * 8 * 4]  # d·d/2 entries: the unordered pairs (with one copy of the diagonal)
    off = ~torch.eye(8, dtype=torch.bool)
    torch.testing.assert_close(out[:, off], x.exp()[:, off], rtol=0, atol=0)


# --------------------------------------------------------------------------- registry


@pytest.fixture
def scratch_rule():
    names = ("svd-zero-test",)
    yield names[0]
    for name in names:
        spec = registry.METHODS.pop(name, None)
        spectral.RULES.pop(name, None)
        if spec is not None:
            for alias in (name, *spec.aliases):
                registry._ALIASES.pop(registry._norm(alias), None)


def test_new_rule_is_one_function_and_one_line(scratch_rule):
    @k_rule(scratch_rule, aliases=("SVD-Zero-Test",))
    def _zero(lam, *, scale: float = 0.0):
        """K = scale · exact K (test rule)."""
        return scale * krules.exact_k(lam)

    assert resolve_method("svd-zero-TEST") == scratch_rule
    assert set(METHODS[scratch_rule].options) == {"precision", "eps", "eigh_device", "scale"}
    p = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=F64)).requires_grad_(True)
    w = torch.ones(3, 3, dtype=F64)
    (g0,) = torch.autograd.grad((sqrtm(p, scratch_rule) * w).sum(), p)
    (g1,) = torch.autograd.grad((sqrtm(p, scratch_rule, scale=1.0) * w).sum(), p)
    (ge,) = torch.autograd.grad((sqrtm(p, "svd") * w).sum(), p)
    torch.testing.assert_close(g1, ge)
    assert float((g0 - ge).abs().max()) > 1e-3  # off-diagonal coupling removed
    with pytest.raises(ValueError, match="already registered"):
        k_rule(scratch_rule)(_zero)


def test_alias_conflict_is_rejected(scratch_rule):
    with pytest.raises(ValueError, match="already names"):
        k_rule(scratch_rule, aliases=("MPN-COV",))(lambda lam: krules.exact_k(lam))
    assert scratch_rule not in METHODS, "a rejected registration leaves nothing behind"
    assert resolve_method("MPN-COV") == "svd"


# --------------------------------------------------------------------------- analyses


def test_approximation_errors_table6():
    rows = approximation_errors()
    assert len(rows) == 14
    by = {(r["method"], r["x"]): r for r in rows}
    for x in (0.9, 0.99, 0.999):  # truncation error x^(K+1)/(1-x) dominates near 1
        expected = x**101 / (1 - x)
        assert by[("Taylor-100", x)]["float64"] == pytest.approx(expected, rel=1e-6)
        assert by[("Taylor-100", x)]["mpmath"] == pytest.approx(expected, rel=1e-6)
    for x in (0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999):
        r = by[("Pade-50/50", x)]
        assert r["metric"] == f"abs_err_x{x:g}"
        assert r["float64"] < 1e-8 and r["mpmath"] < 1e-14  # round-off only
    small = approximation_errors(xs=(0.5,), degree=10)
    assert [r["method"] for r in small] == ["Taylor-10", "Pade-5/5"]
    assert small[0]["float64"] == pytest.approx(0.5**11 / 0.5, rel=1e-9)
    assert small[1]["float64"] is None  # degenerate [5/5] table: mpmath reports it singular


def test_small_pade_degree_is_a_clear_error():
    with pytest.raises(ValueError, match="degenerate"):
        sqrtm(torch.eye(3, dtype=F64), "svd-pade", degree=10)


def test_gradient_bounds_table7():
    rows = {r["method"]: r for r in gradient_bounds()}
    assert rows["SVD-Taylor"]["measured"] == pytest.approx(101 / EPS, rel=1e-12)
    assert rows["SVD-Taylor"]["measured"] == pytest.approx(4.55e17, rel=1e-2)  # paper
    assert rows["SVD-Trunc"]["measured"] == 1e10
    assert rows["SVD-TopN"]["measured"] == pytest.approx(4.50e15, rel=1e-2)  # paper
    assert rows["SVD-Pade"]["measured"] == pytest.approx(6.00e36, rel=1e-2)  # paper
    assert rows["SVD-Pade"]["measured"] == pytest.approx(rows["SVD-Pade"]["analytic"], rel=1e-12)
    assert rows["SVD-Newton"]["measured"] is None
    assert math.isinf(rows["SVD"]["analytic"]) and rows["SVD"]["measured"] > 1e30
    # the bounds follow the floor
    small = {r["method"]: r for r in gradient_bounds(eps=1e-6, degree=10, threshold=5.0)}
    assert small["SVD-Taylor"]["measured"] == pytest.approx(11e6, rel=1e-12)
    assert small["SVD-Trunc"]["measured"] == 5.0
    assert small["SVD-TopN"]["measured"] == pytest.approx(1e6, rel=1e-9)
    assert small["SVD-Pade"]["measured"] is None  # [5/5]: singular in mpmath


def test_pade_degeneracy_is_visible():
    rows = {r["quantity"]: r for r in pade_degeneracy()}
    assert rows["Q(1)"]["float64"] == 0.0
    assert 0 < abs(rows["Q(1)"]["mpmath"]) < 1e-18
    assert math.isinf(rows["P(1)/Q(1)"]["float64"])
    assert rows["P(1)/Q(1)"]["mpmath"] == pytest.approx(-1.3328e21, rel=1e-3)
    assert rows["max_x<=0.999 |P/Q·(1−x) − 1|"]["float64"] < 1e-10


@pytest.mark.parametrize("power", [0.5, -0.5])
def test_svd_taylor_gradient_is_the_truncated_series_formula(power):
    # eq. 5 with K from the degree-K series, assembled independently of k_backward
    from svdablate.metalayers import inv_sqrtm

    fn = sqrtm if power > 0 else inv_sqrtm
    lam0 = torch.tensor([0.2, 0.25, 0.3, 1.0, 1.1], dtype=F64)
    q, _ = torch.linalg.qr(torch.randn(5, 5, dtype=F64, generator=torch.Generator().manual_seed(4)))
    p = ((q * lam0) @ q.mT).requires_grad_(True)
    g = torch.randn(5, 5, dtype=F64, generator=torch.Generator().manual_seed(5))
    (got,) = torch.autograd.grad(fn(p, "svd-taylor", degree=7), p, g)
    lam, u = torch.linalg.eigh(p.detach())
    k = _k_reference(lam.unsqueeze(0), lambda x: _series(x, 7))[0]
    f = lam**power
    dldu = (g + g.mT) @ u @ torch.diag(f)  # ∂l/∂U
    dldl = torch.diag(power * lam ** (power - 1) * torch.diagonal(u.mT @ g @ u))  # ∂l/∂Λ
    ref = u @ (k.mT * (u.mT @ dldu) + dldl) @ u.mT  # ICCV'21 eq. 5
    torch.testing.assert_close(got, 0.5 * (ref + ref.mT), rtol=1e-10, atol=1e-12)
