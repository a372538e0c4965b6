"""Record the official ICCV'21 backward rules on full-scale GCP covariances (a CPU, no GPU).

    python scripts/record_official_rules.py PATH_TO_DIFFERENTIABLESVD [--out FILE]

The path is a checkout of KingJamesSong/DifferentiableSVD (commit 1676a64 was recorded); none of
its code is copied here. Each `src/representation/SVD_*.py` is executed with its `.cuda()` calls
removed (its only change: `Eigen_decomposition.forward` moves the eigenvalues and vectors back
with `.cuda()`), and its meta-layer is fed our covariance P (eq. 2, mean subtracted in float64):
the official `Covpool` builds its N×N centring matrix in float32, a documented departure of its
own (DESIGN §3), which is not what these recordings test. For every case of
`tests/unit/official_cases.py` and every rule, the file keeps a Gaussian sketch of ∂l/∂X, its norm,
and the official output's own round-off sensitivity: the relative change of ∂l/∂X when P is
recomputed from the positions in another order (a change of P at round-off, 1e-16 relative in
float64, 1e-7 in float32).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
import official_cases as oc

MODULES = {
    "svd": "SVD_Original",
    "svd-topn": "SVD_TopN",
    "svd-trunc": "SVD_Trunc",
    "svd-taylor": "SVD_Taylor",
    "svd-pade": "SVD_Pade",
    "svd-newton": "SVD_Newton",
    "svd-pi": "SVD_PI",
}


def load_official(root: Path, name: str) -> types.ModuleType:
    """The official module `name`, executed with `.cuda()` removed (CPU)."""
    path = root / "src" / "representation" / f"{name}.py"
    module = types.ModuleType(f"official_{name}")
    source = path.read_text().replace(".cuda()", "")
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def official_grad_p(module: types.ModuleType, rule: str, p: torch.Tensor, g: torch.Tensor):
    """∂l/∂P of l = Σ G ∘ triu(Q) through the official meta-layer of `rule`."""
    p = p.clone().requires_grad_(True)
    if rule == "svd-newton":
        q = module.Sqrtm.apply(p, 10)  # main.py: iterNum 10
        vec = q.reshape(q.shape[0], -1)[:, oc.triu_index()]
    else:
        u, lam = module.Eigen_decomposition.apply(p)
        vec = module.Power.apply(u, lam).squeeze(-1)
    (vec.double() * g).sum().backward()
    return p.grad


def perturbed_covariance(case: oc.Case, x: torch.Tensor) -> torch.Tensor:
    """P from the positions in another order: the same matrix up to the dtype's round-off."""
    order = torch.randperm(x.shape[-1], generator=torch.Generator().manual_seed(99))
    xs = x[..., order] if case.dtype == torch.float64 else x[..., order].float()
    xc = xs - xs.mean(-1, keepdim=True)
    return (xc @ xc.mT / x.shape[-1]).to(case.dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("official", type=Path, help="checkout of KingJamesSong/DifferentiableSVD")
    parser.add_argument("--out", type=Path, default=Path("tests/data/official_rules.pt"))
    args = parser.parse_args()
    torch.set_default_dtype(torch.float32)
    commit = subprocess.run(
        ["git", "-C", str(args.official), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    modules = {rule: load_official(args.official, name) for rule, name in MODULES.items()}
    recorded: dict[str, dict] = {}
    for case in oc.CASES:
        x, g = oc.features(case), oc.upstream(case)
        p, p_other = oc.covariance_in(case, x), perturbed_covariance(case, x)
        for rule in oc.RULES:
            gx = oc.gradient_of_features(x, official_grad_p(modules[rule], rule, p, g))
            gx_other = oc.gradient_of_features(x, official_grad_p(modules[rule], rule, p_other, g))
            recorded.setdefault(case.name, {})[rule] = {
                "sketch": oc.sketch(gx),
                "norm": float(gx.norm()),
                "self_noise": oc.relative(gx_other, gx) if gx.norm() > 0 else 0.0,
            }
            print(
                f"{case.name:24s} {rule:11s} |dX| {gx.norm():.4e} "
                f"self-noise {recorded[case.name][rule]['self_noise']:.1e}"
            )
    meta = {"official_commit": commit or "unknown", "torch": str(torch.__version__)}
    torch.save({"meta": meta, "cases": recorded}, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
