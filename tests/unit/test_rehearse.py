"""`svdablate rehearse` and `plan` reading it: measured steps, predictions, packing advice."""

from __future__ import annotations

import json
import math

import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from svdablate.cli import app
from svdablate.spec.config import Resources
from svdablate.spec.cost import (
    load_rehearsal,
    packing_advice,
    plan_table,
    rehearsed_seconds,
    shape_key,
    steps_per_epoch,
)
from svdablate.spec.presets import PRESETS
from svdablate.study.plan import StudyPlan
from svdablate.study.rehearsal import Cluster, distinct_shapes, predict
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


def test_rehearse_command_records_for_plan_and_mlflow(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    result = runner.invoke(app, ["rehearse", "--preset", "demo", "--rows", "SVD", "--steps", "1",
                                 "--warmup", "0", "--cpus", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "rehearsal of demo on cpu" in result.output and "CPU-core-hours" in result.output
    record = load_rehearsal(tmp_path / "results", "demo")
    assert record is not None and len(record["shapes"]) == 1 and record["trials"] == 5
    assert record["concurrency"] == 2 and math.isfinite(record["device_hours"])
    client = MlflowClient(f"sqlite:///{tmp_path}/results/mlflow.db")
    experiment = client.get_experiment_by_name("svdablate-rehearsal")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2  # the rehearsal and its one shape
    child = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert child.data.metrics["step_s"] == pytest.approx(record["shapes"][0]["step_s"])
    planned = runner.invoke(app, ["plan", "--preset", "demo"])
    assert planned.exit_code == 0 and "measured: rehearsal of" in planned.output
    assert json.loads((tmp_path / "results/rehearsals/demo.json").read_text())["preset"] == "demo"
