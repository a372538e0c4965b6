"""The studies of both papers as presets: rows, seeds, data, model and recipe (DESIGN §7).

A preset is a `TrialConfig` template (application, model, recipe, options: what every trial of
the study shares) and the axes of its grid (rows, datasets, protocols, precisions, seeds); the
grid makes each trial a copy of the template (`grid.expand`). A recipe's milestones are fractions
of the run, so `--epochs` moves them (epoch = round(f·epochs)).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from typing import Any

from svdablate.errors import UserError
from svdablate.spec.config import RECORDED, TrialConfig

ECCV22_ROWS = (
    "SVD",
    "SVD+SN",
    "SVD+OL",
    "SVD+OW",
    "SVD+NOG",
    "SVD+OLR",
    "SVD+NOG+OW",
    "SVD+NOG+OW+OLR",
    "NS",
    "SVD+NOG+SN",
    "SVD+NOG+OL",
    "SVD+NOG+OLR",
    "SVD+OW+OLR",
)
ICCV21_ROWS = (
    "iSQRT-COV",
    "SVD-Pade",
    "SVD-Taylor",
    "SVD-Newton",
    "SVD-Trunc",
    "SVD-TopN",
    "MPN-COV",
)


def fractions(epochs: int, *milestones: int) -> tuple[float, ...]:
    """A published schedule's milestone epochs as fractions of its run (100/350 → 0.2857…)."""
    return tuple(m / epochs for m in milestones)


def template(**fields: Any) -> TrialConfig:
    """The trial every grid point of a preset copies: the fields its trials share (the names are
    looked up in the registries when the grid validates each trial, not at import)."""
    return TrialConfig.model_validate(fields, context=RECORDED)


@dataclass(frozen=True)
class Preset:
    """One study of a paper: every axis of its grid and the template of each trial."""

    name: str
    reproduces: str
    trial: TrialConfig  # the template: application, model, recipe, options, ow_map
    datasets: tuple[str, ...]
    rows: tuple[str, ...]
    seeds: int
    protocols: tuple[str, ...] = ("standalone",)
    precisions: tuple[str, ...] = ("float64",)
    gpus_per_trial: float = 1.0
    cpus_per_trial: float = 4.0
    hybrid_warmup_epochs: int = 3
    #: each row starts from its own checkpoint (`--checkpoints DIR`, `checkpoints.py`), required
    fine_tunes: bool = False

    def with_changes(self, **changes: Any) -> Preset:
        """Copy of the preset with some fields replaced."""
        return replace(self, **changes)

    @property
    def application(self) -> str:
        return self.trial.application

    @property
    def model(self) -> str:
        return self.trial.model

    @property
    def hybrid(self) -> bool:
        """True when the preset runs the hybrid protocol (ICCV'21 §3.4)."""
        return "hybrid" in self.protocols


def hybrid_switch_epoch(epochs: int, milestone_epochs: list[int], warmup_epochs: int) -> int:
    """ICCV'21 §3.4: switch from NS to the SVD method a few epochs before the last lr decay."""
    last = milestone_epochs[-1] if milestone_epochs else epochs
    return min(max(last - warmup_epochs, 1), max(epochs - 1, 1))


_CIFAR_RECIPE: dict[str, Any] = dict(
    epochs=350, batch_size=128, lr=0.1, weight_decay=5e-4, milestones=fractions(350, 100, 200, 300)
)
#: ICCV'21 main.py clips the gradient norm of all parameters at 5 after every backward
#: (`torch.nn.utils.clip_grad_norm_(model.parameters(), 5)`), whatever the script.
ICCV21_GRAD_CLIP = 5.0
# The ICCV'21 scripts' settings (KingJamesSong/DifferentiableSVD): their lr_params "10 20 30" and
# "30 45 60" decay at each milestone below the epoch count, so the last one never acts.


def _iccv21_imagenet_recipe(
    epochs: int, batch_size: int, weight_decay: float, *milestones: int
) -> dict[str, Any]:
    """An ICCV'21 ImageNet script's recipe: lr 0.0794, ×0.1 at `milestones` (epochs), clipped."""
    return dict(
        epochs=epochs,
        batch_size=batch_size,
        lr=0.0794,
        weight_decay=weight_decay,
        milestones=fractions(epochs, *milestones),
        grad_clip_norm=ICCV21_GRAD_CLIP,
    )


_ALEXNET_RECIPE = _iccv21_imagenet_recipe(30, 128, 5e-4, 10, 20)  # train_alexnet.sh
_RESNET_IMAGENET_RECIPE = _iccv21_imagenet_recipe(60, 256, 1e-4, 30, 45)  # train_resnet.sh
# finetune/finetune.sh (the official script that fine-tunes a GCP network pre-trained on ImageNet,
# its reduction conv and meta-layer included, as ICCV'21 §5.4 describes): lr 1.2e-3, lr_params 100
# over 100 epochs (no decay), batch 10, classifier lr ×5. Its weight_decay=1e-3 is never passed to
# main.py, so main.py's default 1e-4 is what ran.
_FGVC_RECIPE = dict(
    epochs=100,
    batch_size=10,
    lr=1.2e-3,
    weight_decay=1e-4,
    grad_clip_norm=ICCV21_GRAD_CLIP,
    classifier_lr_factor=5.0,
)

PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    """Add a preset to the registry under its name (its trials' `study`)."""
    preset = replace(preset, trial=preset.trial.model_copy(update={"study": preset.name}))
    PRESETS[preset.name] = preset
    return preset


register_preset(
    Preset(
        name="demo",
        reproduces="ECCV'22 decorrelated BN on digits (CPU, minutes)",
        # Chosen from measurements (docs/presets.md, "The demo preset"): 6 epochs showed nothing
        # but noise; at 15 epochs with the decay at 2/3, five seeds resolve the κ claims in about
        # 4 minutes.
        trial=template(
            application="dbn",
            model="convnet",
            epochs=15,
            batch_size=64,
            lr=0.05,
            weight_decay=5e-4,
            milestones=(2 / 3,),
            ow_map="soc",  # as the ECCV'22 presets: the operator the published numbers came from
        ),
        datasets=("digits",),
        rows=("SVD", "SVD+NOG", "SVD+OW", "SVD+NOG+OW+OLR", "NS"),
        seeds=5,
        gpus_per_trial=0.0,
        cpus_per_trial=1.0,
    )
)
for _data in ("cifar10", "cifar100"):
    register_preset(
        Preset(
            name=f"eccv22-dbn-{_data}",
            reproduces=f"ECCV'22 Tables 1-4 ({_data}), Figs. 1-4",
            # ow_map: the operator of the official code the published numbers came from
            trial=template(application="dbn", model="resnet50", ow_map="soc", **_CIFAR_RECIPE),
            datasets=(_data,),
            rows=ECCV22_ROWS,
            seeds=10,
            # The paper's solvers (SVD, NS) and CIFAR-100's own mean/std. The released code's
            # float32 MPA-Lya in every row: --set model_options.solver=mpa-lya and
            # --set precision=float32 (the captions say which ran).
            gpus_per_trial=0.25,
            cpus_per_trial=2.0,
        )
    )


def _gcp_study(
    name: str,
    reproduces: str,
    model: str,
    rows: tuple[str, ...],
    recipe: dict[str, Any],
    ow_map: str = "matrix_exp",
    **fields: Any,
) -> Preset:
    """A global-covariance-pooling study: one seed, a whole GPU and 8 CPUs a trial, ImageNet."""
    fields.setdefault("datasets", ("imagenet",))
    return Preset(
        name=name,
        reproduces=reproduces,
        trial=template(application="gcp", model=model, ow_map=ow_map, **recipe),
        rows=rows,
        seeds=1,
        gpus_per_trial=1.0,
        cpus_per_trial=8.0,
        **fields,
    )


register_preset(
    _gcp_study(
        "eccv22-gcp-imagenet",
        "ECCV'22 Table 5 (failures, top-1/top-5), Fig. 5",
        "resnet18",
        ECCV22_ROWS,
        # the ICCV'21 ResNet GCP recipe, its gradient clipping included: ECCV'22 gives no GCP
        # recipe and released no GCP code; its authors' GCP code (DifferentiableSVD) clips at 5
        _RESNET_IMAGENET_RECIPE,
        ow_map="soc",
    )
)
register_preset(
    _gcp_study(
        "iccv21-gcp-alexnet",
        "ICCV'21 Table 2 (AlexNet, standalone and hybrid)",
        "alexnet",
        ICCV21_ROWS,
        _ALEXNET_RECIPE,
        protocols=("standalone", "hybrid"),
    )
)
register_preset(
    _gcp_study(
        "iccv21-gcp-resnet50",
        "ICCV'21 Table 3 (ResNet-50, standalone and hybrid)",
        "resnet50",
        ICCV21_ROWS,
        _RESNET_IMAGENET_RECIPE,
        protocols=("standalone", "hybrid"),
        # train_resnet.sh's -a resnet50 keeps layer4 at stride 2 (7×7 positions at 224 px, not
        # iSQRT-COV's stride-1 mpncovresnet50): tests/unit/test_official_networks.py
    )
)
register_preset(
    _gcp_study(
        "iccv21-fgvc",
        "ICCV'21 Table 4 (fine-grained: birds, dogs, cars)",
        "resnet50",
        ICCV21_ROWS,  # Table 4 prints SVD-TopN as '/': it cannot converge
        _FGVC_RECIPE,
        datasets=("cub200", "dogs", "cars"),
        # each row from its own iccv21-gcp-resnet50 hybrid model (§5.4): --checkpoints DIR
        fine_tunes=True,
    )
)
register_preset(
    _gcp_study(
        "iccv21-precision",
        "ICCV'21 Fig. 2 (float32 vs float64)",
        "alexnet",
        ("MPN-COV", "iSQRT-COV"),
        _ALEXNET_RECIPE,
        precisions=("float32", "float64"),
    )
)


def get_preset(name: str) -> Preset:
    """The preset called `name`; UserError naming the valid presets otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(
            f"unknown preset {name!r}{hint}; valid presets: {', '.join(sorted(PRESETS))}"
        ) from None
