"""The studies of both papers as presets: rows, seeds, data, model and recipe (DESIGN §7)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

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


@dataclass(frozen=True)
class Recipe:
    """Optimiser and schedule of a study: SGD with momentum, step decay at milestones."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1


@dataclass(frozen=True)
class Preset:
    """One study of a paper: every axis of its grid and the recipe of each trial."""

    name: str
    reproduces: str
    application: str
    model: str
    datasets: tuple[str, ...]
    rows: tuple[str, ...]
    seeds: int
    recipe: Recipe
    protocols: tuple[str, ...] = ("standalone",)
    precisions: tuple[str, ...] = ("float64",)
    switch_epoch: int | None = None
    gpus_per_trial: float = 1.0
    cpus_per_trial: float = 4.0
    model_options: dict[str, Any] = field(default_factory=dict)
    extra_rows: tuple[str, ...] = ()
    notes: str = ""

    def with_overrides(self, **changes: Any) -> Preset:
        """Copy of the preset with some fields replaced."""
        return replace(self, **changes)

    def with_recipe(self, **changes: Any) -> Preset:
        """Copy of the preset with some recipe fields replaced."""
        return replace(self, recipe=replace(self.recipe, **changes))


def _hybrid_switch(recipe: Recipe, warmup_epochs: int = 3) -> int:
    """ICCV'21 §3.4: switch from NS to SVD a few epochs before the last lr decay."""
    return max(recipe.milestones[-1] - warmup_epochs, 1)


_CIFAR_RECIPE = Recipe(
    epochs=350, batch_size=128, lr=0.1, weight_decay=5e-4, milestones=(100, 200, 300)
)
_ALEXNET_RECIPE = Recipe(
    epochs=30, batch_size=128, lr=0.0794, weight_decay=5e-4, milestones=(10, 20)
)
_RESNET_IMAGENET_RECIPE = Recipe(
    epochs=60, batch_size=256, lr=0.0794, weight_decay=1e-4, milestones=(30, 45)
)
_FGVC_RECIPE = Recipe(epochs=100, batch_size=10, lr=1.2e-3, weight_decay=1e-4, milestones=(50, 80))

PRESETS: dict[str, Preset] = {}


def register_preset(preset: Preset) -> Preset:
    """Add a preset to the registry under its name."""
    PRESETS[preset.name] = preset
    return preset


register_preset(
    Preset(
        name="demo",
        reproduces="ECCV'22 decorrelated BN on digits (CPU, minutes)",
        application="dbn",
        model="convnet",
        datasets=("digits",),
        rows=("SVD", "SVD+NOG", "SVD+OW", "SVD+NOG+OW+OLR", "NS"),
        seeds=3,
        recipe=Recipe(epochs=6, batch_size=64, lr=0.05, weight_decay=5e-4, milestones=(4,)),
        gpus_per_trial=0.0,
        cpus_per_trial=1.0,
    )
)
for _data in ("cifar10", "cifar100"):
    register_preset(
        Preset(
            name=f"eccv22-dbn-{_data}",
            reproduces=f"ECCV'22 Tables 1-4 ({_data}), Figs. 1-4",
            application="dbn",
            model="resnet50",
            datasets=(_data,),
            rows=ECCV22_ROWS,
            seeds=10,
            recipe=_CIFAR_RECIPE,
            gpus_per_trial=0.25,
            cpus_per_trial=2.0,
        )
    )


def _gcp_study(
    name: str, reproduces: str, model: str, rows: tuple[str, ...], recipe: Recipe, **fields: Any
) -> Preset:
    """A global-covariance-pooling study: one seed, a whole GPU and 8 CPUs a trial, ImageNet."""
    fields.setdefault("datasets", ("imagenet",))
    return Preset(
        name=name,
        reproduces=reproduces,
        application="gcp",
        model=model,
        rows=rows,
        seeds=1,
        recipe=recipe,
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
        _RESNET_IMAGENET_RECIPE,
        notes="recipe of the ICCV'21 ResNet GCP runs (the ECCV'22 text gives none)",
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
        switch_epoch=_hybrid_switch(_ALEXNET_RECIPE),
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
        switch_epoch=_hybrid_switch(_RESNET_IMAGENET_RECIPE),
        model_options={"layer4_stride1": True},
    )
)
register_preset(
    _gcp_study(
        "iccv21-fgvc",
        "ICCV'21 Table 4 (fine-grained: birds, dogs, cars)",
        "resnet50",
        ICCV21_ROWS,
        _FGVC_RECIPE,
        datasets=("cub200", "dogs", "cars"),
        model_options={"layer4_stride1": True},
        notes="fine-tunes from --set init_checkpoint=PATH (an iccv21-gcp-resnet50 hybrid "
        "checkpoint); recipe follows iSQRT-COV's FGVC setting (the ICCV'21 appendix is not in "
        "the spec)",
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
    """The preset called `name`; ValueError naming the valid presets otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}"
        ) from None
