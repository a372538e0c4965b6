"""How a config field is declared and checked: its documentation (unit, identity, settable), the
validation context of recorded configs, and the one-line "unknown name" error."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo


def config_field(
    default: Any, description: str, *, unit: str = "", identity: bool = True, **kw: Any
) -> Any:
    """A config field: `description` and `unit` document it (docs/config.md), `identity` puts it
    in the config hash (`hash_default=False`: only when it differs from its default, so a field
    added later leaves the trials of earlier studies their ids), `settable` says whether `--set`
    may change it; `model_default`
    (ModelOptions) is the value a model uses while the field is unset, `per_model` that value for
    some models."""
    extra = {
        "unit": unit,
        "identity": identity,
        "hash_default": kw.pop("hash_default", True),
        "settable": kw.pop("settable", True),
        "model_default": kw.pop("model_default", None),
        "per_model": kw.pop("per_model", {}),
    }
    return Field(default, description=description, json_schema_extra=extra, **kw)


#: Validation context of the configs a study recorded in its manifest: their names were checked
#: against the registries when the study was made, and loading those imports torch (≈2.4 s a
#: `status`, `report` or `resume`); a trial that builds them still looks each one up. Presets'
#: templates are validated in it too (the grid checks every trial's names).
RECORDED = {"recorded": True}


def is_recorded(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("recorded"))


def one_of(value: str, valid: Any, what: str) -> str:
    if value in valid:
        return value
    raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
