"""A GPU's verdict on the trial step (issue 26, item 5): one command, nothing but torch needed.

For `eccv22-dbn-cifar100` (row SVD), `eccv22-gcp-imagenet` (SVD) and `iccv21-gcp-resnet50`
(SVD-Pade), each at its preset's precision and batch, in one run on one device:

* the trial step as `train_trial` runs it (`training.rehearse.rehearse_shape`: the real network,
  meta-layer, treatments, optimizer and feed; no synchronisation but at the end), its phases, its
  peak memory and, on a GPU, the share of the steps' wall time the GPU spent in kernels
  (torch.profiler): the "utilisation" of the issue, target ≥ 90 %;
* the floor: the same backbone with the meta-layer replaced by its plain counterpart (BatchNorm
  for ZCA whitening; for covariance pooling its 1×1 conv + BN + ReLU and an average pool, the
  classifier resized), forward + backward + SGD step on a batch already on the device.
  Target: step / floor ≤ 1.15;
* eigh of the GCP size (batch × 256 × 256, float64) on the device and on the CPU (copies
  included), and the largest difference between the two square roots.

    python benchmarks/gpu_step.py                 # on a GPU machine: the real numbers
    python benchmarks/gpu_step.py --batch 4 --steps 1 --trials eccv22-dbn-cifar100:NS   # a CPU

It imports svdablate's spec (the presets are typed `TrialConfig` templates: pydantic), models,
meta-layers, treatments, data and training step, not Ray or MLflow: `PYTHONPATH=. python
benchmarks/gpu_step.py` from a checkout runs it where torch, numpy, rich and pydantic are
installed (a machine without pydantic: carry its two wheels, `pip download pydantic`). `--batch`
shrinks every preset's batch (for a CPU; the table says so).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from svdablate.errors import UserError
from svdablate.metalayers import CovariancePooling, sqrtm
from svdablate.metalayers.eigh_placement import measure_eigh, spd_batch
from svdablate.spec.config import StudySpec, TrialConfig
from svdablate.spec.grid import expand, resolve_preset
from svdablate.spec.presets import PRESETS, get_preset
from svdablate.training.rehearse import PHASES, rehearse_shape, synthetic_batches
from svdablate.training.step import build_network, to_device

#: preset:row timed (the SVD rows: the eigendecomposition is what may stall a GPU)
TRIALS = ("eccv22-dbn-cifar100:SVD", "eccv22-gcp-imagenet:SVD", "iccv21-gcp-resnet50:SVD-Pade")
FLOOR_TARGET = 1.15
BUSY_TARGET = 0.90
GCP_D = 256


def preset_config(name: str, row_name: str, batch: int | None = None) -> TrialConfig:
    """The standalone trial of `row_name` in preset `name` (seed 0), its batch replaced by
    `batch` when given: the preset's template and the grid's own expansion."""
    spec = StudySpec(preset=name, seeds=1, rows=(row_name,))
    config = next(c for c in expand(resolve_preset(spec), spec) if c.protocol == "standalone")
    return config.model_copy(update={"batch_size": batch}) if batch else config


def _trial_config(trial_name: str, batch: int | None) -> TrialConfig:
    """`preset:row` (the preset's first row when no row is named) as `preset_config` makes it."""
    preset, _, row = trial_name.partition(":")
    return preset_config(preset, row or get_preset(preset).rows[0], batch)


class _PlainPooling(nn.Module):
    """Covariance pooling's 1×1 conv + BN + ReLU, then an average pool: its plain counterpart."""

    def __init__(self, gcp: CovariancePooling) -> None:
        super().__init__()
        self.conv, self.bn, self.relu = gcp.conv, gcp.bn, gcp.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x))).mean(dim=(2, 3))


