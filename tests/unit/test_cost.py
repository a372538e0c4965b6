"""`plan`'s cost model: its FLOP table is what FlopCounterMode counts on the real networks."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from svdablate.models import build_model
from svdablate.spec.config import Resources
from svdablate.spec.cost import FORWARD_GFLOPS_224, compute_hours, forward_gflops
from svdablate.study.plan import StudyPlan


def counted_gflops(model: str, application: str, size: int, channels: int = 3) -> float:
    """Forward GFLOPs of one image, counted on the meta device (shapes only, no arithmetic)."""
    with torch.device("meta"):
        net = build_model(
            model,
            application=application,
            num_classes=10,
            in_channels=channels,
            image_size=size,
            method="svd",
        ).eval()
        x = torch.randn(1, channels, size, size)
    with FlopCounterMode(display=False) as counter:
        net(x)
    return counter.get_total_flops() / 1e9


@pytest.mark.parametrize("model", sorted(FORWARD_GFLOPS_224))
def test_the_flop_table_is_what_flop_counter_mode_counts(model):
    """Within 5 %: the table is the backbone's; the ZCA layer's own matmul adds up to 3 %."""
    assert FORWARD_GFLOPS_224[model] == pytest.approx(counted_gflops(model, "dbn", 224), rel=0.05)


@pytest.mark.parametrize(
    ("model", "dataset", "size", "channels"),
    [("resnet50", "cifar100", 32, 3), ("resnet18", "cifar10", 32, 3), ("convnet", "digits", 16, 1)],
)
def test_small_images_scale_as_the_model_says(model, dataset, size, channels):
    counted = counted_gflops(model, "dbn", size, channels)
    assert forward_gflops(model, dataset) == pytest.approx(counted, rel=0.2)


def test_cpu_trials_are_counted_in_cpu_hours():
    configs = StudyPlan.create(preset="demo", seeds=1, check=False).configs
    cpu = compute_hours(configs, Resources(cpus_per_trial=1, gpus_per_trial=0))
    gpu = compute_hours(configs, Resources(cpus_per_trial=1, gpus_per_trial=1))
    assert cpu > gpu > 0
