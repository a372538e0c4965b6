"""Every preset's own network at its own image size takes a training step with every row's method.

`--smoke` runs the presets on 16-pixel images with a 32-channel GCP head: full rank, no ties. At
full size a GCP head's covariance is rank-deficient (256 channels over 49, 169 or 196 positions)
or, at 448 px, has SVD-TopN's 50 tied eigenvalues: where SVD-Padé's gradient was 1e14× the exact
one. Here, on synthetic data of the dataset's real shape (batch 2): one SGD step of the whole
network with the first row's method (finite loss, gradients and weights), then for every method of
the preset's rows the Pre-SVD layer's gradient norm, which must be finite and within 1e3× of the
exact rule's (`svd` in float64) on the same weights and data. GCP heads are run from the
backbone's features computed once (the Pre-SVD 1×1 conv is the head's first layer, so its
gradient does not depend on the backbone's backward).
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from svdablate.data.datasets import FAKE_SHAPES
from svdablate.models import build_model
from svdablate.spec.presets import PRESETS, Preset
from svdablate.spec.rows import canonical_method, parse_row

pytestmark = pytest.mark.slow
BATCH = 2


def _network_key(preset: Preset) -> tuple:
    """What the steps below depend on, the class count aside (it only sizes the last layer)."""
    _, channels, size, _, _ = FAKE_SHAPES[preset.datasets[0]]
    options = tuple(sorted(preset.trial.model_options.as_kwargs().items()))
    return preset.model, preset.application, channels, size, preset.rows, preset.precisions, options


def _one_preset_per_network() -> list[str]:
    """The full-size presets, the first of those that share a network: eccv22-dbn-cifar100 is
    eccv22-dbn-cifar10's network and rows with 100 classes, the same code path once more."""
    names: dict[tuple, str] = {}
    for name, preset in PRESETS.items():
        if name != "demo":
            names.setdefault(_network_key(preset), name)
    return list(names.values())


FULL_SCALE = _one_preset_per_network()
#: Each network's tests on one pytest-xdist worker (`--dist loadgroup`): they share its cached
#: build.
ONE_WORKER_PER_NETWORK = [
    pytest.param(n, marks=pytest.mark.xdist_group(f"full-scale-{n}")) for n in FULL_SCALE
]


def _methods(preset: Preset) -> list[str]:
    return list(dict.fromkeys(canonical_method(parse_row(r)) for r in preset.rows))


@functools.cache
def _network(preset_name: str):
    """The preset's network at full size and a synthetic batch of its dataset's shape."""
    preset = PRESETS[preset_name]
    classes, channels, size, _, _ = FAKE_SHAPES[preset.datasets[0]]
    torch.manual_seed(0)
    model = build_model(
        preset.model,
        application=preset.application,
        num_classes=classes,
        in_channels=channels,
        image_size=size,
        method=_methods(preset)[0],
        precision=preset.precisions[0],
        options=preset.trial.model_options,
    )
    g = torch.Generator().manual_seed(1)
    images = torch.randn(BATCH, channels, size, size, generator=g)
    labels = torch.randint(0, classes, (BATCH,), generator=g)
    return model, images, labels


def _classifier(body: torch.nn.Module) -> torch.nn.Module:
    return body.fc if hasattr(body, "fc") else body.classifier


def _pre_svd_grad_norm(preset: Preset, method: str, precision: str) -> float:
    model, images, labels = _network(preset.name)
    model.train()
    head = model.metalayer
    head.method, head.precision = method, precision
    model.zero_grad(set_to_none=True)
    if preset.application == "gcp":
        features = _head_input(preset.name)
        logits = _classifier(model.body)(torch.flatten(head(features), 1))
    else:
        logits = model(images)
    F.cross_entropy(logits, labels).backward()
    return float(model.pre_svd_layer.weight.grad.norm())


@functools.cache
def _head_input(preset_name: str) -> torch.Tensor:
    """The GCP head's input (the backbone's last feature map), computed once without grad."""
    model, images, _ = _network(preset_name)
    seen: list[torch.Tensor] = []
    handle = model.metalayer.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        model.eval()
        model(images)
    handle.remove()
    return seen[0]


@pytest.mark.parametrize("preset_name", ONE_WORKER_PER_NETWORK)
def test_one_training_step_of_the_full_size_network(preset_name: str) -> None:
    preset = PRESETS[preset_name]
    model, images, labels = _network(preset_name)
    model.train()
    model.metalayer.method = _methods(preset)[0]
    optimizer = torch.optim.SGD(model.parameters(), lr=preset.trial.lr, momentum=0.9)
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("preset_name", ONE_WORKER_PER_NETWORK)
def test_every_method_gives_a_sane_pre_svd_gradient_at_full_size(preset_name: str) -> None:
    preset = PRESETS[preset_name]
    exact = _pre_svd_grad_norm(preset, "svd", "float64")
    assert exact > 0
    for precision in preset.precisions:
        for method in _methods(preset):
            norm = _pre_svd_grad_norm(preset, method, precision)
            ratio = norm / exact
            assert 1e-3 <= ratio <= 1e3, f"{method} ({precision}): {norm:.3e} vs exact {exact:.3e}"
