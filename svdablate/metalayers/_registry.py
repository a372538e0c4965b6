"""Method registry of the meta-layers: canonical names, the papers' aliases, per-method options.

A method is registered by one decorator line on one function (see ``backward.py`` and
``iterative.py``); its valid options are that function's keyword-only parameters plus the options
common to its family (``precision``, and ``eps`` for the eigendecomposition family).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "METHODS",
    "MetaLayerFailure",
    "MethodSpec",
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
    doc: str = ""

    @property
    def options(self) -> tuple[str, ...]:
        """Valid option names for this method, sorted."""
        return tuple(sorted(self.defaults))


METHODS: dict[str, MethodSpec] = {}
_ALIASES: dict[str, str] = {}

# Options shared by every method of a family, with their defaults (None: chosen at call time).
FAMILY_OPTIONS: dict[str, dict[str, Any]] = {
    "svd": {"precision": "float64", "eps": None},
    "iterative": {"precision": None},
}


def _norm(name: str) -> str:
    return name.strip().lower().replace("é", "e").replace("_", "-").replace(" ", "-")


def _keyword_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    sig = inspect.signature(fn)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def register_method(
    name: str,
    *,
    family: str,
    aliases: tuple[str, ...] = (),
    impl: Callable[..., Any],
    option_sources: tuple[Callable[..., Any], ...] = (),
    doc: str = "",
) -> MethodSpec:
    """Register ``name``; options = family options + keyword-only params of ``option_sources``."""
    canonical = _norm(name)
    if canonical in METHODS:
        raise ValueError(f"meta-layer method {canonical!r} is already registered")
    defaults: dict[str, Any] = dict(FAMILY_OPTIONS[family])
    for src in option_sources:
        defaults.update(_keyword_defaults(src))
    for alias in (canonical, *aliases):  # validate everything before changing the registry
        key = _norm(alias)
        if _ALIASES.get(key, canonical) != canonical:
            raise ValueError(f"alias {alias!r} already names {_ALIASES[key]!r}")
    spec = MethodSpec(canonical, family, tuple(aliases), defaults, impl, doc)
    METHODS[canonical] = spec
    _ALIASES.update({_norm(alias): canonical for alias in (canonical, *aliases)})
    return spec


def resolve_method(name: str) -> str:
    """Canonical method name for ``name`` (case-insensitive, papers' names accepted)."""
    if not isinstance(name, str):
        raise ValueError(f"meta-layer method must be a string, got {type(name).__name__}")
    key = _norm(name)
    if key not in _ALIASES:
        valid = ", ".join(METHODS)
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
