"""`TrialConfig`: the one typed description of a trial, validated once (before Ray starts).

Every field has its type, unit, allowed range and default here, and nowhere else: the grid builds
trial configs from a preset and the user's `--set key=value`, MLflow records them as params under
these names, and `train_trial` reads them. The config hash is taken over the canonical typed
config (identity fields only: where and how a trial runs does not change what it computes).

`--set` parses a value by its field's type (`lr=0.1`, `milestones=[0.5,0.75]`,
`model_options.groups=4` or `model_options={"groups": 4}`: `overrides.py`); `svdablate fields`
and docs/config.md's table describe every field from here (`field_reference.py`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from svdablate.errors import UserError
from svdablate.spec.fields import RECORDED, config_field, is_recorded, one_of
from svdablate.spec.model_options import ModelOptions

__all__ = ["RECORDED", "ModelOptions", "Resources", "StudySpec", "TrialConfig", "validated"]

Fraction = Annotated[float, Field(gt=0, le=1)]


class TrialConfig(BaseModel):
    """One trial of a study: the row, the seed, the data, the model and the recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # what the trial is (set by the grid: --preset, --rows, --seeds, --smoke)
    study: str = config_field("demo", "preset the trial belongs to", settable=False)
    row: str = config_field(
        "SVD", "table row: meta-layer + treatments, e.g. SVD+NOG+OW", settable=False
    )
    method: str = config_field("svd", "canonical meta-layer method of the row", settable=False)
    treatments: tuple[str, ...] = config_field(
        (), "treatments of the row, canonical order", settable=False
    )
    seed: int = config_field(0, "random seed (weights, batch order)", ge=0, settable=False)
    protocol: Literal["standalone", "hybrid"] = config_field(
        "standalone",
        "hybrid: Newton–Schulz until switch_epoch, then the row's method (ICCV'21 §3.4)",
    )
    smoke: bool = config_field(False, "FakeData stand-in for the dataset (--smoke)", settable=False)
    fake_like: str | None = config_field(
        None, "the dataset FakeData mimics under --smoke", settable=False
    )
    # data, model, meta-layer
    application: Literal["dbn", "gcp"] = config_field(
        "dbn", "dbn: ZCA whitening (decorrelated BN); gcp: global covariance pooling"
    )
    model: str = config_field("convnet", "network: convnet, resnet18, resnet50, resnet101, alexnet")
    dataset: str = config_field(
        "digits", "digits, cifar10, cifar100, imagenet, cub200, dogs, cars, fake"
    )
    precision: Literal["float32", "float64"] = config_field(
        "float64", "dtype the covariance and the matrix function run in"
    )
    normalization: Literal["dataset", "cifar10", "cifar100"] = config_field(
        "dataset",
        "CIFAR inputs' mean/std: the dataset's own, or another CIFAR's (the official ECCV'22 "
        "CIFAR-100 script uses cifar10's)",
    )
    autocast: Literal["off", "bf16", "fp16"] = config_field(
        "off",
        "mixed precision of the backbone (torch.autocast; fp16 with a GradScaler); the "
        "meta-layer and its covariance keep `precision`. Off in the paper presets",
        hash_default=False,
    )
    model_options: ModelOptions = config_field(ModelOptions(), "network and meta-layer options")
    init_checkpoint: str | None = config_field(
        None,
        "the row's own checkpoint it fine-tunes from (set from --checkpoints DIR)",
        settable=False,
    )
    # recipe
    epochs: int = config_field(6, "training epochs", unit="epochs", ge=1)
    batch_size: int = config_field(64, "images per step", unit="images", ge=1)
    lr: float = config_field(0.05, "base learning rate of SGD", gt=0)
    momentum: float = config_field(0.9, "SGD momentum", ge=0, lt=1)
    weight_decay: float = config_field(5e-4, "SGD weight decay", ge=0)
    milestones: tuple[Fraction, ...] = config_field(
        (), "lr decays at these fractions of the run (epoch = round(f·epochs))", unit="of epochs"
    )
    gamma: float = config_field(0.1, "lr factor at each milestone", gt=0, le=1)
    classifier_lr_factor: float = config_field(
        1.0,
        "the classifier's lr is lr × this (ICCV'21 main.py --classifier-factor; FGVC: 5)",
        gt=0,
    )
    grad_clip_norm: float | None = config_field(
        None,
        "clip the 2-norm of all gradients to this after backward, before NOG/OLR and the step "
        "(ICCV'21 main.py: 5); null: no clipping",
        gt=0,
    )
    switch_epoch: int | None = config_field(
        None, "hybrid: first epoch of the row's method (set from the recipe)", unit="epoch", ge=1
    )
    # treatments
    ol_weight: float = config_field(1e-2, "OL: λ of λ‖WWᵀ − I‖_F (eq. 12)", ge=0)
    ow_map: str = config_field(
        "matrix_exp",
        "OW operator: matrix_exp or cayley of the weight matrix, soc (Skew Orthogonal Conv)",
    )
    # telemetry and limits
    kappa_every: int = config_field(10, "sample κ every this many steps", unit="steps", ge=1)
    max_steps_per_epoch: int | None = config_field(
        None, "stop each epoch after this many steps (smoke runs)", unit="steps", ge=1
    )
    # where and how it runs: not part of the config hash
    checkpoint_every_s: float = config_field(
        60.0,
        "checkpoint a trial at most this often, and after its last epoch (0: every epoch)",
        unit="s",
        identity=False,
        ge=0,
    )
    data_dir: str | None = config_field(None, "dataset root", identity=False, settable=False)
    download: bool = config_field(
        False, "download CIFAR if missing", identity=False, settable=False
    )
    device: str = config_field(
        "auto", "auto (the GPU Ray gives, else CPU), cpu, cuda", identity=False
    )
    num_workers: int | None = config_field(
        None,
        "DataLoader workers (unset: the trial's CPUs on a GPU, none on a CPU; CIFAR needs none: "
        "it is augmented on the device)",
        identity=False,
        ge=0,
    )
    eigh_device: Literal["auto", "same", "cpu"] = config_field(
        "auto",
        "where the eigendecomposition runs: auto (the faster, measured at the trial's batch, "
        "size and dtype on its hardware; recorded in the run), same (where P is) or cpu",
        identity=False,
    )

    # ---- validation across fields -----------------------------------------------------------
    @field_validator("model", "dataset", "fake_like", "ow_map")
    @classmethod
    def _known_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or is_recorded(info):
            return value
        field = str(info.field_name)
        return one_of(value, _registered(field), "dataset" if field == "fake_like" else field)

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if list(value) != sorted(set(value)):
            raise ValueError("milestones must be strictly increasing fractions in (0, 1]")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrialConfig:
        if self.switch_epoch is not None and self.switch_epoch >= self.epochs:
            raise ValueError(
                f"switch_epoch {self.switch_epoch} must be before the last epoch ({self.epochs})"
            )
        if self.protocol == "hybrid" and self.switch_epoch is None:
            raise ValueError("the hybrid protocol needs a switch_epoch")
        data = self.fake_like or self.dataset
        if self.normalization != "dataset" and data not in ("cifar10", "cifar100"):
            raise ValueError(
                f"normalization {self.normalization!r} applies to CIFAR only; {data} keeps its "
                "own constants: drop --set normalization"
            )
        return self

    # ---- derived ----------------------------------------------------------------------------
    @property
    def milestone_epochs(self) -> list[int]:
        """The epochs at which the lr decays: round(fraction · epochs), each at least 1."""
        return sorted({max(1, round(f * self.epochs)) for f in self.milestones})

    @property
    def config_hash(self) -> str:
        """Short stable hash of everything that affects the result, except the seed."""
        identity = {
            name: value
            for name, value in self.model_dump(mode="json").items()
            if field_meta(name).get("identity", True)
            and name != "seed"
            and (field_meta(name).get("hash_default", True) or value != _default(name))
        }
        blob = json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def trial_id(self) -> str:
        """Deterministic trial name: a trial keeps it across resume and extend."""
        parts = [self.row, self.dataset, self.protocol, self.precision]
        slug = "_".join(p.replace("+", "-").replace(" ", "") for p in parts)
        return f"{slug}_s{self.seed}_{self.config_hash[:6]}"

    @property
    def data_key(self) -> tuple[Any, ...]:
        """Trials with the same key see the same data."""
        return (self.dataset, self.data_dir, self.fake_like, self.smoke, self.normalization)

    @property
    def data_args(self) -> dict[str, Any]:
        """The keyword arguments of `data.build_datasets` for this trial's data."""
        return {
            "name": self.dataset,
            "data_dir": self.data_dir,
            "download": self.download,
            "smoke": self.smoke,
            "like": self.fake_like,
            "normalization": self.normalization,
        }

    @property
    def reported_dataset(self) -> str:
        """The dataset the trial stands for (the real one under --smoke)."""
        return self.fake_like or self.dataset

    def as_params(self) -> dict[str, str]:
        """Flat `a.b` keys with string values: the MLflow params of the trial."""
        return _flatten(self.model_dump(mode="json", exclude_none=True))


