"""`attach_treatments`: put the ECCV'22 treatments on a model's Pre-SVD layer.

The trial loop, once (before the optimizer is built)::

    handle = attach_treatments(model.pre_svd_layer, names, ol_weight=..., ow_map=..., soc=...)
    model.body.set_submodule(model.pre_svd_path, handle.layer)   # a new module under OW "soc";
                                                                 # a no-op otherwise
    pre = handle.parameters()                                    # their own optimizer group
    optimizer = SGD([{"params": others}, {"params": pre}], ...)

and per training step::

    optimizer.zero_grad()
    loss = criterion(model(x), y) + handle.regularizer()      # OL (eq. 12); 0 without OL
    loss.backward()
    # scaler.unscale_(optimizer) here when using AMP, before NOG
    handle.after_backward()                                   # NOG (eq. 17)
    lr = handle.set_learning_rate(optimizer, base_lr)         # OLR (eqs. 20-21), else base_lr
    optimizer.step()

``base_lr`` is the scheduled lr of the other layers (e.g. ``scheduler.get_last_lr()[0]``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.optim import Optimizer

from svdablate.treatments.functional import as_matrix
from svdablate.treatments.registry import TREATMENTS, Treatment, TreatmentOptions, parse_treatments
from svdablate.treatments.soc import SkewOrthogonalConv2d, SOCOptions

__all__ = ["PreSVDTreatments", "attach_treatments"]


class _ToMatrix(nn.Module):
    """Parametrization (C_out, C_in, k, k) → (C_out, C_in·k·k), so the next one sees W of eq. 9."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, X: Tensor) -> Tensor:
        return X.reshape(X.shape[0], -1)

    def right_inverse(self, W: Tensor) -> Tensor:
        return W.reshape(self.shape)


class _FromMatrix(nn.Module):
    """Parametrization (C_out, C_in·k·k) → (C_out, C_in, k, k): hands the layer its conv weight."""

    def __init__(self, shape: torch.Size) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, W: Tensor) -> Tensor:
        return W.reshape(self.shape)

    def right_inverse(self, X: Tensor) -> Tensor:
        return X.reshape(X.shape[0], -1)


class PreSVDTreatments:
    """Handle on the treated Pre-SVD layer; see the module docstring for the calls.

    ``layer`` is the module the model must run: the given layer (parametrized in place) or, under
    OW with ``ow_map="soc"``, a new :class:`SkewOrthogonalConv2d` the caller installs in its place.
    """

    def __init__(
        self, layer: nn.Module, names: tuple[str, ...], treatments: list[Treatment]
    ) -> None:
        self.layer = layer
        self.names = names
        self.treatments = treatments
        #: Frobenius norm of the free weight parameter's gradient before ``after_backward``'s NOG,
        #: a 0-d tensor on the gradient's device (reading it is the caller's choice: a host read
        #: synchronises the device)
        self.last_grad_norm: Tensor | None = None

    def __repr__(self) -> str:
        row = "+".join(("SVD", *self.names))
        return f"PreSVDTreatments({row}, layer={type(self.layer).__name__})"

    # ---- parameters -------------------------------------------------------------------------
    def parameters(self) -> list[nn.Parameter]:
        """The layer's trainable parameters (after parametrization): their own optimizer group."""
        return [p for p in self.layer.parameters() if p.requires_grad]

    def weight_parameter(self) -> nn.Parameter:
        """The free weight parameter the optimizer steps: SOC's ``kernel``, SN's/OW's ``original``,
        else the weight."""
        if isinstance(self.layer, SkewOrthogonalConv2d):
            return self.layer.kernel
        if parametrize.is_parametrized(self.layer, "weight"):
            return self.layer.parametrizations.weight.original
        return self.layer.weight

    def effective_weight(self) -> Tensor:
        """The (C_out, C_in·k·k) weight W the layer uses (differentiable; SN iterates in train)."""
        if isinstance(self.layer, SkewOrthogonalConv2d):
            raise ValueError(
                "a Skew Orthogonal Convolution has no weight matrix W (its operator is exp of a "
                "skew conv); use ow_map='matrix_exp' for treatments on W"
            )
        return as_matrix(self.layer.weight)

    # ---- per-step hooks ---------------------------------------------------------------------
    def regularizer(self) -> Tensor:
        """Sum of the treatments' loss terms (OL: λ‖WWᵀ − I‖_F, eq. 12); a zero scalar without."""
        p = self.weight_parameter()
        total = torch.zeros((), dtype=p.dtype, device=p.device)
        if not any(type(t).regularizer is not Treatment.regularizer for t in self.treatments):
            return total
        W = self.effective_weight()
        for t in self.treatments:
            term = t.regularizer(W)
            if term is not None:
                total = total + term
        return total

    def after_backward(self) -> None:
        """Rewrite the free weight parameter's gradient in place (NOG, eq. 17), after backward."""
        p = self.weight_parameter()
        if p.grad is None:
            self.last_grad_norm = None
            return
        G = as_matrix(p.grad)
        self.last_grad_norm = torch.linalg.vector_norm(G).detach()
        new = G
        for t in self.treatments:
            new = t.transform_grad(new)
        if new is not G:
            p.grad.copy_(new.reshape(p.grad.shape))

    def find_group(self, optimizer: Optimizer) -> dict:
        """The optimizer param group holding exactly ``parameters()`` (by identity, not by name)."""
        target = {id(p) for p in self.parameters()}
        matches = [
            g
            for g in optimizer.param_groups
            if len(g["params"]) == len(target) and {id(p) for p in g["params"]} == target
        ]
        if len(matches) != 1:
            sizes = [len(g["params"]) for g in optimizer.param_groups]
            raise ValueError(
                f"no optimizer param group holds exactly the {len(target)} Pre-SVD parameters "
                f"(found {len(matches)} matching groups among groups of sizes {sizes}); build the "
                "optimizer after attach_treatments() with handle.parameters() as their own group, "
                "e.g. [{'params': handle.parameters()}, {'params': rest}]"
            )
        return matches[0]

    def set_learning_rate(self, optimizer: Optimizer, base_lr: float) -> float:
        """Set the Pre-SVD group's lr: OLR's η* when 0 < η* < base_lr (eq. 21), else base_lr.

        OLR's w and l live in one space, as in the official script: w is the free weight
        parameter the optimizer steps (the weight without SN/OW, SN's/OW's ``original``, SOC's
        ``kernel``) and l its post-NOG gradient.
        """
        group = self.find_group(optimizer)
        lr = float(base_lr)
        if any(type(t).learning_rate is not Treatment.learning_rate for t in self.treatments):
            p = self.weight_parameter()
            w = as_matrix(p.detach())
            grad = None if p.grad is None else as_matrix(p.grad)
            for t in self.treatments:
                new = t.learning_rate(w, grad, lr)
                if new is not None:
                    lr = float(new)
        group["lr"] = lr
        return lr


