"""`ModelOptions`: the network's and its meta-layer's options, and the only place their defaults
live. A trial config keeps an unset option as None (what its config hash covers); a builder is
handed `options.for_model(name)`, every option set."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from svdablate.spec.fields import config_field, is_recorded


class ModelOptions(BaseModel):
    """Options of the network and its meta-layer; unset (None) means the model's own default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    groups: int | None = config_field(
        None, "dbn: whiten the channels in this many groups", ge=1, model_default=1
    )
    eps: float | None = config_field(
        None, "dbn: ridge ε of P + εI (default 1e-2)", gt=0, model_default=1e-2
    )
    momentum: float | None = config_field(
        None,
        "dbn: momentum of the running mean and running S (default 0.1)",
        gt=0,
        le=1,
        model_default=0.1,
    )
    reduction_dim: int | None = config_field(
        None,
        "gcp: channels of the 1×1 Pre-SVD conv (default 256; convnet 32)",
        ge=1,
        model_default=256,
        per_model={"convnet": 32},
    )
    layer4_stride1: bool | None = config_field(
        None, "gcp, resnets: keep layer4 at stride 1", model_default=False
    )
    alexnet_bn: bool | None = config_field(
        None, "alexnet: BN after each conv (default true)", model_default=True
    )
    width: int | None = config_field(
        None, "convnet: stem channels (default 16)", ge=1, model_default=16
    )
    stem_kernel: int | None = config_field(
        None, "convnet: stem kernel size (default 5)", ge=1, model_default=5
    )
    metalayer_opts: dict[str, Any] | None = config_field(
        None, "options of sqrtm/inv_sqrtm (e.g. keep, degree, iters, threshold)", model_default={}
    )
    solver: str | None = config_field(
        None,
        "meta-layer method run in every row instead of the row's (the row keeps its name); "
        "mpa-lya with precision=float32: what the released ECCV'22 DBN code runs",
    )

    @field_validator("solver")
    @classmethod
    def _known_solver(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or is_recorded(info):
            return value
        from svdablate.metalayers import resolve_method

        return resolve_method(value)

    def as_kwargs(self) -> dict[str, Any]:
        """The options set (the unset ones left out)."""
        return self.model_dump(exclude_none=True)

    def for_model(self, model: str) -> ModelOptions:
        """These options with every unset one at `model`'s default (what a builder is given)."""
        filled = {}
        for name, info in type(self).model_fields.items():
            meta = dict(info.json_schema_extra or {})  # type: ignore[arg-type]
            default = meta.get("per_model", {}).get(model, meta.get("model_default"))
            value = getattr(self, name)
            filled[name] = (
                (dict(default) if isinstance(default, dict) else default)
                if value is None
                else value
            )
        return type(self).model_construct(**filled)