def floor_network(config: Any, info: Any) -> nn.Module:
    """The trial's backbone with its meta-layer replaced by the plain layer it stands for."""
    model = build_network(config, info, config.method)
    layer = model.metalayer
    if isinstance(layer, CovariancePooling):
        model.body.set_submodule(model.metalayer_path, _PlainPooling(layer))
        model.body.set_submodule(
            model.classifier_path, nn.Linear(layer.reduction_dim, info.num_classes)
        )
    else:
        model.body.set_submodule(model.metalayer_path, nn.BatchNorm2d(layer.num_features))
    return model.body


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def floor_step_seconds(config: Any, device: torch.device, steps: int) -> float:
    """Seconds per forward + backward + SGD step of the floor network on a device batch."""
    batches, info, _ = synthetic_batches(config, device, torch.Generator().manual_seed(0))
    images, labels = next(iter(batches))
    images, labels = to_device(images, device), to_device(labels, device)
    net = floor_network(config, info).to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(images), labels).backward()
        optimizer.step()

    step()
    _sync(device)
    began = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - began) / steps


def eigh_row(batch: int, device: torch.device) -> dict[str, Any]:
    """eigh at the GCP size on the device and on the CPU, and how far apart the two roots are."""
    placement = measure_eigh((batch, GCP_D, GCP_D), torch.float64, device)
    p = spd_batch((batch, GCP_D, GCP_D), torch.float64, device)
    same = sqrtm(p, "svd", eigh_device="same")
    cpu = sqrtm(p, "svd", eigh_device="cpu")
    return {"placement": placement, "max_diff": float((same - cpu).abs().max())}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default=",".join(TRIALS), help="preset:row, comma-separated")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (each measurement)")
    parser.add_argument("--batch", type=int, default=None, help="every preset's batch (a CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.steps < 1 or (args.batch is not None and args.batch < 1):
        parser.error("--steps and --batch must be 1 or more")
    try:  # every trial resolved before any is timed: a typo stops the run in one line
        configs = [_trial_config(name, args.batch) for name in args.trials.split(",")]
    except (UserError, ValueError) as exc:
        parser.error(str(exc))
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = []
    for config in configs:
        preset = config.study
        trial = rehearse_shape(config, device, steps=args.steps, warmup=2)
        floor = floor_step_seconds(config, device, args.steps)
        rows.append({"preset": preset, "config": config, "trial": trial, "floor_s": floor})
    eigh = eigh_row(args.batch or PRESETS["iccv21-gcp-resnet50"].recipe.batch_size, device)
    Console(width=200).print(_table(rows, name, args), _eigh_line(eigh))
    return rows


def _table(rows: list[dict[str, Any]], device: str, args: argparse.Namespace) -> Table:
    batch = f", every batch set to {args.batch}" if args.batch else ""
    table = Table(
        title=f"trial step vs its network's floor on {device} ({args.steps} steps{batch})",
        caption=f"targets: step/floor ≤ {FLOOR_TARGET}, GPU busy ≥ {BUSY_TARGET:.0%} "
        "(torch.profiler kernel time / wall; a CPU has none)",
    )
    for column in ("preset", "shape", "step s", "floor s", "step/floor", *PHASES, "GPU busy",
                   "peak MB", "feed img/s", "need img/s", "eigh"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("preset", "shape") else "right")
    for r in rows:
        t = r["trial"]
        busy = "-" if t.busy_fraction is None else f"{t.busy_fraction:.0%}"
        table.add_row(
            r["preset"], f"{t.shape} {t.row}", f"{t.step_s:.4f}", f"{r['floor_s']:.4f}",
            f"{t.step_s / r['floor_s']:.2f}", *(f"{t.phases[p]:.4f}" for p in PHASES), busy,
            f"{t.peak_memory_mb:,.0f}", f"{t.loader_images_per_s:,.0f}",
            f"{t.demand_images_per_s:,.0f}", t.eigh_device or "-",
        )  # fmt: skip
    return table


def _eigh_line(eigh: dict[str, Any]) -> str:
    p = eigh["placement"]
    return (
        f"eigh {'×'.join(map(str, p.shape))} float64 on {p.device}: {p.same_ms:.1f} ms there, "
        f"{p.cpu_ms:.1f} ms on the CPU (copies included): auto picks {p.where}; the square roots "
        f"of the two differ by at most {eigh['max_diff']:.1e}"
    )


if __name__ == "__main__":
    main()
