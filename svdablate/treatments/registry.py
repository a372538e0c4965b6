"""The ECCV'22 treatments of the Pre-SVD layer (§4–5) and their registry.

A treatment is one subclass of :class:`Treatment` plus one line in :data:`TREATMENTS`. Each hook
sees the Pre-SVD weight as the (C_out, C_in·k·k) matrix W of eq. 9:

- ``parametrize(layer)``: register a parametrization on ``layer.weight`` (already viewed as W);
- ``regularizer(W)``: a loss term added to the objective;
- ``transform_grad(G)``: rewrite the gradient of the free weight parameter after ``backward()``;
- ``learning_rate(W, G, base_lr)``: the Pre-SVD layer's learning rate for this step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from .functional import nearest_orthogonal, olr_switch, optimal_lr

__all__ = [
    "CANONICAL_ORDER",
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
]

OW_MAPS: tuple[str, ...] = ("matrix_exp", "cayley")


@dataclass(frozen=True)
class TreatmentOptions:
    """Options shared by the treatments: OL's λ (eq. 12) and OW's map (eq. 13)."""

    ol_weight: float = 1e-2
    ow_map: str = "matrix_exp"

    def __post_init__(self) -> None:
        if not (isinstance(self.ol_weight, (int, float)) and math.isfinite(self.ol_weight)):
            raise ValueError(f"ol_weight must be a finite number, got {self.ol_weight!r}")
        if self.ol_weight < 0:
            raise ValueError(f"ol_weight must be >= 0, got {self.ol_weight!r}")
        if self.ow_map not in OW_MAPS:
            raise ValueError(f"unknown ow_map {self.ow_map!r}; valid: {', '.join(OW_MAPS)}")


class Treatment:
    """Base class: every hook is a no-op; a treatment overrides the ones it needs."""

    name: ClassVar[str] = ""
    #: True when ``parametrize`` registers a parametrization on the weight.
    parametrizes: ClassVar[bool] = False

    def __init__(self, options: TreatmentOptions) -> None:
        self.options = options

    def parametrize(self, layer: nn.Module) -> None:
        """Register a parametrization on ``layer.weight`` (a (C_out, C_in·k·k) matrix here)."""

    def regularizer(self, weight: Tensor) -> Tensor | None:
        """Loss term on the effective weight matrix W, or None."""
        return None

    def transform_grad(self, grad: Tensor) -> Tensor:
        """New gradient (C_out, C_in·k·k) of the free weight parameter."""
        return grad

    def learning_rate(self, weight: Tensor, grad: Tensor | None, base_lr: float) -> float | None:
        """Learning rate of the Pre-SVD parameter group for this step, or None (keep base_lr)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SpectralNorm(Treatment):
    """SN (eq. 11): W / σ_max(W), σ_max by one power iteration per training forward."""

    name = "SN"
    parametrizes = True

    def parametrize(self, layer: nn.Module) -> None:
        parametrizations.spectral_norm(layer, "weight", n_power_iterations=1, dim=0)


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


class OrthogonalWeights(Treatment):
    """OW (eq. 13): W = exp(A − Aᵀ) (or the Cayley map) of a free A, orthonormal rows/columns."""

    name = "OW"
    parametrizes = True

    def parametrize(self, layer: nn.Module) -> None:
        parametrizations.orthogonal(layer, "weight", orthogonal_map=self.options.ow_map)


class NearestOrthogonalGradient(Treatment):
    """NOG (eqs. 14–17): G = USVᵀ → UVᵀ; zero or non-finite G left alone."""

    name = "NOG"

    def transform_grad(self, grad: Tensor) -> Tensor:
        return nearest_orthogonal(grad)


class OptimalLearningRate(Treatment):
    """OLR (eqs. 18–21): lr = η*(W, G) when 0 < η* < base_lr, else base_lr; every step."""

    name = "OLR"

    def __init__(self, options: TreatmentOptions) -> None:
        super().__init__(options)
        #: η* of the last step (eq. 20, before the switch), None before the first gradient
        self.last_optimal_lr: float | None = None

    def learning_rate(self, weight: Tensor, grad: Tensor | None, base_lr: float) -> float:
        if grad is None:
            self.last_optimal_lr = None
            return base_lr
        self.last_optimal_lr = optimal_lr(weight, grad)
        return olr_switch(self.last_optimal_lr, base_lr)


#: name → treatment class; insertion order is the canonical order ``NOG SN OL OW OLR``.
TREATMENTS: dict[str, type[Treatment]] = {
    "NOG": NearestOrthogonalGradient,
    "SN": SpectralNorm,
    "OL": OrthogonalLoss,
    "OW": OrthogonalWeights,
    "OLR": OptimalLearningRate,
}

CANONICAL_ORDER: tuple[str, ...] = tuple(TREATMENTS)


def parse_treatments(names: str | Iterable[str] | None) -> tuple[str, ...]:
    """Canonical tuple of treatment names from ``"ow+NOG"``, ``["NOG", "OW"]``, ``""`` or None.

    Case and order are free; unknown or duplicated names raise ``ValueError`` listing the valid
    ones. The result follows the registry's order, :data:`CANONICAL_ORDER` (``NOG SN OL OW OLR``).
    """
    if names is None:
        return ()
    if isinstance(names, str):
        stripped = names.strip()
        parts = [] if stripped == "" else stripped.split("+")
    else:
        parts = list(names)
    order = tuple(TREATMENTS)  # read at call time: a newly registered treatment is known at once
    valid = ", ".join(order)
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
    return tuple(n for n in order if n in seen)


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
