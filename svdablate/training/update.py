"""A trial's recipe in code: the optimizer's parameter groups, and what a step does after backward.

`train_trial` loops over these, and the equivalence tests run them against the official scripts.

Parameter groups (SGD with the config's momentum and weight decay on every group, as ICCV'21
``main.py``, whose groups are features / representation / classifier):

0. every parameter but the two below, at ``lr``;
1. the Pre-SVD layer's (``PreSVDTreatments.parameters()``), at ``lr``: its own group because OLR
   sets its lr every step (found by identity, DESIGN §4);
2. the classifier's (``SVDNet.classifier``), at ``lr × classifier_lr_factor`` (``main.py``'s
   ``--classifier-factor``: 1 for ImageNet, 5 in ``finetune/finetune.sh``).

After backward, ``apply_update`` does, in this order:

1. clip the 2-norm of every parameter's gradient to ``grad_clip_norm``
   (``torch.nn.utils.clip_grad_norm_(model.parameters(), 5)`` right after ``loss.backward()``
   in ICCV'21 ``main.py``: on the raw gradients, before anything rewrites one);
2. NOG rewrites the Pre-SVD gradient (ECCV'22 ``main_cifar100.py`` does it after backward, before
   the step). Its UVᵀ does not depend on the gradient's scale, so clipping does not change it;
3. OLR sets the Pre-SVD group's lr from that gradient (η* scales as 1/‖l‖: a clipped gradient
   without NOG gets a proportionally larger η*, capped at the base lr as always);
4. the optimizer's step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from svdablate.models import SVDNet
from svdablate.treatments.handle import PreSVDTreatments

if TYPE_CHECKING:  # the GPU benchmark imports this module without pydantic
    from svdablate.spec.config import TrialConfig

#: The order of `make_optimizer`'s parameter groups.
GROUPS = ("network", "pre_svd", "classifier")


def parameter_groups(
    model: SVDNet, treatments: PreSVDTreatments, config: TrialConfig
) -> list[dict]:
    """The optimizer's groups (module docstring), each parameter in exactly one."""
    pre_svd = treatments.parameters()
    pre_ids = {id(p) for p in pre_svd}
    classifier = [p for p in model.classifier.parameters() if id(p) not in pre_ids]
    taken = pre_ids | {id(p) for p in classifier}
    network = [p for p in model.parameters() if id(p) not in taken]
    return [
        {"params": network, "lr": config.lr},
        {"params": pre_svd, "lr": config.lr},
        {"params": classifier, "lr": config.lr * config.classifier_lr_factor},
    ]


def make_optimizer(
    model: SVDNet, treatments: PreSVDTreatments, config: TrialConfig
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.MultiStepLR]:
    """SGD over `parameter_groups` and the step decay at the config's milestone epochs (every
    group's lr is multiplied by ``gamma`` there, as ``main.py``'s ``adjust_learning_rate``)."""
    optimizer = torch.optim.SGD(
        parameter_groups(model, treatments, config),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.milestone_epochs, gamma=config.gamma
    )
    return optimizer, scheduler


@dataclass(frozen=True)
class Update:
    """What `apply_update` saw: the total gradient norm before clipping (None without clipping),
    the Pre-SVD gradient's norm as the step uses it (after clipping, before NOG) and its lr.

    The norms are 0-d tensors on the device: the loop sums them there and reads the sums once an
    epoch (a host read per step would synchronise the device every step)."""

    grad_norm: torch.Tensor | None
    pre_svd_grad_norm: torch.Tensor | None
    pre_svd_lr: float


def clip_gradients(model: nn.Module, max_norm: float | None) -> torch.Tensor | None:
    """Clip every parameter's gradient to a total 2-norm of `max_norm` (torch's
    ``clip_grad_norm_``, as ICCV'21 ``main.py``); returns the norm before clipping (0-d tensor)."""
    if max_norm is None:
        return None
    return torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm).detach()


def apply_update(
    model: SVDNet,
    treatments: PreSVDTreatments,
    optimizer: torch.optim.Optimizer,
    config: TrialConfig,
    *,
    step: Callable[[torch.optim.Optimizer], object] | None = None,
) -> Update:
    """Everything between a step's backward and the next step's forward (module docstring).

    `step(optimizer)` replaces ``optimizer.step()`` (fp16 autocast's ``GradScaler.step``, which
    skips a step whose gradients overflowed)."""
    grad_norm = clip_gradients(model, config.grad_clip_norm)
    treatments.after_backward()
    lr = treatments.set_learning_rate(optimizer, optimizer.param_groups[0]["lr"])
    if step is None:
        optimizer.step()
    else:
        step(optimizer)
    return Update(grad_norm, treatments.last_grad_norm, lr)
