"""The set-up the ECCV'22 decorrelated-BN equivalence suite shares with its recording script.

`tests/unit/test_dbn_equivalence.py` runs our networks through it and compares the result with
`tests/data/official_dbn.json`, which `scripts/record_official_dbn.py` wrote by running the
official networks (OrthoImproveCond, "Decorrelated BN") through the same set-up. Nothing here is
official code: the weights are generated from our network's parameter names and shapes and
copied into the official network by name (`official_state`), so both run the same numbers.
"""

from __future__ import annotations

import zlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from svdablate.models import SVDNet, build_model

#: Network → classes, as the official scripts build them (main_cifar10.py: resnet18 with 10
#: classes; main_cifar100.py: resnet50 with 100), at CIFAR's 32 px with the 3×3 stride-1 stem.
NETWORKS = {"resnet18": 10, "resnet50": 100}
IMAGE = 32
TARGETS = (3, 7)  # a batch of two images
INPUT_SEED = 0
SIGNATURE_SIZE = 8  # projections and leading entries kept of each tensor
EXACT_NS_ITERS = 60  # the exact square root of the "exact-float64" case (converged by 40)
ZCA_CHANNELS = 64  # the stem's width: the ZCA whitening's features


def our_network(arch: str, method: str, precision: str, dtype: torch.dtype) -> SVDNet:
    """Our ResNet DBN (ZCA whitening in place of bn1) as the ECCV'22 presets build it."""
    model = build_model(
        arch,
        application="dbn",
        num_classes=NETWORKS[arch],
        in_channels=3,
        image_size=IMAGE,
        method=method,
        precision=precision,
    )
    return model.to(dtype)


def reference_weights(model: nn.Module) -> dict[str, Tensor]:
    """Deterministic float64 values for every parameter of ``model`` (our names), each drawn
    from a generator seeded by its name: convolutions He-normal (fan out), BN weights U(0.5,
    1.5), the ZCA weight U(0, 1), biases N(0, 0.1²), the classifier N(0, 1/fan_in)."""
    weights = {}
    for name, p in model.named_parameters():
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        normal = torch.randn(p.shape, generator=g, dtype=torch.float64)
        uniform = torch.rand(p.shape, generator=g, dtype=torch.float64)
        if p.dim() == 4:
            weights[name] = normal * (2.0 / (p.shape[0] * p.shape[2] * p.shape[3])) ** 0.5
        elif name == "body.bn1.weight":
            weights[name] = uniform
        elif name.endswith("bias"):
            weights[name] = 0.1 * normal
        elif p.dim() == 1:
            weights[name] = 0.5 + uniform
        else:
            weights[name] = normal / p.shape[1] ** 0.5
    return weights


def load_weights(model: nn.Module, weights: dict[str, Tensor]) -> None:
    """Copy ``weights`` (our names) into ``model`` in its own dtype; buffers stay as built."""
    params = dict(model.named_parameters())
    if set(params) != set(weights):
        raise KeyError(f"parameters differ: {sorted(set(params) ^ set(weights))[:5]}")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.reshape(params[name].shape))


def official_name(name: str) -> str:
    """Our parameter name → the official ResNet's (``body.`` dropped: the layouts are equal)."""
    return name.removeprefix("body.")


def official_state(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """``weights`` under the official names (its ZCA weight and bias are (groups, d, 1))."""
    out = {}
    for name, value in weights.items():
        key = official_name(name)
        out[key] = value.reshape(1, -1, 1) if key.startswith("bn1.") else value
    return out


def reference_batch(dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Two 3×32×32 standard-normal images and their labels."""
    g = torch.Generator().manual_seed(INPUT_SEED)
    x = torch.randn(len(TARGETS), 3, IMAGE, IMAGE, generator=g, dtype=torch.float64)
    return x.to(dtype), torch.tensor(TARGETS)


def one_step(model: nn.Module, stem: nn.Conv2d, dtype: torch.dtype) -> dict[str, Tensor]:
    """A training forward and backward on the reference batch, then an eval forward (running
    statistics after that one step): logits, cross-entropy, the stem's (Pre-SVD) gradient."""
    x, y = reference_batch(dtype)
    model.train()
    model.zero_grad()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    model.eval()
    with torch.no_grad():
        eval_logits = model(x)
    return {
        "logits": logits.detach(),
        "eval_logits": eval_logits,
        "stem_grad": stem.weight.grad.detach().clone(),
        "loss": loss.detach().reshape(1),
    }


def _directions(n: int) -> Tensor:
    """SIGNATURE_SIZE fixed unit vectors of length n (cosines: no RNG, stable everywhere)."""
    i = torch.arange(n, dtype=torch.float64)
    k = torch.arange(SIGNATURE_SIZE, dtype=torch.float64)[:, None]
    v = torch.cos(0.37 * (k + 1) * i + 0.5 * k)
    return v / v.norm(dim=1, keepdim=True)


def signature(t: Tensor) -> list[float]:
    """‖t‖, its projections on SIGNATURE_SIZE fixed directions and its first entries: a few
    numbers that move when any entry of t does."""
    flat = t.detach().to(torch.float64).flatten()
    head = flat[:SIGNATURE_SIZE]
    return [float(flat.norm()), *map(float, _directions(flat.numel()) @ flat), *map(float, head)]


def step_signatures(model: nn.Module, stem: nn.Conv2d, dtype: torch.dtype) -> dict[str, list]:
    """`signature` of each tensor `one_step` returns; the loss as its one value."""
    out = one_step(model, stem, dtype)
    return {k: [float(v)] if k == "loss" else signature(v) for k, v in out.items()}


def init_signature(model: nn.Module) -> dict[str, list[float]]:
    """Per parameter (official names): numel, mean and standard deviation as initialised."""
    out = {}
    for name, p in model.named_parameters():
        std, mean = torch.std_mean(p.detach().to(torch.float64).flatten())
        out[official_name(name)] = [p.numel(), float(mean), float(std)]
    return out


def relative_error(ours: list[float], reference: list[float]) -> float:
    """‖ours − reference‖ / ‖reference‖ of two signatures."""
    a, b = torch.tensor(ours, dtype=torch.float64), torch.tensor(reference, dtype=torch.float64)
    return float((a - b).norm() / b.norm())
