"""`--set key=value`: the user's overrides parsed by each field's type, and the one-line errors.

`parse_overrides` refuses an unknown key (naming the closest valid one) or a key the grid sets;
`make_config` validates the grid's fields with the overrides applied and names a bad value, what
was given and what is allowed.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from pydantic import BaseModel, ValidationError

from svdablate.errors import UserError
from svdablate.spec.config import ModelOptions, TrialConfig, field_meta
from svdablate.spec.field_reference import item_metadata, range_text, type_name


def settable_fields() -> list[str]:
    """The keys `--set` accepts (nested ones as model_options.NAME)."""
    top = [n for n in TrialConfig.model_fields if field_meta(n).get("settable", True)]
    nested = [f"model_options.{n}" for n in ModelOptions.model_fields]
    return top + nested


def _closest(key: str) -> str:
    close = difflib.get_close_matches(key, settable_fields(), n=1, cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else ""


def _parse_value(raw: str) -> Any:
    """JSON when the text is JSON (numbers, lists, objects, true/false/null), else the text."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_overrides(items: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """`key=value` strings → a nested override dict; unknown keys raise UserError naming the fix.

    Values are checked when the configs are built (`apply_overrides`), against their types.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise UserError(f"--set expects key=value, got {item!r}")
        key, raw = (part.strip() for part in item.split("=", 1))
        value = _parse_value(raw)
        if key.startswith("model_options."):
            name = key.split(".", 1)[1]
            if name not in ModelOptions.model_fields:
                valid = ", ".join(ModelOptions.model_fields)
                raise UserError(
                    f"--set {key}: unknown model option {name!r}{_closest(key)}; valid: {valid}"
                )
            out.setdefault("model_options", {})[name] = value
            continue
        if key not in TrialConfig.model_fields:
            valid = ", ".join(settable_fields())
            raise UserError(f"--set {key}: unknown key{_closest(key)}; valid keys: {valid}")
        if not field_meta(key).get("settable", True):
            raise UserError(
                f"--set {key}: {key} is set by the grid ({_grid_option(key)}), not --set"
            )
        if key == "model_options":
            if not isinstance(value, dict):
                raise UserError(
                    f"--set model_options={raw}: expected a JSON object, e.g. "
                    "model_options='{\"groups\": 4}', or model_options.groups=4"
                )
            out.setdefault("model_options", {}).update(value)
            continue
        out[key] = value
    return out


Overrides = dict[str, Any] | list[str] | tuple[str, ...] | None


def as_overrides(overrides: Overrides, epochs: int | None) -> dict[str, Any]:
    """The trial fields changed: `--set` as {key: value} or ['key=value', …], `--epochs` being
    sugar for `--set epochs=N` (given both, they must agree)."""
    parsed = parse_overrides(list(overrides)) if isinstance(overrides, list | tuple) else overrides
    parsed = dict(parsed or {})
    if epochs is not None:
        if epochs < 1:
            raise UserError(f"--epochs {epochs}: must be greater than or equal to 1")
        if parsed.get("epochs", epochs) != epochs:
            raise UserError(
                f"--epochs {epochs} and --set epochs={parsed['epochs']}: give the epochs once"
            )
        parsed["epochs"] = epochs
    return parsed


def _grid_option(key: str) -> str:
    return {
        "row": "--rows",
        "method": "--rows",
        "treatments": "--rows",
        "seed": "--seeds",
        "study": "--preset",
        "smoke": "--smoke",
        "fake_like": "--smoke",
        "data_dir": "--data-dir",
        "download": "--download",
        "init_checkpoint": "--checkpoints DIR, one file per row",
    }.get(key, "the preset")


def make_config(fields: dict[str, Any], overrides: dict[str, Any] | None = None) -> TrialConfig:
    """A validated TrialConfig from the grid's fields and the user's overrides.

    A bad value raises UserError, one line: the key, what was given, what is allowed.
    """
    merged = dict(fields)
    for key, value in (overrides or {}).items():
        if key == "model_options":
            base = merged.get("model_options") or {}
            if isinstance(base, ModelOptions):
                base = base.as_kwargs()
            merged[key] = {**base, **value}
        else:
            merged[key] = value
    try:
        return TrialConfig.model_validate(merged)
    except ValidationError as exc:
        raise UserError(describe_error(exc, overrides or {})) from None


def describe_error(exc: ValidationError, overrides: dict[str, Any]) -> str:
    """The first error of a validation as one line: key, given value, what is allowed."""
    error = exc.errors(include_url=False)[0]
    names = [str(p) for p in error["loc"] if not isinstance(p, int)]
    message = error["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    if not names:  # a check across fields
        return f"bad trial config: {message}"
    key = ".".join(names)
    given: Any = overrides
    for name in names:
        given = given.get(name, _MISSING) if isinstance(given, dict) else _MISSING
    source = "--set " if given is not _MISSING else ""
    shown = error.get("input") if given is _MISSING else given
    return f"{source}{key}={json.dumps(shown, default=str)}: {message}; {key} is {_allowed(names)}"


_MISSING = object()


def _allowed(names: list[str]) -> str:
    model: type[BaseModel] = ModelOptions if names[0] == "model_options" else TrialConfig
    info = model.model_fields.get(names[-1])
    if info is None:
        return "not a config key"
    kind = type_name(info.annotation)
    bounds = range_text(info.metadata) or range_text(item_metadata(info.annotation))
    return f"{kind}{' ' + bounds if bounds else ''} ({info.description})"