def _registered(field: str) -> Iterable[str]:
    """The valid values of a field that names a registry's entry (imported on first check)."""
    if field == "model":
        from svdablate.models import MODELS

        return MODELS
    if field == "ow_map":
        from svdablate.treatments import OW_MAPS

        return OW_MAPS
    from svdablate.data.datasets import DATASETS

    return DATASETS


def field_meta(name: str) -> dict[str, Any]:
    info = TrialConfig.model_fields.get(name)
    return dict(info.json_schema_extra or {}) if info is not None else {}  # type: ignore[arg-type]


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
    return flat


# --------------------------------------------------------------------------- a study


class Resources(BaseModel):
    """What each trial asks of the cluster, how many run at once, how often a crash is retried."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs per trial (also torch's threads)")
    gpus_per_trial: float = Field(0.0, ge=0, description="GPUs per trial; 0.25 packs four")
    max_concurrent: int | None = Field(None, ge=1, description="at most this many trials at once")
    max_failures: int = Field(2, ge=0, description="retries of a crashed trial from its checkpoint")

    @field_validator("gpus_per_trial")
    @classmethod
    def _whole_above_one(cls, value: float) -> float:
        if value > 1 and not float(value).is_integer():
            raise ValueError("more than one GPU per trial must be a whole number (Ray's rule)")
        return value


class StudySpec(BaseModel):
    """What to run: a preset and the user's changes to its axes and recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str = Field("demo", description="preset name")
    seeds: int | None = Field(None, ge=1, description="seeds per row (default: the preset's)")
    rows: tuple[str, ...] | None = Field(None, description="rows to run (default: the preset's)")
    smoke: bool = Field(False, description="every trial on FakeData, 2 steps an epoch, on CPU")
    data_dir: str | None = Field(None, description="dataset root")
    download: bool = Field(False, description="download CIFAR where the network allows")
    seed_offset: int = Field(0, ge=0, description="first seed")
    checkpoints: str | None = Field(
        None, description="folder of the rows' own starting checkpoints, one file per row"
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="the trial fields changed (--set, and --epochs)"
    )

    @model_validator(mode="before")
    @classmethod
    def _epochs_as_override(cls, values: Any) -> Any:
        """A manifest written before `--epochs` became an override records it as its own key."""
        if isinstance(values, dict) and "epochs" in values:
            values = dict(values)
            epochs = values.pop("epochs")
            if epochs is not None:
                values["overrides"] = {"epochs": epochs, **(values.get("overrides") or {})}
        return values

    @field_validator("rows")
    @classmethod
    def _some_rows(cls, rows: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if rows is not None and not [r for r in rows if r.strip()]:
            raise ValueError("no row given: name at least one, e.g. --rows SVD,SVD+NOG")
        return None if rows is None else tuple(r.strip() for r in rows if r.strip())


def validated(model: type[BaseModel], **values: Any) -> Any:
    """`model(**values)` with a validation error turned into one UserError line."""
    try:
        return model(**values)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
        flag = "--" + key.replace("_", "-") if key else "input"
        given = json.dumps(error.get("input"), default=str)
        raise UserError(f"{flag} {given}: {message}") from None


def _default(name: str) -> Any:
    """A field's default as `model_dump(mode="json")` writes it."""
    return TrialConfig.model_fields[name].default
