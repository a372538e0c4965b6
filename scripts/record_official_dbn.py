"""Record the official ECCV'22 decorrelated-BN outputs for tests/unit/test_dbn_equivalence.py.

    python scripts/record_official_dbn.py "OFFICIAL/Decorrelated BN" [--out FILE.json]

OFFICIAL is a checkout of KingJamesSong/OrthoImproveCond. The script imports its
``torch_utils.py``, ``ZCANorm.py`` and ``models/resnet.py`` from that folder (it contains none of
their code) after three textual patches, each asserted to apply exactly once:

1. ``ZCANorm.py``: ``torch.inverse(self.svdlayer(xxt))`` →
   ``torch.inverse(self.svdlayer(xxt[0]))[None]``. The released ``MPA_Lya`` is 2-D (``.mm``,
   ``torch.eye(M.size(0))``) while ``ZCANormBatch`` passes the (groups, d, d) batch, so the
   released code raises a shape error on any device; with groups=1 (both official scripts)
   the batch is its one matrix.
2. ``torch_utils.py``: ``torch.eye(M.size(0), requires_grad=False, device=M.device)`` gets
   ``dtype=M.dtype``: without it a float64 run sums the Padé polynomials into a float32
   identity (a no-op in float32, whose identity is float32 already).
3. ``models/resnet.py`` imports ``skew_conv`` from ``skew_symmetric_conv`` (which needs einops);
   a stub module stands in: the DBN networks without ``--ow`` never build it.

No ``.cuda()`` call sits on these paths. Everything runs on the CPU with torch's defaults; the
weights and the batch come from ``tests/unit/dbn_reference.py`` (generated, copied in by name).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "unit")]

import dbn_reference as ref  # noqa: E402

SOURCES = {"torch_utils": "torch_utils.py", "ZCANorm": "ZCANorm.py", "resnet": "models/resnet.py"}
PATCHES = {
    "torch_utils": [
        (
            "torch.eye(M.size(0), requires_grad=False, device=M.device)",
            "torch.eye(M.size(0), requires_grad=False, device=M.device, dtype=M.dtype)",
        )
    ],
    "ZCANorm": [
        ("torch.inverse(self.svdlayer(xxt))", "torch.inverse(self.svdlayer(xxt[0]))[None]")
    ],
    "resnet": [],
}


def load_official(folder: Path) -> tuple[dict[str, types.ModuleType], dict[str, str]]:
    """The three official modules, patched as the docstring lists; and their sources' sha256."""
    sys.modules["skew_symmetric_conv"] = types.SimpleNamespace(skew_conv=None)  # type: ignore[assignment]
    modules, digests = {}, {}
    for name, rel in SOURCES.items():
        text = (folder / rel).read_text()
        digests[rel] = hashlib.sha256(text.encode()).hexdigest()
        for old, new in PATCHES[name]:
            if text.count(old) != 1:
                raise SystemExit(f"{rel}: expected one {old!r}; is this the released code?")
            text = text.replace(old, new)
        module = types.ModuleType(name)
        sys.modules[name] = module
        exec(compile(text, str(folder / rel), "exec"), module.__dict__)
        modules[name] = module
    return modules, digests


def exact_sqrt(m: torch.Tensor) -> torch.Tensor:
    """√M by coupled Newton-Schulz run to convergence (float64): an exact, tie-proof square
    root differentiable by autograd; stands in for MPA_Lya in the "exact-float64" case."""
    eye = torch.eye(m.shape[-1], dtype=m.dtype)
    tr = m.diagonal().sum()
    y, z = m / tr, eye
    for _ in range(ref.EXACT_NS_ITERS):
        t = 0.5 * (3.0 * eye - z @ y)
        y, z = y @ t, t @ z
    return y * tr.sqrt()


def official_network(mods: dict, arch: str, dtype: torch.dtype, weights: dict) -> torch.nn.Module:
    """The official ``resnet18/50(Norm=ZCANormBatch)`` with ``weights`` loaded (strictly, by
    name: buffers as built)."""
    net = getattr(mods["resnet"], arch)(
        Norm=mods["ZCANorm"].ZCANormBatch, num_classes=ref.NETWORKS[arch]
    )
    net = net.to(dtype)
    state = net.state_dict()
    state.update(ref.official_state(weights))
    net.load_state_dict(state)
    return net


def record(folder: Path) -> dict:
    mods, digests = load_official(folder)
    torch.manual_seed(0)
    zca = mods["ZCANorm"].ZCANormBatch(ref.ZCA_CHANNELS)
    out: dict = {
        "official_sources_sha256": digests,
        "torch": torch.__version__,
        "zca_init_seed0": {  # float32 values: 9 significant digits round-trip them
            "weight": [float(f"{v:.9g}") for v in zca.weight.flatten().tolist()],
            "bias_abs_max": float(zca.bias.detach().abs().max()),
        },
    }
    for arch in ref.NETWORKS:
        torch.manual_seed(0)
        built = getattr(mods["resnet"], arch)(
            Norm=mods["ZCANorm"].ZCANormBatch, num_classes=ref.NETWORKS[arch]
        )
        weights = ref.reference_weights(ref.our_network(arch, "svd", "float64", torch.float64))
        cases = {}
        for case, dtype in (
            ("official-float64", torch.float64),
            ("official-float32", torch.float32),
        ):
            net = official_network(mods, arch, dtype, weights)
            cases[case] = ref.step_signatures(net, net.conv1, dtype)
        net = official_network(mods, arch, torch.float64, weights)
        net.bn1.svdlayer = exact_sqrt
        cases["exact-float64"] = ref.step_signatures(net, net.conv1, torch.float64)
        init = {
            k: [n, float(f"{m:.4g}"), float(f"{sd:.4g}")]
            for k, (n, m, sd) in ref.init_signature(built).items()
        }
        out[arch] = {"init": init, "cases": cases}
    return out


def dumps(recorded: dict) -> str:
    """JSON with one line per list of numbers."""
    text = json.dumps(recorded, indent=1)
    return re.sub(
        r"\[\s+([^\[\]]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("official", type=Path, help='the "Decorrelated BN" folder of a checkout')
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "official_dbn.json")
    args = parser.parse_args()
    recorded = record(args.official)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(recorded) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
