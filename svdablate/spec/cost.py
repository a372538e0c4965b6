"""`svdablate plan`: the trial list, resources per trial and an estimate of the compute.

The per-epoch cost model (seconds of one trial on one whole data-centre GPU, or on its CPUs):

    seconds/epoch = images × 3 × forward_GFLOPs / (rate in GFLOP/s) + steps × metalayer_s

- 3 × forward: forward plus backward of the network (the usual rule of thumb).
- forward_GFLOPs per image at 224 px (`FORWARD_GFLOPS_224`): counted by
  `torch.utils.flop_counter.FlopCounterMode` on torchvision's networks (a multiply-add is two
  FLOPs; torchvision's model cards print multiply-adds, half these), scaled by (resolution/224)²;
  with the CIFAR stem a 32 px image keeps 32 px at layer1 where the ImageNet stem has 56, so it
  counts as (32/56)² of 224 px. `tests/unit/test_cost.py` recounts them on the real models.
- GPU: 25 TFLOP/s, a sustained fp32/TF32 training rate of an A100/H100-class GPU; the meta-layer
  per step: the ICCV'21 Table 5 measurement for the 256×256 GCP layer (batch 128, float64 eigh
  forward + backward ≈ 1.2 s; Newton–Schulz 0.76 s), scaled linearly with the batch; the 64×64
  decorrelated-BN layer at 5 ms a step. No GPU run has calibrated these (docs/presets.md,
  "Cost model").
- CPU (a trial with no GPU): `CPU_GFLOPS_PER_CORE` per core of `--cpus-per-trial`, and the 16×16
  decorrelated-BN layer of the demo at `CPU_DBN_SECONDS_PER_STEP`; docs/benchmarks.md compares the
  estimate with a measured demo trial.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.table import Table

from svdablate.spec.config import Resources, TrialConfig
from svdablate.spec.presets import Preset

GPU_TFLOPS = 25.0
CPU_GFLOPS_PER_CORE = 10.0
FORWARD_GFLOPS_224 = {  # FlopCounterMode, one 224 px image, batch of one
    "alexnet": 1.43,
    "resnet18": 3.63,
    "resnet50": 8.18,
    "resnet101": 15.6,
    "convnet": 1.07,
}
DATASET_IMAGES = {  # training images, resolution the model sees
    "digits": (1437, 16),
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
CPU_DBN_SECONDS_PER_STEP = 0.002


def forward_gflops(model: str, dataset: str) -> float:
    """Forward GFLOPs of one image of `dataset` through `model` (the table, scaled)."""
    _, size = DATASET_IMAGES.get(dataset, (50000, 32))
    small_stem = size <= 64 and model != "convnet"
    scale = (size / 56) ** 2 if small_stem else (size / 224) ** 2
    return FORWARD_GFLOPS_224.get(model, FORWARD_GFLOPS_224["resnet50"]) * scale


def epoch_seconds(config: TrialConfig, *, gpu: bool = True, cpus: float = 1.0) -> float:
    """Estimated seconds of one epoch of one trial on a GPU, or on `cpus` cores."""
    images, _ = DATASET_IMAGES.get(config.reported_dataset, (50000, 32))
    flops = images * 3 * forward_gflops(config.model, config.reported_dataset)
    steps = images / config.batch_size
    if not gpu:
        per_step = CPU_DBN_SECONDS_PER_STEP if config.application == "dbn" else 0.0
        return flops / (CPU_GFLOPS_PER_CORE * max(cpus, 1.0)) + steps * per_step
    if config.application == "gcp":
        method = "ns" if config.method == "ns" else "svd"
        per_step = GCP_SECONDS_PER_128[method] * config.batch_size / 128
    else:
        per_step = DBN_SECONDS_PER_STEP
    return flops / (GPU_TFLOPS * 1000) + steps * per_step


def compute_hours(configs: list[TrialConfig], resources: Resources) -> float:
    """Estimated GPU-hours of the trials (CPU-core-hours when they ask for no GPU)."""
    gpu = resources.gpus_per_trial > 0
    seconds = sum(
        epoch_seconds(c, gpu=gpu, cpus=resources.cpus_per_trial) * c.epochs for c in configs
    )
    return seconds / 3600 * (1 if gpu else resources.cpus_per_trial)


def schedule_text(config: TrialConfig) -> str:
    """The effective lr schedule: `lr 0.05, ×0.1 at epochs 10 (of 15)`, plus the hybrid switch."""
    decays = ", ".join(map(str, config.milestone_epochs))
    if decays:
        text = f"lr {config.lr:g}, ×{config.gamma:g} at epochs {decays} (of {config.epochs})"
    else:
        text = f"lr {config.lr:g}, constant over {config.epochs} epochs"
    if config.switch_epoch is not None:
        text += f"; NS until epoch {config.switch_epoch}"
    return text


def recipe_text(configs: list[TrialConfig]) -> str:
    """The rest of the recipe, one line for the grid (each part once, or 'a or b' where the
    trials differ): batch, SGD, classifier lr factor, gradient clipping and initialisation."""

    def one(values: list[str]) -> str:
        return " or ".join(dict.fromkeys(values))

    def clip(c: TrialConfig) -> str:
        if c.grad_clip_norm is None:
            return "gradient norm not clipped"
        return f"gradient norm clipped at {c.grad_clip_norm:g}"

    parts = [
        "batch " + one([str(c.batch_size) for c in configs]),
        "SGD momentum "
        + one([f"{c.momentum:g}" for c in configs])
        + ", weight decay "
        + one([f"{c.weight_decay:g}" for c in configs]),
        "classifier lr ×" + one([f"{c.classifier_lr_factor:g}" for c in configs]),
        one([clip(c) for c in configs]),
    ]
    return " · ".join(parts)


def plan_table(preset: Preset, configs: list[TrialConfig], resources: Resources) -> Table:
    """The plan of a grid: one line per row, with trials, schedule, resources and GPU-hours."""
    unit = "GPU-hours" if resources.gpus_per_trial > 0 else "CPU-hours"
    total = compute_hours(configs, resources)
    table = Table(
        title=f"{preset.name}: {preset.reproduces}",
        caption=f"{recipe_text(configs)}\n{len(configs)} trials · {total:,.2f} {unit} estimated "
        f"(cost model: svdablate.spec.cost) · {resources.gpus_per_trial:g} GPU and "
        f"{resources.cpus_per_trial:g} CPUs per trial",
    )
    starts = preset.fine_tunes or any(c.init_checkpoint for c in configs)
    columns = ("row", "protocol", "dataset", "precision", "seeds", "schedule")
    columns += ("starts from",) * starts + (unit,)
    for column in columns:
        left = column in ("row", "schedule", "starts from")
        table.add_column(column, justify="left" if left else "right")
    groups: Counter[tuple] = Counter()
    hours: dict[tuple, float] = {}
    schedule: dict[tuple, str] = {}
    for c in configs:
        key = (c.row, c.protocol, c.reported_dataset, c.precision)
        groups[key] += 1
        hours[key] = hours.get(key, 0.0) + compute_hours([c], resources)
        start = (
            Path(c.init_checkpoint).name
            if c.init_checkpoint
            else ("random weights" if c.smoke else "needs --checkpoints")
        )
        schedule[key] = (schedule_text(c), *((start,) if starts else ()))
    for key, seeds in groups.items():
        row, protocol, dataset, precision = key
        table.add_row(
            row, protocol, dataset, precision, str(seeds), *schedule[key], f"{hours[key]:,.2f}"
        )
    return table
