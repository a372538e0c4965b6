"""`plan`'s cost model: its FLOP table is what FlopCounterMode counts on the real networks."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from svdablate.models import build_model
from svdablate.spec.config import Resources
from svdablate.spec.cost import (
    CPU_DBN_SECONDS_PER_STEP,
    CPU_GFLOPS_PER_CORE,
    FORWARD_GFLOPS_224,
    compute_hours,
    forward_gflops,
)
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


def test_a_smoke_plan_costs_the_smoke_study_not_the_full_one():
    """--smoke trains 2 steps of 4 FakeData images at 16 px an epoch: that is what is costed."""
    from svdablate.spec.cost import plan_table, steps_per_epoch

    full = StudyPlan.create(preset="eccv22-dbn-cifar100", seeds=1, check=False)
    smoke = StudyPlan.create(preset="eccv22-dbn-cifar100", smoke=True, check=False)
    assert len(smoke.configs) == len(full.configs) == 13
    one_cpu = Resources(cpus_per_trial=1, gpus_per_trial=0)
    full_hours = compute_hours(full.configs, one_cpu)
    smoke_hours = compute_hours(smoke.configs, smoke.resources)
    trial = smoke.configs[0]
    assert steps_per_epoch(trial) == 2 and trial.epochs == 1 and trial.batch_size == 4
    per_trial_s = 2 * 4 * 3 * forward_gflops("resnet50", "cifar100", 16) / CPU_GFLOPS_PER_CORE
    per_trial_s += 2 * CPU_DBN_SECONDS_PER_STEP
    assert smoke_hours == pytest.approx(13 * per_trial_s / 3600)
    assert full_hours > 1e5 * smoke_hours  # 350 epochs of 390 steps of 128 at 32 px
    caption = str(plan_table(smoke.preset, smoke.configs, smoke.resources).caption)
    assert (
        "the smoke study's, not the full study's: 2 steps of 4 FakeData images at 16 px" in caption
    )
    assert f"{smoke_hours:.2g} CPU-hours" in caption
    assert "smoke" not in str(plan_table(full.preset, full.configs, full.resources).caption)
