"""The ECCV'22 treatments of the Pre-SVD layer (§4–5) and their registry.

A treatment is one subclass of :class:`Treatment` decorated with :func:`register_treatment`. Each
hook sees the Pre-SVD weight as the (C_out, C_in·k·k) matrix W of eq. 9:

- ``replace_layer(layer)``: the module that takes the layer's place (OW as SOC builds a new one);
- ``parametrize(layer)``: register a parametrization on ``layer.weight`` (already viewed as W);
- ``regularizer(W)``: a loss term added to the objective;
- ``transform_grad(G)``: rewrite the gradient of the free weight parameter after ``backward()``;
- ``learning_rate(w, G, base_lr)``: the Pre-SVD layer's learning rate for this step, from the free
  weight parameter w the optimizer steps and its gradient G (one space, as the official script).

The registry keeps its keys in the canonical order (:func:`svdablate.schema.canonical_treatments`:
the papers' ``NOG SN OL OW OLR``, then any other by name), the order rows and tables use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from svdablate.schema import TREATMENT_ORDER, canonical_treatments
from svdablate.treatments.functional import nearest_orthogonal, olr_switch, optimal_lr
from svdablate.treatments.soc import SkewOrthogonalConv2d, SOCOptions

__all__ = [
    "OW_MAPS",
    "TREATMENTS",
    "NearestOrthogonalGradient",
    "OptimalLearningRate",
    "OrthogonalLoss",
    "OrthogonalWeights",
    "SpectralNorm",
    "Treatment",
    "TreatmentOptions",
    "combination_warning",
    "parse_treatments",
    "register_treatment",
]

#: OW's operator: eq. 13 on the (C_out, C_in·k·k) matrix (matrix exponential or Cayley map), or
#: Skew Orthogonal Convolution (``soc``), the operator the official code runs.
OW_MAPS: tuple[str, ...] = ("matrix_exp", "cayley", "soc")


@dataclass(frozen=True)
class TreatmentOptions:
    """Options shared by the treatments: OL's λ (eq. 12), OW's map (eq. 13) and SOC's settings."""

    ol_weight: float = 1e-2
    ow_map: str = "matrix_exp"
    soc: SOCOptions = field(default_factory=SOCOptions)

    def __post_init__(self) -> None:
        if not (isinstance(self.ol_weight, (int, float)) and math.isfinite(self.ol_weight)):
            raise ValueError(f"ol_weight must be a finite number, got {self.ol_weight!r}")
        if self.ol_weight < 0:
            raise ValueError(f"ol_weight must be >= 0, got {self.ol_weight!r}")
        if self.ow_map not in OW_MAPS:
            raise ValueError(f"unknown ow_map {self.ow_map!r}; valid: {', '.join(OW_MAPS)}")
        if not isinstance(self.soc, SOCOptions):
            raise TypeError(f"soc must be a SOCOptions, got {type(self.soc).__name__}")


class Treatment:
    """Base class: every hook is a no-op; a treatment overrides the ones it needs."""

    name: ClassVar[str] = ""

    def __init__(self, options: TreatmentOptions) -> None:
        self.options = options

    @property
    def parametrizes(self) -> bool:
        """True when ``parametrize`` registers a parametrization on the weight."""
        return False

    def replace_layer(self, layer: nn.Module) -> nn.Module:
        """The module that takes the Pre-SVD layer's place (``layer`` itself unless replaced)."""
        return layer

    def parametrize(self, layer: nn.Module) -> None:
        """Register a parametrization on ``layer.weight`` (a (C_out, C_in·k·k) matrix here)."""

    def regularizer(self, weight: Tensor) -> Tensor | None:
        """Loss term on the effective weight matrix W, or None."""
        return None

    def transform_grad(self, grad: Tensor) -> Tensor:
        """New gradient (C_out, C_in·k·k) of the free weight parameter."""
        return grad

    def learning_rate(self, weight: Tensor, grad: Tensor | None, base_lr: float) -> float | None:
        """Learning rate of the Pre-SVD group for this step from the free weight parameter and its
        gradient, or None (keep base_lr)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


#: name → treatment class, in canonical order (filled by `register_treatment`).
TREATMENTS: dict[str, type[Treatment]] = {}


def register_treatment(cls: type[Treatment]) -> type[Treatment]:
    """Register a treatment under its ``name`` (upper case, as rows are read): a class decorator.
    The registry is kept in canonical order, so a new name sorts after the papers' five."""
    name = cls.name
    if not name or name != name.upper() or not name.replace("_", "").isalnum():
        raise ValueError(f"treatment name {name!r}: letters, digits and _ in upper case")
    if name in TREATMENTS:
        raise ValueError(f"treatment {name!r} is registered already")
    TREATMENTS[name] = cls
    ordered = {n: TREATMENTS[n] for n in canonical_treatments(TREATMENTS)}
    TREATMENTS.clear()
    TREATMENTS.update(ordered)
    return cls


@register_treatment
class SpectralNorm(Treatment):
    """SN (eq. 11): W / σ_max(W), σ_max by one power iteration per training forward."""

    name = "SN"

    @property
    def parametrizes(self) -> bool:
        return True

    def parametrize(self, layer: nn.Module) -> None:
        parametrizations.spectral_norm(layer, "weight", n_power_iterations=1, dim=0)


