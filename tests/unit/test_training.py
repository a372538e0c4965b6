"""A trial's recipe in code (`svdablate.training.update`): gradient clipping, its order with NOG and
OLR, the classifier's lr factor, and which presets clip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from svdablate.models import build_model
from svdablate.spec.config import TrialConfig
from svdablate.spec.presets import PRESETS
from svdablate.study.plan import StudyPlan
from svdablate.training.update import apply_update, make_optimizer
from svdablate.treatments import attach_treatments


def _config(row: str = "SVD", **changes: object) -> TrialConfig:
    config = next(
        c for c in StudyPlan.create(preset="demo", seeds=1, check=False).configs if c.row == row
    )
    return config.model_validate({**config.model_dump(), **changes})


def _step_parts(config: TrialConfig):
    """The trial's network, treatments and optimizer, and one batch's backward done."""
    torch.manual_seed(0)
    model = build_model(
        config.model,
        application=config.application,
        num_classes=10,
        in_channels=1,
        image_size=8,
        method=config.method,
        options=config.model_options,
    )
    treatments = attach_treatments(model.pre_svd_layer, config.treatments, ow_map="matrix_exp")
    optimizer, _ = make_optimizer(model, treatments, config)
    model.train()
    g = torch.Generator().manual_seed(1)
    images, labels = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    F.cross_entropy(model(images), labels).backward()
    return model, treatments, optimizer


@pytest.mark.parametrize("clip", [None, 1e-2])
def test_a_step_moves_every_weight_by_the_clipped_gradient(clip: float | None) -> None:
    """ICCV'21 main.py: `clip_grad_norm_(model.parameters(), 5)` after backward, then SGD's step
    (momentum's first step is the gradient itself): w ← w − lr (c·g + wd·w), c = min(1, 5/‖g‖)."""
    config = _config(grad_clip_norm=clip)
    model, treatments, optimizer = _step_parts(config)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    total = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads.values()])))
    assert clip is None or total > 10 * clip, "the gradient must be large enough to be clipped"
    update = apply_update(model, treatments, optimizer, config)
    scale = 1.0 if clip is None else clip / (total + 1e-6)
    norm = None if update.grad_norm is None else float(update.grad_norm)
    assert norm == (None if clip is None else pytest.approx(total, rel=1e-6))
    for name, p in model.named_parameters():
        w = before[name]
        expected = w - config.lr * (scale * grads[name] + config.weight_decay * w)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7, msg=name)


def test_clipping_comes_before_nog_so_the_pre_svd_gradient_stays_orthogonal() -> None:
    """Clip the raw gradients (main.py's place, right after backward), then NOG: the Pre-SVD
    gradient the step uses is UVᵀ (singular values 1), whatever the clipping did to G."""
    config = _config("SVD+NOG", grad_clip_norm=1e-3)
    model, treatments, optimizer = _step_parts(config)
    raw = treatments.weight_parameter().grad.detach().clone()
    update = apply_update(model, treatments, optimizer, config)
    expected = float(raw.norm()) * 1e-3 / float(update.grad_norm)
    assert float(update.pre_svd_grad_norm) == pytest.approx(expected)
    stepped = treatments.weight_parameter().grad.reshape(raw.shape[0], -1)
    torch.testing.assert_close(
        torch.linalg.svdvals(stepped), torch.ones(min(stepped.shape)), rtol=1e-5, atol=1e-5
    )


def test_the_classifier_runs_at_lr_times_its_factor_through_the_schedule() -> None:
    config = _config(classifier_lr_factor=5.0, milestones=(0.5,), epochs=2)
    model, treatments, optimizer = _step_parts(config)
    _, scheduler = make_optimizer(model, treatments, config)
    optimizer = scheduler.optimizer
    optimizer.step()  # one epoch's steps, then the scheduler's epoch step
    head = {id(p) for p in model.classifier.parameters()}
    pre = {id(p) for p in treatments.parameters()}
    groups = optimizer.param_groups
    assert {id(p) for p in groups[2]["params"]} == head and {
        id(p) for p in groups[1]["params"]
    } == pre
    assert len(groups[0]["params"]) + len(head) + len(pre) == len(list(model.parameters()))
    assert [g["lr"] for g in groups] == pytest.approx([0.05, 0.05, 0.25])
    scheduler.step()  # the milestone: every group decays, the ratio stays
    assert [g["lr"] for g in groups] == pytest.approx([0.005, 0.005, 0.025])
    assert all(g["weight_decay"] == config.weight_decay for g in groups)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_gcp_preset_clips_at_5_as_iccv21_main_py_and_the_dbn_presets_do_not(
    name: str,
) -> None:
    """ICCV'21 main.py clips every step at 5 (its GCP code; ECCV'22's GCP preset borrows that
    recipe whole); the ECCV'22 decorrelated-BN scripts never clip."""
    configs = StudyPlan.create(preset=name, smoke=True, check=False).configs
    expected = 5.0 if PRESETS[name].application == "gcp" else None
    assert {c.grad_clip_norm for c in configs} == {expected}
