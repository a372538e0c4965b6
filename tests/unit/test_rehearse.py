"""`svdablate rehearse` and `plan` reading it: measured steps, predictions, packing advice."""

from __future__ import annotations

import mmap
import resource

import pytest
import torch
from rich.console import Console

from svdablate.cli.rehearse_commands import autocast_table
from svdablate.metalayers import inv_sqrtm
from svdablate.metalayers import modules as metalayer_modules
from svdablate.spec.config import Resources
from svdablate.spec.cost import (
    packing_advice,
    plan_table,
    rehearsed_seconds,
    shape_key,
    steps_per_epoch,
)
from svdablate.spec.presets import PRESETS
from svdablate.study.plan import StudyPlan
from svdablate.study.rehearsal import (
    Cluster,
    autocast_saving,
    distinct_shapes,
    measure_shape,
    predict,
    with_autocast,
)
from svdablate.training.rehearse import PHASES, rehearse_shape, shape_label


def _configs(preset: str, **spec):
    return StudyPlan.create(preset, seeds=1, check=False, **spec).configs


def test_a_shape_rehearsal_times_real_steps_of_the_trial():
    config = next(c for c in _configs("demo") if c.row == "SVD+NOG")
    result = rehearse_shape(config, torch.device("cpu"), steps=2, warmup=1)
    assert result.shape == shape_key(config) == shape_label(config)
    assert set(result.phases) == set(PHASES)
    assert all(result.phases[p] >= 0 for p in PHASES) and result.phases["forward"] > 0
    assert result.phases["metalayer"] > 0  # the ZCA layer's forward and backward, from hooks
    assert result.step_s > 0 and result.demand_images_per_s == pytest.approx(64 / result.step_s)
    assert result.loader_images_per_s > 0 and result.feed == "loader×0"
    assert result.failures == 0 and result.nonfinite_grad_steps == 0
    assert result.peak_memory_mb > 0 and result.memory_fraction is None  # a CPU
    assert result.eigh_device.startswith("same")


def test_a_cpu_peak_is_the_rehearsals_own_not_the_processs_before_it():
    """A pytest worker or a reused Ray worker may have peaked higher before: the peak (and the
    memory the shape adds over the RSS it started from) is the rehearsal's own."""
    config = next(c for c in _configs("demo") if c.row == "SVD")
    rehearse_shape(config, torch.device("cpu"), steps=1, warmup=0)  # first-use memory kept
    # 256 MiB made resident, then given back: the process's old peak. Mapped here, not taken
    # from the heap: a worker whose heap held that much free (resident) memory served a tensor
    # from it, and neither its RSS nor its peak moved (CI failed on it).
    block = mmap.mmap(-1, 256 * 2**20)
    torch.frombuffer(block, dtype=torch.uint8).fill_(1)
    block.close()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = rehearse_shape(config, torch.device("cpu"), steps=1, warmup=0)
    assert result.peak_memory_mb < peak_before - 200
    # 0 where this warm process already holds all the shape needs (Ray gives each shape a
    # fresh worker: tests/e2e/test_rehearse_through_ray.py)
    assert 0 <= result.memory_added_mb < result.peak_memory_mb


def test_cifar_shapes_are_fed_from_the_device():
    config = next(c for c in _configs("eccv22-dbn-cifar10", smoke=True) if c.row == "SVD")
    config = config.model_validate({**config.model_dump(), "fake_like": None,
                                    "dataset": "cifar10", "model": "convnet"})  # fmt: skip
    result = rehearse_shape(config, torch.device("cpu"), steps=1, warmup=0)
    assert result.feed == "device" and "32px" in result.shape


def test_shapes_are_network_data_batch_method_precision():
    configs = _configs("eccv22-dbn-cifar100")
    assert [c.method for c in distinct_shapes(configs).values()] == ["svd", "ns"]
    iccv = _configs("iccv21-precision")
    assert len(distinct_shapes(iccv)) == 4  # two methods × two precisions


def test_a_hybrid_trial_costs_its_ns_epochs_at_the_ns_shape():
    configs = _configs("iccv21-gcp-alexnet")
    hybrid = next(c for c in configs if c.protocol == "hybrid" and c.method == "svd")
    measured = {shape_key(hybrid): 2.0, shape_key(hybrid, "ns"): 1.0}
    steps = steps_per_epoch(hybrid)
    expected = steps * (hybrid.switch_epoch * 1.0 + (hybrid.epochs - hybrid.switch_epoch) * 2.0)
    assert rehearsed_seconds(hybrid, measured) == pytest.approx(expected)
    assert rehearsed_seconds(hybrid, {}) is None


def test_predicted_hours_and_wall_time_follow_the_measured_steps():
    configs = _configs("demo")
    measured = {shape_key(c): 0.5 for c in configs}
    resources = Resources(cpus_per_trial=1.0, gpus_per_trial=0.0)
    one = predict(configs, measured, resources, Cluster(gpus=0, cpus=1), on_gpu=False)
    five = predict(configs, measured, resources, Cluster(gpus=0, cpus=5), on_gpu=False)
    trial_s = 15 * steps_per_epoch(configs[0]) * 0.5
    assert one["device_hours"] == pytest.approx(len(configs) * trial_s / 3600)
    assert one["wall_hours"] == pytest.approx(one["device_hours"])
    assert five["wall_hours"] == pytest.approx(one["wall_hours"] / 5)
    assert five["concurrency"] == 5 and one["unit"] == "CPU-core-hours"


