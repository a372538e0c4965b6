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

A smoke study (`plan --smoke`) is costed as what it runs: `max_steps_per_epoch` steps of its batch
of FakeData at 16 px (`trained_images`), and the caption says it is the smoke study's.

A rehearsal (`svdablate rehearse`, `<results-dir>/rehearsals/<preset>.json`) replaces the model:
each trial costs epochs × steps per epoch × its shape's measured seconds per step (a hybrid
trial's NS epochs at the NS shape's), and `plan` says which rehearsal it used. Where the rehearsal
shows a trial using a fraction of a GPU's memory and time, `packing_advice` suggests
`--gpus-per-trial`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def forward_gflops(model: str, dataset: str, size: int | None = None) -> float:
    """Forward GFLOPs of one image of `dataset` (at `size` px, default its own) through `model`
    (the table, scaled)."""
    size = size or DATASET_IMAGES.get(dataset, (50000, 32))[1]
    small_stem = size <= 64 and model != "convnet"
    scale = (size / 56) ** 2 if small_stem else (size / 224) ** 2
    return FORWARD_GFLOPS_224.get(model, FORWARD_GFLOPS_224["resnet50"]) * scale


def trained_images(config: TrialConfig) -> tuple[int, int]:
    """Images one epoch trains on and their size in px: the dataset's, or what a smoke trial
    (FakeData at 16 px, 2 steps of 4) or a `max_steps_per_epoch` cap leaves of it."""
    from svdablate.data.datasets import SMOKE_IMAGE

    images, size = DATASET_IMAGES.get(config.reported_dataset, (50000, 32))
    if config.smoke:
        size = min(size, SMOKE_IMAGE)
    if config.smoke or config.max_steps_per_epoch:
        images = steps_per_epoch(config) * config.batch_size
    return images, size


def epoch_seconds(config: TrialConfig, *, gpu: bool = True, cpus: float = 1.0) -> float:
    """Estimated seconds of one epoch of one trial on a GPU, or on `cpus` cores."""
    images, size = trained_images(config)
    flops = images * 3 * forward_gflops(config.model, config.reported_dataset, size)
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


def smoke_text(configs: list[TrialConfig]) -> str:
    """What a smoke study trains an epoch (empty for a study at full scale)."""
    smoke = [c for c in configs if c.smoke]
    if not smoke:
        return ""
    _, size = trained_images(smoke[0])
    return (
        f"{steps_per_epoch(smoke[0])} steps of {smoke[0].batch_size} FakeData images at {size} px "
        "an epoch, training only (Ray's and each trial's start-up not counted)"
    )


def _hours_by(
    resources: Resources, rehearsal: dict[str, Any] | None, smoke: str = ""
) -> tuple[Any, str, list[str]]:
    """A function config → hours, what it is based on, and the notes to print under the plan:
    the rehearsal's seconds where it measured the shape on the kind of device the plan asks
    for, the cost model otherwise."""
    gpu = resources.gpus_per_trial > 0
    share = resources.gpus_per_trial if gpu else resources.cpus_per_trial
    notes: list[str] = []
    step_seconds: dict[str, float] = {}
    if rehearsal is not None:
        if (rehearsal.get("device_type") == "cuda") == gpu:
            step_seconds = {s["shape"]: s["step_s"] for s in rehearsal["shapes"]}
        else:
            kind = "a GPU" if gpu else "CPUs"
            notes.append(f"{rehearsal['source']} not used: it ran on {rehearsal['device']}, the "
                         f"plan asks for {kind}")  # fmt: skip

    def hours(config: TrialConfig) -> float:
        seconds = rehearsed_seconds(config, step_seconds) if step_seconds else None
        if seconds is None:
            return compute_hours([config], resources)
        return seconds * share / 3600

    basis = (
        f"measured: {rehearsal['source']}" if step_seconds else "cost model: svdablate.spec.cost"
    )
    if smoke:
        basis += "; the smoke study's, not the full study's: " + smoke
    if step_seconds:
        for shape in rehearsal["shapes"]:
            packing = packing_advice(
                shape.get("memory_fraction"), shape.get("busy_fraction"), resources.gpus_per_trial
            )
            if packing:
                notes.append(
                    f"{shape['shape']}: {packing.reason}: --gpus-per-trial "
                    f"{packing.gpus_per_trial:.3g} packs {packing.trials_per_gpu} a GPU, "
                    f"predicted {packing.throughput_gain:.1f}× the trials per hour"
                )
    return hours, basis, notes


def hours_text(hours: float) -> str:
    """Hours to two decimals, or to two significant digits below 0.1 (a smoke study's)."""
    return f"{hours:,.2f}" if hours >= 0.1 or hours == 0 else f"{hours:.2g}"