def attach_treatments(
    layer: nn.Module,
    names: str | Iterable[str] | None,
    *,
    ol_weight: float = 1e-2,
    ow_map: str = "matrix_exp",
    soc: SOCOptions | None = None,
) -> PreSVDTreatments:
    """Apply the treatments ``names`` (e.g. ``"NOG+OW+OLR"``) to the Pre-SVD ``layer``.

    ``layer`` is an ``nn.Conv2d`` (weight viewed as (C_out, C_in·k·k)) or an ``nn.Linear``. Call it
    once, before the optimizer is built, then install ``handle.layer`` where ``layer`` was (it is
    ``layer`` itself unless OW runs as SOC). SN and OW re-parametrize the weight in place (the
    free parameter becomes ``layer.parametrizations.weight.original``); OW starts from an
    orthogonalised copy of the current weight (torch's trivialization ``base``; the free
    parameter starts at −I, whose skew part is 0). With ``ow_map="soc"``, OW builds a
    :class:`SkewOrthogonalConv2d` of the same shape (ValueError, naming the fix, for a layer SOC
    cannot represent, and with SN or OL, which act on a weight matrix SOC does not have); its
    kernel starts from SOC's random init.
    """
    if not isinstance(layer, (nn.Conv2d, nn.Linear)):
        raise TypeError(
            f"the Pre-SVD layer must be nn.Conv2d or nn.Linear, got {type(layer).__name__}"
        )
    if parametrize.is_parametrized(layer, "weight"):
        raise ValueError("the Pre-SVD layer's weight is already parametrized (attached twice?)")
    parsed = parse_treatments(names)
    options = TreatmentOptions(ol_weight=float(ol_weight), ow_map=ow_map, soc=soc or SOCOptions())
    treatments = [TREATMENTS[n](options) for n in parsed]

    for t in treatments:
        layer = t.replace_layer(layer)
    if isinstance(layer, SkewOrthogonalConv2d):
        on_matrix = [
            t.name
            for t in treatments
            if t.parametrizes or type(t).regularizer is not Treatment.regularizer
        ]
        if on_matrix:
            raise ValueError(
                f"{'+'.join(on_matrix)} act(s) on the weight matrix W, which a Skew Orthogonal "
                "Convolution does not have; use ow_map='matrix_exp'"
            )

    if any(t.parametrizes for t in treatments):
        shape = layer.weight.shape
        initial = layer.weight.detach().clone()
        needs_view = layer.weight.dim() != 2
        if needs_view:
            # the view is registered unsafe (it changes the shape) and closed by _FromMatrix, so
            # SN/OW act on the (C_out, C_in·k·k) matrix, not on a batch of k×k kernels
            parametrize.register_parametrization(layer, "weight", _ToMatrix(shape), unsafe=True)
        for t in treatments:
            if t.parametrizes:
                t.parametrize(layer)
        if needs_view:
            parametrize.register_parametrization(layer, "weight", _FromMatrix(shape), unsafe=True)
        # run the chain's right_inverse once: sets OW's orthogonal base from the initial weight
        # (appended parametrizations are never initialised by torch) and the free parameter
        layer.weight = initial
    return PreSVDTreatments(layer, parsed, treatments)
