"""What every meta-layer method shares: its registration, its options and its failure contract.

A method is registered by one decorator line on one function (``eigen_rules.py``,
``iteration_rules.py``) or one :func:`register_method` call (``iterative.py``); its valid
options are that function's keyword-only parameters plus the options common to its family
(``precision``, and ``eps`` for the eigendecomposition family). Every method computes in the
dtype its ``precision`` names (:func:`compute_dtype`) and reports a solver failure as
:class:`MetaLayerFailure` (:func:`check_finite`: one reduction, one device sync, per forward and
per backward call).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "METHODS",
    "MetaLayerFailure",
    "MethodSpec",
    "check_finite",
    "check_positive_int",
    "compute_dtype",
    "keyword_only",
    "register_method",
    "resolve_method",
    "validate_options",
]


class MetaLayerFailure(RuntimeError):
    """A solver failed: ``torch.linalg.LinAlgError`` or non-finite values in forward or backward."""


@dataclass(frozen=True)
class MethodSpec:
    """One registered meta-layer method."""

    name: str
    family: str  # "svd" (eigh forward + a backward rule) or "iterative"
    aliases: tuple[str, ...]
    defaults: Mapping[str, Any]
    impl: Callable[..., Any] = field(repr=False)

    @property
    def options(self) -> tuple[str, ...]:
        """Valid option names for this method, sorted."""
        return tuple(sorted(self.defaults))


METHODS: dict[str, MethodSpec] = {}
_ALIASES: dict[str, str] = {}

# Options shared by every method of a family, with their defaults (None: chosen at call time).
FAMILY_OPTIONS: dict[str, dict[str, Any]] = {
    "svd": {"precision": "float64", "eps": None, "eigh_device": "same"},
    "iterative": {"precision": None},
}


def _norm(name: str) -> str:
    return name.strip().lower().replace("é", "e").replace("_", "-").replace(" ", "-")


def keyword_only(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s keyword-only parameters and their defaults: the options a method function takes."""
    return {
        p.name: p.default
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def register_method(
    name: str,
    *,
    family: str,
    aliases: tuple[str, ...] = (),
    impl: Callable[..., Any],
    option_sources: tuple[Callable[..., Any], ...] = (),
) -> MethodSpec:
    """Register ``name``; options = family options + keyword-only params of ``option_sources``."""
    canonical = _norm(name)
    if canonical in METHODS:
        raise ValueError(f"meta-layer method {canonical!r} is already registered")
    defaults: dict[str, Any] = dict(FAMILY_OPTIONS[family])
    for src in option_sources:
        defaults.update(keyword_only(src))
    for alias in (canonical, *aliases):  # validate everything before changing the registry
        key = _norm(alias)
        if _ALIASES.get(key, canonical) != canonical:
            raise ValueError(f"alias {alias!r} already names {_ALIASES[key]!r}")
    spec = MethodSpec(canonical, family, tuple(aliases), defaults, impl)
    METHODS[canonical] = spec
    _ALIASES.update({_norm(alias): canonical for alias in (canonical, *aliases)})
    return spec


def resolve_method(name: str) -> str:
    """Canonical method name for ``name`` (case-insensitive, papers' names accepted)."""
    if not isinstance(name, str):
        raise ValueError(f"meta-layer method must be a string, got {type(name).__name__}")
    key = _norm(name)
    if key not in _ALIASES:
        valid = ", ".join(sorted(METHODS))
        known = ", ".join(sorted({a for s in METHODS.values() for a in s.aliases}))
        raise ValueError(
            f"unknown meta-layer method {name!r}; valid methods: {valid} (aliases: {known})"
        )
    return _ALIASES[key]


def validate_options(spec: MethodSpec, opts: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``opts`` into the method's defaults; an unknown option raises ``ValueError``."""
    unknown = sorted(set(opts) - set(spec.defaults))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for meta-layer method "
            f"{spec.name!r}; valid options: {', '.join(spec.options)}"
        )
    merged = dict(spec.defaults)
    merged.update(opts)
    return merged


def check_positive_int(name: str, value: Any, minimum: int) -> None:
    """Raise ``ValueError`` unless option ``name`` is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "double": torch.float64,
    "float": torch.float32,
}


def compute_dtype(precision: Any, input_dtype: torch.dtype) -> torch.dtype:
    """The dtype named by ``precision`` (None or "input": the input's dtype)."""
    if precision is None or precision == "input":
        return input_dtype
    if isinstance(precision, torch.dtype) and precision in (torch.float32, torch.float64):
        return precision
    if isinstance(precision, str) and precision.lower() in _DTYPES:
        return _DTYPES[precision.lower()]
    raise ValueError(f"precision must be 'float64', 'float32' or None, got {precision!r}")


def check_finite(x: Tensor, what: str) -> None:
    """Raise MetaLayerFailure if ``x`` has a non-finite entry: one reduction, one device sync.

    A sum is non-finite iff an entry is; only a float64 overflow of the sum itself could raise a
    false alarm.
    """
    if not math.isfinite(float(x.detach().sum(dtype=torch.float64))):
        raise MetaLayerFailure(f"non-finite values in the meta-layer {what}")
