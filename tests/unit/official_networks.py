"""Inputs of the network equivalence tests, shared with the script that recorded the official side.

`scripts/record_official_networks.py` runs the official ICCV'21 `main.py` for one training step
of each run below and writes `tests/data/official_networks.pt`; `test_official_networks.py`
takes the same step with our preset's network and recipe. Both sides start from the same weights
and images, generated here from seeds (NumPy's PCG64: its bit stream is stable across versions),
so the recorded file holds only outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

SEED = 2021
BATCH = 2
IMAGE = 224
SAMPLES = 4  # entries kept of every tensor (with its norm)
LOGITS = 32  # logits kept of each image (with the norm and log-sum-exp of all of them)


@dataclass(frozen=True)
class Run:
    """One official training step: a script's command with the changes `changes` names."""

    name: str
    preset: str  # ours
    row: str  # ours, the row the official representation stands for
    script: str  # the official script whose `python main.py` command is run
    representation: str  # official --representation
    num_classes: int
    #: script variables replaced before its command is built (and why)
    variables: dict[str, str] = field(default_factory=dict)


RUNS = (
    Run("alexnet-isqrt-cov", "iccv21-gcp-alexnet", "iSQRT-COV", "train_alexnet.sh", "MPNCOV", 1000),
    Run(
        "alexnet-svd-newton",
        "iccv21-gcp-alexnet",
        "SVD-Newton",
        "train_alexnet.sh",
        "SVD_Newton",
        1000,
    ),
    Run(
        "resnet50-isqrt-cov", "iccv21-gcp-resnet50", "iSQRT-COV", "train_resnet.sh", "MPNCOV", 1000
    ),
    Run(
        "fgvc-isqrt-cov",
        "iccv21-fgvc",
        "iSQRT-COV",
        "finetune/finetune.sh",
        "MPNCOV",
        200,
        # finetune.sh is a template (benchmark "Dataset Name", num_classes "#classes") for
        # mpncovresnet50 with --pretrained (iSQRT-COV's released model, downloaded): fine-tuned
        # here is the row's own ImageNet network, train_resnet.sh's resnet50 (its weights given)
        variables={"benchmark": "CUB_200_2011", "num_classes": "200", "arch": "resnet50"},
    ),
)
RUN_NAMES = tuple(run.name for run in RUNS)


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([SEED, *key])


def synthetic_state(entries: list[tuple[str, tuple[int, ...]]]) -> list[torch.Tensor]:
    """Weights and buffers for a state dict's entries, in order: (name suffix, shape) decide the
    kind. Conv/linear weights are uniform with the He std √(2/fan_in); BN weights 1 ± 0.2, biases
    ± 0.1, running means ± 0.1, running variances 1 to 1.5 (not the init values, so a swapped or
    ignored tensor changes the outputs)."""
    out = []
    for index, (name, shape) in enumerate(entries):
        if name.endswith("num_batches_tracked"):
            out.append(torch.zeros(shape, dtype=torch.long))
            continue
        u = torch.from_numpy(_rng(index).random(math.prod(shape), dtype=np.float32)).reshape(shape)
        if name.endswith("running_var"):
            out.append(1 + 0.5 * u)
        elif name.endswith("running_mean") or name.endswith("bias"):
            out.append(0.1 * (2 * u - 1))
        elif len(shape) == 1:  # a BN weight
            out.append(1 + 0.2 * (2 * u - 1))
        else:
            fan_in = math.prod(shape[1:])
            out.append((2 * u - 1) * math.sqrt(3 * 2 / fan_in))
    return out


def batch(num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training step's images (standard normal, as normalised pixels) and labels."""
    rng = _rng(10**6)
    images = rng.standard_normal((BATCH, 3, IMAGE, IMAGE), dtype=np.float32)
    labels = rng.integers(0, num_classes, BATCH)
    return torch.from_numpy(images), torch.from_numpy(labels).long()


def sample_index(numel: int) -> torch.Tensor:
    """`SAMPLES` fixed flat indices spread over a tensor of `numel` entries (repeats when
    smaller), first and last included."""
    return torch.arange(SAMPLES, dtype=torch.long) * (numel - 1) // (SAMPLES - 1)


def summary(t: torch.Tensor) -> torch.Tensor:
    """A tensor kept as (its norm, `SAMPLES` of its entries), float32 (the networks' dtype)."""
    flat = t.detach().reshape(-1).double()
    return torch.cat([flat.norm().reshape(1), flat[sample_index(flat.numel())]]).float()


def logit_summary(logits: torch.Tensor) -> torch.Tensor:
    """Per image: the norm and log-sum-exp of its logits, then its first `LOGITS` logits."""
    x = logits.detach().double()
    return torch.cat([x.norm(dim=1, keepdim=True), x.logsumexp(1, keepdim=True), x[:, :LOGITS]], 1)


def init_stats(t: torch.Tensor) -> torch.Tensor:
    """(mean, std, max |x|) of an initialised tensor: its init rule, not its draw."""
    x = t.detach().double().reshape(-1)
    std = x.std() if x.numel() > 1 else torch.zeros((), dtype=torch.float64)
    return torch.stack([x.mean(), std, x.abs().max()]).float()
