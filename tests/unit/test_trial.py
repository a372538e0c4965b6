"""The plain trial loop (no Ray): telemetry, checkpoint/resume, divergence, solver failures."""

import json
import math

import pytest
import torch

from svdablate.metalayers import MetaLayerFailure
from svdablate.study.plan import StudyPlan
from svdablate.training import loop as trial_module
from svdablate.training import step as step_module
from svdablate.training.faults import FAULTS_ENV
from svdablate.training.loop import save_state, train_trial


def _config(row="SVD+NOG+OW+OLR", epochs=2, **extra):
    config = next(
        c for c in StudyPlan.create(preset="demo", seeds=1, check=False).configs if c.row == row
    )
    changes = {"epochs": epochs, "max_steps_per_epoch": 4, "kappa_every": 2, **extra}
    return config.model_validate({**config.model_dump(), **changes})


class Recorder:
    def __init__(self):
        self.metrics, self.states = [], []

    def __call__(self, metrics, state):
        self.metrics.append(metrics)
        self.states.append(state)


def test_trial_reports_every_epoch_with_the_telemetry_of_design_6():
    rec = Recorder()
    result = train_trial(_config(), rec)
    assert result["status"] == "finished"
    assert [m["epoch"] for m in rec.metrics] == [0, 1]
    for m in rec.metrics:
        for key in (
            "train_loss",
            "val_err",
            "val_err5",
            "best_val_err",
            "kappa_median",
            "kappa_max",
            "lambda_ratio",
            "failures",
            "failures_total",
            "pre_svd_grad_norm",
            "pre_svd_lr",
            "epoch_seconds",
            "diverged",
        ):
            assert key in m, key
        assert 0 <= m["val_err"] <= 100 and m["kappa_median"] >= 1 and m["diverged"] == 0
    assert rec.metrics[1]["best_val_err"] == min(m["val_err"] for m in rec.metrics)


def test_olr_row_sets_a_pre_svd_lr_at_most_the_base_lr():
    rec = Recorder()
    train_trial(_config(), rec)
    assert all(0 < m["pre_svd_lr"] <= 0.05 + 1e-12 for m in rec.metrics)


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    straight = Recorder()
    train_trial(_config("SVD+NOG"), straight)
    first = Recorder()
    train_trial(_config("SVD+NOG", epochs=1), first)
    save_state(first.states[-1], tmp_path)
    resumed = Recorder()
    train_trial(_config("SVD+NOG"), resumed, str(tmp_path))
    assert [m["epoch"] for m in resumed.metrics] == [1]
    assert resumed.metrics[0]["val_err"] == pytest.approx(straight.metrics[1]["val_err"])
    assert resumed.metrics[0]["train_loss"] == pytest.approx(straight.metrics[1]["train_loss"])


def test_non_finite_loss_stops_the_trial_as_diverged_without_raising(monkeypatch):
    monkeypatch.setenv(FAULTS_ENV, json.dumps({"nan_at_epoch": 1}))
    rec = Recorder()
    result = train_trial(_config("SVD"), rec)
    assert result["status"] == "diverged"
    assert rec.metrics[-1]["diverged"] == 1 and rec.states[-1] is None
    assert len(rec.metrics) == 2


def test_solver_failures_are_counted_and_skip_the_update(monkeypatch):
    real_build = step_module.build_model
    calls = {"n": 0}

    def flaky_build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        inner = model.metalayer.forward

        def forward(x):
            calls["n"] += 1
            if model.training and calls["n"] % 2 == 0:
                raise MetaLayerFailure("injected")
            return inner(x)

        model.metalayer.forward = forward
        return model

    monkeypatch.setattr(step_module, "build_model", flaky_build)
    rec = Recorder()
    result = train_trial(_config("SVD", epochs=1), rec)
    assert result["status"] == "finished"
    assert rec.metrics[0]["failures"] == 2 and rec.metrics[0]["failures_total"] == 2
    assert math.isfinite(rec.metrics[0]["train_loss"])


def test_hybrid_protocol_trains_ns_before_the_switch():
    rec = Recorder()
    train_trial(_config("SVD", epochs=2, switch_epoch=1, protocol="hybrid"), rec)
    assert [m["method_used"] for m in rec.metrics] == ["ns", "svd"]


def test_a_clipping_recipe_reports_the_gradient_norm_before_clipping():
    rec = Recorder()
    train_trial(_config("SVD", epochs=1, grad_clip_norm=1e-3), rec)
    metrics = rec.metrics[0]
    assert metrics["grad_norm"] > 1e-3  # all gradients, before clipping
    assert 0 < metrics["pre_svd_grad_norm"] <= 1e-3  # the Pre-SVD part of the clipped gradient
    plain = Recorder()
    train_trial(_config("SVD", epochs=1), plain)
    assert "grad_norm" not in plain.metrics[0]
    assert plain.metrics[0]["pre_svd_grad_norm"] > 1e-3


def test_device_auto_is_cpu_without_cuda():
    if not torch.cuda.is_available():
        assert trial_module.resolve_device("auto").type == "cpu"


def test_init_checkpoint_loads_the_backbone_and_skips_a_mismatched_head(tmp_path):
    first = Recorder()
    train_trial(_config("SVD", epochs=1), first)
    save_state(first.states[-1], tmp_path)
    from svdablate.models import build_model

    model = build_model(
        "convnet", application="dbn", num_classes=7, in_channels=1, image_size=8, method="svd"
    )
    skipped = trial_module.load_pretrained(model, str(tmp_path / "state.pt"))
    assert skipped and all("weight" in k or "bias" in k for k in skipped)
    assert "body.conv1.weight" not in skipped
    assert torch.equal(
        model.state_dict()["body.conv1.weight"], first.states[-1]["model"]["body.conv1.weight"]
    )


def test_ow_as_skew_orthogonal_convolution_replaces_the_pre_svd_conv(monkeypatch):
    from svdablate.treatments.soc import SkewOrthogonalConv2d

    built = {}
    real_build = step_module.build_model

    def keep(*args, **kwargs):
        built["model"] = real_build(*args, **kwargs)
        return built["model"]

    monkeypatch.setattr(step_module, "build_model", keep)
    rec = Recorder()
    train_trial(_config("SVD+NOG+OW+OLR", epochs=1, ow_map="soc"), rec)
    layer = built["model"].pre_svd_layer
    assert isinstance(layer, SkewOrthogonalConv2d)
    assert layer.kernel.grad is not None, "the installed layer is the one that trained"
    assert 0 < rec.metrics[0]["pre_svd_lr"] <= 0.05 + 1e-12


def test_checkpoint_policy_every_t_seconds_and_always_after_the_last_epoch():
    from svdablate.runtime.tune_runner import checkpoint_due

    config = _config("SVD", epochs=5, checkpoint_every_s=30.0)
    assert not checkpoint_due(config, {"epoch": 1}, since_last_s=29.0)
    assert checkpoint_due(config, {"epoch": 1}, since_last_s=30.0)
    assert checkpoint_due(config, {"epoch": 4}, since_last_s=0.1)  # the last epoch
    every = _config("SVD", epochs=5, checkpoint_every_s=0.0)
    assert checkpoint_due(every, {"epoch": 0}, since_last_s=0.0)
