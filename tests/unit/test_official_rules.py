"""Every backward rule of the svd family against the official ICCV'21 code, on full-scale GCP
covariances: d = 256 channels over N = 196, 169, 49 positions (rank-deficient: many eigenvalues
tie at the eps floor) and 784 (448-pixel inputs: full rank, SVD-TopN's 50 dropped eigenvalues
tie at eps), float64 and float32.

How it was recorded: `scripts/record_official_rules.py` ran KingJamesSong/DifferentiableSVD
(commit in the file's meta) on a CPU. The only lines patched were its `.cuda()` calls (removed, so
`Eigen_decomposition.forward` keeps the eigenvalues and vectors on the CPU); its meta-layers
(`Eigen_decomposition` + `Power`, `Sqrtm` for SVD-Newton with main.py's 10 iterations) were fed
the same P as ours (eq. 2, mean subtracted in float64: the official `Covpool` builds its centring
matrix in float32, a departure of its own that DESIGN §3 documents). `tests/data/official_rules.pt`
keeps, per case and rule, a Gaussian sketch of ∂l/∂X (the gradient that reaches the network, through
the same covariance backward for both), its norm, and the official output's own round-off
sensitivity (its relative change when P is recomputed from the positions in another order).

Tolerance: 1e-6 relative in float64 and 1e-5 in float32, or three times the larger round-off
sensitivity of the two codes (measured here for ours the same way) where that is larger: on a
rank-deficient P, ∂l/∂X depends on which null-space basis and which round-off eigenvalues a solver
returns (1e-5 to 1e-3 in float64), and in float32 on float32's round-off (1e-4 at 448 px), and no
code agrees with another better than with itself. Full-rank float64 cases meet 1e-6 outright
(1e-13 measured; SVD-TopN's ties included). The deliberate differences are the named exceptions
of `EXCEPTIONS`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import official_cases as oc
import pytest
import torch

from svdablate.metalayers import sqrtm

RECORDED = torch.load(Path(__file__).parents[1] / "data" / "official_rules.pt", weights_only=True)
BASE_TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-5}
SAFETY = 3.0

#: Where ours departs from the official code on purpose, and why (docs/methods.md, "Ties").
EXCEPTIONS = {
    "svd-pi": "the official SVD-PI multiplies by I − VVᵀ with the full V, ≈ 0: it passes no "
    "gradient (recorded norm ~1e-15); ours runs the paper's power iteration with deflation",
    "float32-rank-deficient": "in float32 the official output on a rank-deficient P changes by "
    "14-140 % when P changes at round-off (recorded self-noise): there is nothing to agree with; "
    "ours is only required to be finite and of the exact rule's size",
}


def ours_grad_x(case: oc.Case, rule: str, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """∂l/∂X through our `sqrtm(P, rule)` in the case's precision."""
    p = p.clone().requires_grad_(True)
    precision = "float64" if case.dtype == torch.float64 else "float32"
    q = sqrtm(p, rule, precision=precision)
    vec = q.reshape(q.shape[0], -1)[:, oc.triu_index()]
    (vec.double() * oc.upstream(case)).sum().backward()
    return oc.gradient_of_features(x, p.grad)


def other_order(case: oc.Case, x: torch.Tensor) -> torch.Tensor:
    order = torch.randperm(x.shape[-1], generator=torch.Generator().manual_seed(99))
    xs = x[..., order] if case.dtype == torch.float64 else x[..., order].float()
    xc = xs - xs.mean(-1, keepdim=True)
    return (xc @ xc.mT / x.shape[-1]).to(case.dtype)


def _compare(case: oc.Case, rule: str) -> tuple[float, float, torch.Tensor]:
    x = oc.features(case)
    p = oc.covariance_in(case, x)
    ours = ours_grad_x(case, rule, x, p)
    rec = RECORDED["cases"][case.name][rule]
    diff = oc.relative(oc.sketch(ours), rec["sketch"])
    ours_noise = oc.relative(ours_grad_x(case, rule, x, other_order(case, x)), ours)
    tolerance = max(BASE_TOLERANCE[case.dtype], SAFETY * max(ours_noise, rec["self_noise"]))
    return diff, tolerance, ours


EQUIVALENT = [
    (case, rule)
    for case in oc.CASES
    for rule in oc.RULES
    if rule != "svd-pi" and not (case.dtype == torch.float32 and case.rank_deficient)
]


@pytest.mark.parametrize(("case", "rule"), EQUIVALENT, ids=[f"{c.name}-{r}" for c, r in EQUIVALENT])
def test_backward_rule_agrees_with_the_official_code(case: oc.Case, rule: str) -> None:
    diff, tolerance, ours = _compare(case, rule)
    assert torch.isfinite(ours).all()
    assert diff <= tolerance, f"{rule} on {case.name}: {diff:.2e} (tolerance {tolerance:.1e})"


@pytest.mark.parametrize("case", oc.CASES, ids=[c.name for c in oc.CASES])
def test_svd_pi_official_passes_no_gradient(case: oc.Case) -> None:
    """Exception `svd-pi`: the official gradient is ≈ 0; ours is the exact rule's size."""
    assert RECORDED["cases"][case.name]["svd-pi"]["norm"] < 1e-5
    x = oc.features(case)
    p = oc.covariance_in(case, x)
    ours = ours_grad_x(case, "svd-pi", x, p).norm()
    exact = ours_grad_x(case, "svd", x, p).norm()
    assert torch.isfinite(ours) and 0.1 < float(ours / exact) < 10.0


RANK_DEFICIENT_32 = [c for c in oc.CASES if c.dtype == torch.float32 and c.rank_deficient]


@pytest.mark.parametrize("rule", oc.RULES)
@pytest.mark.parametrize("case", RANK_DEFICIENT_32, ids=[c.name for c in RANK_DEFICIENT_32])
def test_float32_rank_deficient_is_finite_and_sane(case: oc.Case, rule: str) -> None:
    """Exception `float32-rank-deficient`: finite, within 10× of our exact float64 rule."""
    assert RECORDED["cases"][case.name]["svd"]["self_noise"] > 0.1  # the recorded noise itself
    x = oc.features(case)
    p = oc.covariance_in(case, x)
    ours = ours_grad_x(case, rule, x, p).norm()
    in_float64 = dataclasses.replace(case, dtype=torch.float64)
    exact = ours_grad_x(in_float64, "svd", x, oc.covariance_in(in_float64, x)).norm()
    assert torch.isfinite(ours) and float(ours / exact) < 10.0