def plan_table(
    preset: Preset,
    configs: list[TrialConfig],
    resources: Resources,
    rehearsal: dict[str, Any] | None = None,
) -> Table:
    """The plan of a grid: one line per row, with trials, schedule, resources and GPU-hours
    (from `rehearsal`, a `load_rehearsal` record with its `source`, where it measured them)."""
    unit = "GPU-hours" if resources.gpus_per_trial > 0 else "CPU-hours"
    trial_hours, basis, notes = _hours_by(resources, rehearsal, smoke_text(configs))
    total = sum(trial_hours(c) for c in configs)
    table = Table(
        title=f"{preset.name}: {preset.reproduces}",
        caption=f"{recipe_text(configs)}\n{len(configs)} trials · {hours_text(total)} {unit} "
        f"estimated ({basis}) · {resources.gpus_per_trial:g} GPU and "
        f"{resources.cpus_per_trial:g} CPUs per trial" + "".join(f"\n{n}" for n in notes),
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
        hours[key] = hours.get(key, 0.0) + trial_hours(c)
        start = (
            Path(c.init_checkpoint).name
            if c.init_checkpoint
            else ("random weights" if c.smoke else "needs --checkpoints")
        )
        schedule[key] = (schedule_text(c), *((start,) if starts else ()))
    for key, seeds in groups.items():
        row, protocol, dataset, precision = key
        table.add_row(
            row, protocol, dataset, precision, str(seeds), *schedule[key], hours_text(hours[key])
        )
    return table


# --------------------------------------------------------------------------- from a rehearsal
REHEARSALS = "rehearsals"  # folder under --results-dir
PACKING_MEMORY_HEADROOM = 0.9  # share of a GPU's memory that packed trials may fill together
PACKING_MIN_GAIN = 1.2  # a smaller predicted gain is not worth the trials' interference


def rehearsal_path(results_dir: str | Path, preset: str) -> Path:
    """Where `rehearse` writes, and `plan` reads, a preset's latest rehearsal."""
    return Path(results_dir) / REHEARSALS / f"{preset}.json"


def load_rehearsal(results_dir: str | Path, preset: str) -> dict[str, Any] | None:
    """The preset's latest rehearsal record, with `source` (which rehearsal: when, where, the
    file), or None when there is none (or it is unreadable)."""
    path = rehearsal_path(results_dir, preset)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    record["source"] = f"rehearsal of {record['when']} on {record['device']} ({path})"
    return record


def shape_key(config: TrialConfig, method: str | None = None) -> str:
    """The trial shape a rehearsal measures: network, dataset (its image size), batch, method,
    precision and autocast (`training.rehearse.shape_label` spells it the same way)."""
    from svdablate.data.datasets import FAKE_SHAPES

    size = FAKE_SHAPES[config.reported_dataset][2]
    label = f"{config.model} {config.reported_dataset} {size}px b{config.batch_size} "
    label += f"{method or config.method} {config.precision}"
    return label if config.autocast == "off" else f"{label} {config.autocast}"


def steps_per_epoch(config: TrialConfig) -> int:
    """Training steps of one full epoch (drop_last), or the config's cap (a smoke trial: of its
    FakeData's SMOKE_TRAIN images)."""
    from svdablate.data.datasets import SMOKE_TRAIN

    images, _ = DATASET_IMAGES.get(config.reported_dataset, (50000, 32))
    images = SMOKE_TRAIN if config.smoke else images
    steps = images // config.batch_size
    return min(steps, config.max_steps_per_epoch or steps)


def rehearsed_seconds(config: TrialConfig, step_seconds: dict[str, float]) -> float | None:
    """A trial's training seconds from a rehearsal's seconds per step by shape; None when its
    shape was not rehearsed. Hybrid: the epochs before the switch at the NS shape when measured."""
    own = step_seconds.get(shape_key(config))
    if own is None:
        return None
    per_epoch = steps_per_epoch(config)
    ns_epochs = config.switch_epoch or 0
    ns = step_seconds.get(shape_key(config, "ns"), own)
    return per_epoch * (ns_epochs * ns + (config.epochs - ns_epochs) * own)


@dataclass(frozen=True)
class Packing:
    """How many trials one GPU could hold, and the throughput that predicts."""

    trials_per_gpu: int
    gpus_per_trial: float
    throughput_gain: float
    reason: str


def packing_advice(
    memory_fraction: float | None, busy_fraction: float | None, gpus_per_trial: float
) -> Packing | None:
    """Pack k trials a GPU when k fit its memory (with headroom) and one leaves it idle for most
    of the time: k = min(⌊0.9 / memory share⌋, ⌈1 / busy share⌉). The gain assumes the idle time
    is what the others fill: min(k, 1 / busy share). None: not measured, or less to gain than
    PACKING_MIN_GAIN."""
    if memory_fraction is None or busy_fraction is None or memory_fraction <= 0:
        return None
    by_memory = math.floor(PACKING_MEMORY_HEADROOM / memory_fraction)
    by_time = math.ceil(1 / max(busy_fraction, 1e-3))
    k = min(by_memory, by_time)
    current = max(1, round(1 / gpus_per_trial)) if 0 < gpus_per_trial <= 1 else 1
    if k <= current:
        return None
    gain = min(k, 1 / busy_fraction) / min(current, 1 / busy_fraction)
    if gain < PACKING_MIN_GAIN:
        return None
    reason = (
        f"a trial uses {memory_fraction:.0%} of the GPU's memory and keeps it busy "
        f"{busy_fraction:.0%} of the time"
    )
    return Packing(k, 1 / k, gain, reason)