@pytest.mark.parametrize(
    ("memory", "busy", "per_trial", "packs"),
    [
        (0.1, 0.25, 1.0, 4),  # idle 3/4 of the time, memory for 9: four a GPU
        (0.3, 0.1, 1.0, 3),  # memory for three
        (0.1, 0.25, 0.25, None),  # already packed four
        (0.6, 0.2, 1.0, None),  # one fits
        (0.1, 0.95, 1.0, None),  # busy: nothing to gain
        (None, 0.2, 1.0, None),  # a CPU: nothing measured
    ],
)
def test_packing_is_suggested_when_a_trial_leaves_the_gpu_idle(memory, busy, per_trial, packs):
    advice = packing_advice(memory, busy, per_trial)
    if packs is None:
        assert advice is None
        return
    assert advice.trials_per_gpu == packs and advice.gpus_per_trial == pytest.approx(1 / packs)
    assert 1 < advice.throughput_gain <= packs


def _record(configs, device_type="cuda", step_s=0.1, memory=0.1, busy=0.25):
    shapes = [
        {"shape": key, "step_s": step_s, "memory_fraction": memory, "busy_fraction": busy}
        for key in distinct_shapes(configs)
    ]
    return {"when": "today", "device": "H100", "device_type": device_type, "shapes": shapes,
            "source": "rehearsal of today on H100 (x.json)"}  # fmt: skip


def _caption(table) -> str:
    return str(table.caption)


def test_plan_uses_a_rehearsal_says_which_and_suggests_packing():
    preset = PRESETS["iccv21-gcp-resnet50"]
    configs = _configs(preset.name)
    resources = Resources(cpus_per_trial=8, gpus_per_trial=1)
    table = plan_table(preset, configs, resources, _record(configs))
    caption = _caption(table)
    assert "measured: rehearsal of today on H100 (x.json)" in caption
    hours = sum(rehearsed_seconds(c, {shape_key(c): 0.1}) for c in configs) / 3600
    assert f"{hours:,.2f} GPU-hours" in caption
    assert "--gpus-per-trial 0.25 packs 4 a GPU" in caption
    modelled = _caption(plan_table(preset, configs, resources))
    assert "cost model" in modelled and "packs" not in modelled
    on_cpu = _caption(plan_table(preset, configs, resources, _record(configs, "cpu")))
    assert "not used: it ran on H100, the plan asks for a GPU" in on_cpu


def test_autocast_is_compared_both_ways_with_the_meta_layer_in_its_precision(monkeypatch):
    """`--compare-autocast bf16` on a tiny shape: measured off and under bf16 (no Ray here: the
    function a Ray worker runs), the ratios from the two; inside, the ZCA layer's inverse square
    root sees float64 with autocast off while the backbone runs under it."""
    seen = []

    def spy(p, method, **opts):
        seen.append((p.dtype, torch.is_autocast_enabled("cpu")))
        return inv_sqrtm(p, method, **opts)

    monkeypatch.setattr(metalayer_modules, "inv_sqrtm", spy)
    config = next(c for c in _configs("demo") if c.row == "SVD")
    resources = Resources(cpus_per_trial=1.0)
    off = measure_shape(config, "auto", 1, 0, resources)
    assert off["device_type"] == "cpu" and off["threads"] == 1 and "pid" in off["ran_on"]
    assert seen and set(seen) == {(torch.float64, False)}
    on_config = with_autocast(config, "bf16")
    assert on_config.autocast == "bf16" and on_config.precision == config.precision
    on = measure_shape(on_config, "auto", 1, 0, resources)
    assert on["shape"] == off["shape"] + " bf16" and on["step_s"] > 0
    assert set(seen) == {(torch.float64, False)}  # also under the backbone's bf16 autocast
    saving = autocast_saving(off, on, "bf16")
    assert saving["step_ratio"] == pytest.approx(on["step_s"] / off["step_s"])
    assert 0 <= off["memory_added_mb"] < off["peak_memory_mb"]  # 0: this warm process had it
    if off["memory_added_mb"] > 0 and on["memory_added_mb"] > 0:
        assert saving["memory_ratio"] == pytest.approx(
            on["memory_added_mb"] / off["memory_added_mb"]
        )
    else:  # nothing measurably added: the peaks' ratio
        assert saving["memory_ratio"] == pytest.approx(on["peak_memory_mb"] / off["peak_memory_mb"])
    assert saving["memory_kind"] == "process RSS" and saving["failures_on"] == 0


def test_the_autocast_table_shows_the_measured_ratios():
    saving = {"mode": "bf16", "step_s_off": 2.0, "step_s_on": 3.0, "step_ratio": 1.5,
              "peak_memory_mb_off": 900.0, "peak_memory_mb_on": 880.0, "memory_ratio": 0.8,
              "memory_added_mb_off": 100.0, "memory_added_mb_on": 80.0,
              "memory_kind": "process RSS", "failures_on": 0,
              "nonfinite_grad_steps_on": 0}  # fmt: skip
    record = {"device": "cpu", "device_type": "cpu", "shapes": [{"shape": "s", "autocast": saving}]}
    console = Console(width=200, record=True)
    console.print(autocast_table(record))
    text = console.export_text()
    assert "autocast bf16 against off on cpu" in text and "a CPU" in text
    assert "1.50" in text and "0.80" in text and "added MB bf16" in text
    assert "peak RSS above the process's at its start" in text