@register_treatment
class OrthogonalLoss(Treatment):
    """OL (eq. 12): λ‖WWᵀ − I‖_F on the smaller Gram matrix (WᵀW − I when C_out > C_in·k·k).

    The smaller Gram is the one that can reach I (a wide W has orthonormal rows, a tall W
    orthonormal columns), so OL's minimisers are exactly OW's constraint set; for the usual wide
    Pre-SVD weight it is eq. 12 verbatim.
    """

    name = "OL"

    def regularizer(self, weight: Tensor) -> Tensor:
        n, m = weight.shape
        gram = weight @ weight.mT if n <= m else weight.mT @ weight
        eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        return self.options.ol_weight * torch.linalg.matrix_norm(gram - eye, ord="fro")


@register_treatment
class OrthogonalWeights(Treatment):
    """OW (eq. 13): W = exp(A − Aᵀ) (or the Cayley map) of a free A, orthonormal rows/columns;
    with ``ow_map="soc"`` the conv is replaced by a Skew Orthogonal Convolution (orthogonal
    Jacobian, free parameter its kernel)."""

    name = "OW"

    @property
    def parametrizes(self) -> bool:
        return self.options.ow_map != "soc"

    def replace_layer(self, layer: nn.Module) -> nn.Module:
        if self.options.ow_map != "soc":
            return layer
        return SkewOrthogonalConv2d.from_conv(layer, self.options.soc)

    def parametrize(self, layer: nn.Module) -> None:
        parametrizations.orthogonal(layer, "weight", orthogonal_map=self.options.ow_map)


@register_treatment
class NearestOrthogonalGradient(Treatment):
    """NOG (eqs. 14–17): G = USVᵀ → UVᵀ; zero or non-finite G left alone."""

    name = "NOG"

    def transform_grad(self, grad: Tensor) -> Tensor:
        return nearest_orthogonal(grad)


@register_treatment
class OptimalLearningRate(Treatment):
    """OLR (eqs. 18–21): lr = η*(w, G) when 0 < η* < base_lr, else base_lr; every step."""

    name = "OLR"

    def learning_rate(self, weight: Tensor, grad: Tensor | None, base_lr: float) -> float:
        if grad is None:
            return base_lr
        return olr_switch(optimal_lr(weight, grad), base_lr)


def check_registry_order(registry: dict[str, type[Treatment]], order: tuple[str, ...]) -> None:
    """Raise unless the registry holds every name of ``order`` (the papers' treatments) and its
    keys are in canonical order: ``order``, then any other treatment by name."""
    missing = [n for n in order if n not in registry]
    if missing or tuple(registry) != canonical_treatments(registry):
        raise RuntimeError(
            f"treatment registry {tuple(registry)} does not follow schema.TREATMENT_ORDER {order}"
            f"{' (missing ' + ', '.join(missing) + ')' if missing else ''}: register treatments "
            "with register_treatment"
        )


check_registry_order(TREATMENTS, TREATMENT_ORDER)


def parse_treatments(names: str | Iterable[str] | None) -> tuple[str, ...]:
    """Canonical tuple of treatment names from ``"ow+NOG"``, ``["NOG", "OW"]``, ``""`` or None.

    Case and order are free; unknown or duplicated names raise ``ValueError`` listing the valid
    ones. The result is in canonical order (``schema.canonical_treatments``): NOG SN OL OW OLR,
    then any other registered treatment by name.
    """
    if names is None:
        return ()
    if isinstance(names, str):
        stripped = names.strip()
        parts = [] if stripped == "" else stripped.split("+")
    else:
        parts = list(names)
    valid = ", ".join(TREATMENTS)  # read at call time: a newly registered one is known at once
    by_upper = {n.upper(): n for n in TREATMENTS}
    seen: list[str] = []
    for raw in parts:
        if not isinstance(raw, str):
            raise ValueError(f"treatment names must be strings, got {raw!r}; valid: {valid}")
        key = raw.strip().upper()
        if key not in by_upper:
            hint = " (SVD, NS, … are methods, not treatments)" if key in {"SVD", "NS"} else ""
            raise ValueError(f"unknown treatment {raw!r}{hint}; valid: {valid}")
        name = by_upper[key]
        if name in seen:
            raise ValueError(f"treatment {name!r} given twice in {names!r}; valid: {valid}")
        seen.append(name)
    return canonical_treatments(seen)


def combination_warning(names: str | Iterable[str] | None) -> str | None:
    """ECCV'22 §5: OLR with exactly one of W (OW) and G (NOG) orthogonal drives η* to 0."""
    parsed = parse_treatments(names)
    if "OLR" not in parsed or ("OW" in parsed) == ("NOG" in parsed):
        return None
    which = "the weight (OW)" if "OW" in parsed else "the gradient (NOG)"
    row = "+".join(("SVD", *parsed))
    return (
        f"{row}: OLR with only {which} orthogonal makes η* attenuate to 0 (ECCV'22 §5); "
        "OLR is meant alone or with both NOG and OW"
    )
