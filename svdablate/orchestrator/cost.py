"""`svdablate plan`: the trial list, resources per trial and an estimate of GPU-hours.

The per-epoch cost model (GPU-seconds of one trial on one whole data-centre GPU):

    seconds/epoch = images × 3 × forward_GFLOPs / EFFECTIVE_TFLOPS / 1000 + steps × metalayer_s

- 3 × forward: forward plus backward of the network (the usual rule of thumb).
- forward_GFLOPs per image: torchvision's published figures at 224 px (AlexNet 0.71, ResNet-18
  1.82, ResNet-50 4.11, ResNet-101 7.83), scaled by (resolution/224)²; with the CIFAR stem a 32 px
  image keeps 32 px at layer1 where the ImageNet stem has 56, so it counts as (32/56)² of 224 px.
- EFFECTIVE_TFLOPS = 25: a sustained fp32/TF32 training rate of an A100/H100-class GPU.
- metalayer_s per step: the ICCV'21 Table 5 measurement for the 256×256 GCP layer (batch 128,
  float64 eigh forward + backward ≈ 1.2 s; Newton–Schulz 0.76 s), scaled linearly with the batch;
  the 64×64 decorrelated-BN layer is counted at 5 ms a step.
These are estimates, not measurements: no GPU run has calibrated them yet (README, "Cost model").
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.table import Table

from .presets import Preset

EFFECTIVE_TFLOPS = 25.0
FORWARD_GFLOPS_224 = {
    "alexnet": 0.71,
    "resnet18": 1.82,
    "resnet50": 4.11,
    "resnet101": 7.83,
    "convnet": 0.02,
}
DATASET_IMAGES = {
    "digits": (1437, 8),
    "cifar10": (50000, 32),
    "cifar100": (50000, 32),
    "imagenet": (1281167, 224),
    "cub200": (5994, 448),
    "dogs": (12000, 448),
    "cars": (8144, 448),
    "fake": (64, 32),
}
GCP_SECONDS_PER_128 = {"svd": 1.2, "ns": 0.76}
DBN_SECONDS_PER_STEP = 0.005


def epoch_seconds(
    model: str, dataset: str, application: str, method: str, batch_size: int
) -> float:
    """Estimated GPU-seconds of one epoch of one trial (the module's cost model)."""
    images, size = DATASET_IMAGES.get(dataset, (50000, 32))
    scale = (size / 56) ** 2 if size <= 64 and model != "convnet" else (size / 224) ** 2
    flops = images * 3 * FORWARD_GFLOPS_224.get(model, 4.11) * scale
    steps = images / batch_size
    if application == "gcp":
        per_step = GCP_SECONDS_PER_128["ns" if method == "ns" else "svd"] * batch_size / 128
    else:
        per_step = DBN_SECONDS_PER_STEP
    return flops / (EFFECTIVE_TFLOPS * 1000) + steps * per_step


def gpu_hours(configs: list[dict[str, Any]]) -> float:
    """Estimated GPU-hours of a list of trial configs."""
    total = 0.0
    for c in configs:
        dataset = c.get("fake_like") or c["dataset"]
        per_epoch = epoch_seconds(
            c["model"], dataset, c["application"], c["method"], c["batch_size"]
        )
        total += per_epoch * c["epochs"]
    return total / 3600


def plan_table(preset: Preset, configs: list[dict[str, Any]], gpus: float | None) -> Table:
    """The plan of a grid: one line per row, with trials, resources and GPU-hours."""
    gpus_per_trial = preset.gpus_per_trial if gpus is None else gpus
    table = Table(
        title=f"{preset.name}: {preset.reproduces}",
        caption=f"{len(configs)} trials · {gpu_hours(configs):,.1f} GPU-hours estimated "
        f"(cost model: svdablate.orchestrator.cost) · {gpus_per_trial:g} GPU and "
        f"{preset.cpus_per_trial:g} CPUs per trial",
    )
    for column in ("row", "protocol", "dataset", "precision", "seeds", "epochs", "GPU-hours"):
        table.add_column(column, justify="left" if column == "row" else "right")
    groups: Counter[tuple] = Counter()
    hours: dict[tuple, float] = {}
    for c in configs:
        key = (
            c["row"],
            c["protocol"],
            c.get("fake_like") or c["dataset"],
            c["precision"],
            c["epochs"],
        )
        groups[key] += 1
        hours[key] = hours.get(key, 0.0) + gpu_hours([c])
    for key, seeds in groups.items():
        row, protocol, dataset, precision, epochs = key
        table.add_row(
            row, protocol, dataset, precision, str(seeds), str(epochs), f"{hours[key]:,.1f}"
        )
    return table
