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

from rich.table import Table

from .config import Resources, TrialConfig
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


def gpu_hours(configs: list[TrialConfig]) -> float:
    """Estimated GPU-hours of a list of trial configs."""
    total = 0.0
    for c in configs:
        per_epoch = epoch_seconds(
            c.model, c.reported_dataset, c.application, c.method, c.batch_size
        )
        total += per_epoch * c.epochs
    return total / 3600


def schedule_text(config: TrialConfig) -> str:
    """The effective lr schedule: `lr 0.05, ×0.1 at epochs 10 (of 15)`, plus the hybrid switch."""
    decays = ", ".join(map(str, config.milestone_epochs)) or "none"
    text = f"lr {config.lr:g}, ×{config.gamma:g} at epochs {decays} (of {config.epochs})"
    if config.switch_epoch is not None:
        text += f"; NS until epoch {config.switch_epoch}"
    return text


def plan_table(preset: Preset, configs: list[TrialConfig], resources: Resources) -> Table:
    """The plan of a grid: one line per row, with trials, schedule, resources and GPU-hours."""
    table = Table(
        title=f"{preset.name}: {preset.reproduces}",
        caption=f"{len(configs)} trials · {gpu_hours(configs):,.1f} GPU-hours estimated "
        f"(cost model: svdablate.orchestrator.cost) · {resources.gpus_per_trial:g} GPU and "
        f"{resources.cpus_per_trial:g} CPUs per trial",
    )
    columns = ("row", "protocol", "dataset", "precision", "seeds", "schedule", "GPU-hours")
    for column in columns:
        table.add_column(column, justify="left" if column in ("row", "schedule") else "right")
    groups: Counter[tuple] = Counter()
    hours: dict[tuple, float] = {}
    schedule: dict[tuple, str] = {}
    for c in configs:
        key = (c.row, c.protocol, c.reported_dataset, c.precision)
        groups[key] += 1
        hours[key] = hours.get(key, 0.0) + gpu_hours([c])
        schedule[key] = schedule_text(c)
    for key, seeds in groups.items():
        row, protocol, dataset, precision = key
        table.add_row(
            row, protocol, dataset, precision, str(seeds), schedule[key], f"{hours[key]:,.1f}"
        )
    return table
