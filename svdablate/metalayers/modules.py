"""The two SVD meta-layer modules: ZCA whitening (decorrelated BN) and global covariance pooling.

Both call this package's functions at forward time (``inv_sqrtm`` / ``sqrtm`` / ``covariance`` /
``spectrum_stats``), compute in the meta-layer's precision and cast back to the input's dtype.
Under an autocast (TrialConfig ``autocast``) the covariance and the matrix function still run in
that precision: autocast is switched off inside (:func:`full_precision`). The eigendecomposition
runs where ``eigh_device`` says (``auto``: measured at the first forward, :mod:`eigh_placement`).
Solver failures surface as ``MetaLayerFailure`` and are not caught here.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from svdablate.metalayers.api import covariance, inv_sqrtm, spectrum_stats, sqrtm
from svdablate.metalayers.eigh_placement import EIGH_CHOICES, EighPlacement, choose_eigh_device
from svdablate.metalayers.registry import METHODS, resolve_method

PRECISIONS = {"float32": torch.float32, "float64": torch.float64}


def full_precision(x: torch.Tensor) -> AbstractContextManager:
    """Autocast off on `x`'s device: the meta-layer computes in its own precision (a device
    without autocast, e.g. `meta` for FLOP counting, has nothing to turn off)."""
    if not torch.amp.is_autocast_available(x.device.type):
        return nullcontext()
    return torch.autocast(device_type=x.device.type, enabled=False)


class _MetaLayerBase(nn.Module):
    """Shared state of the meta-layers: settable method/precision, optional spectrum telemetry.

    With ``record_stats`` on, each training forward sets ``last_stats`` to the medians over the
    batch of matrices of ``kappa`` (κ = λmax/λmin of the covariance P of eq. 2, float64) and
    ``lambda_ratio`` (λ1/λ2 of P); ZCA whitening adds ``kappa_ridged`` (κ of P + εI, the matrix
    its solver sees). Eigenvalues are floored at float64 eps (:func:`spectrum_stats`).
    """

    def __init__(
        self, method: str, precision: str, opts: dict[str, Any] | None, solver: str | None
    ) -> None:
        super().__init__()
        self.solver = solver
        self.method = method
        self.precision = precision
        self.opts: dict[str, Any] = dict(opts or {})
        self.record_stats: bool = False
        self.last_stats: dict[str, float] | None = None
        self.eigh_device = "same"
        #: where the last eigendecomposition ran and why (None before the first one)
        self.eigh_placement: EighPlacement | None = None

    @property
    def eigh_device(self) -> str:
        """Where the eigh family's eigendecomposition runs: auto, same (P's device) or cpu."""
        return self._eigh_device

    @eigh_device.setter
    def eigh_device(self, value: str) -> None:
        if value not in EIGH_CHOICES:
            raise ValueError(f"eigh_device must be one of {', '.join(EIGH_CHOICES)}, got {value!r}")
        self._eigh_device = value
        self.eigh_placement = None

    @property
    def method(self) -> str:
        """Canonical name of the method the layer runs: ``solver`` when set, else the method
        last set (the hybrid protocol switches it mid-training)."""
        return self._solver or self._method

    @method.setter
    def method(self, name: str) -> None:
        self._method = resolve_method(name)

    @property
    def solver(self) -> str | None:
        """A method run instead of every ``method`` set (the released code's solver under the
        paper's row names); None: run ``method``."""
        return self._solver

    @solver.setter
    def solver(self, name: str | None) -> None:
        self._solver = None if name is None else resolve_method(name)

    @property
    def precision(self) -> str:
        """Dtype name ("float32"/"float64") the covariance and the matrix function run in."""
        return self._precision

    @precision.setter
    def precision(self, name: str) -> None:
        if name not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {name!r}")
        self._precision = name

    @property
    def compute_dtype(self) -> torch.dtype:
        """The torch dtype of ``precision``."""
        return PRECISIONS[self._precision]

    def _solve(self, fn: Any, P: torch.Tensor) -> torch.Tensor:
        """Apply ``fn`` (sqrtm/inv_sqrtm) to P with the current method, precision and options
        (and, for the eigendecomposition family, where its eigh runs)."""
        opts = {**self.opts, "precision": self._precision}
        if METHODS[self.method].family == "svd":
            placement = self.eigh_placement
            if placement is None or placement.shape != tuple(P.shape):
                placement = choose_eigh_device(
                    self._eigh_device, tuple(P.shape), self.compute_dtype, P.device
                )
                self.eigh_placement = placement
            opts["eigh_device"] = placement.where
        return fn(P, self.method, **opts)

    def _maybe_record(self, P: torch.Tensor, ridge: float | None = None) -> None:
        """Store the batch medians of :func:`spectrum_stats` of P when ``record_stats`` is on.

        P is the covariance of eq. 2 (before any ridge); with ``ridge`` = ε the stats also hold
        ``kappa_ridged``, κ of P + εI, from the same eigendecomposition.
        """
        if not (self.record_stats and self.training):
            return
        self.last_stats = None
        with torch.no_grad():
            P64 = P.detach().to(torch.float64)
            if not bool(torch.isfinite(P64).all()):
                return  # the solver reports the failure; telemetry must not crash the step
            try:
                stats = spectrum_stats(P64, ridge=ridge)
            except (RuntimeError, torch.linalg.LinAlgError):
                return
            self.last_stats = {k: float(v.reshape(-1).median().item()) for k, v in stats.items()}

    def extra_repr(self) -> str:
        solver = f", solver={self._solver!r}" if self._solver else ""
        return f"method={self._method!r}{solver}, precision={self._precision!r}"


class ZCAWhitening(_MetaLayerBase):
    """Decorrelated BN (ECCV'22 §6.1): y = S(x − μ), S = (P + εI)^{-1/2} (eq. 3), then affine.

    The affine weight starts from U(0, 1) and the bias from 0, drawn from torch's RNG when the
    module is built, as the official ``ZCANormBatch.reset_parameters`` (same seed, same draws).
    """

    def __init__(
        self,
        num_features: int,
        *,
        method: str = "svd",
        precision: str = "float64",
        groups: int = 1,
        eps: float = 1e-2,
        momentum: float = 0.1,
        affine: bool = True,
        opts: dict[str, Any] | None = None,
        solver: str | None = None,
    ) -> None:
        super().__init__(method, precision, opts, solver)
        if groups < 1 or num_features % groups:
            raise ValueError(f"groups={groups} must divide num_features={num_features}")
        self.num_features = num_features
        self.groups = groups
        self.eps = float(eps)
        self.momentum = float(momentum)
        self.affine = affine
        d = num_features // groups
        if affine:
            self.weight = nn.Parameter(torch.empty(num_features))
            self.bias = nn.Parameter(torch.empty(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(groups, d, 1))
        self.register_buffer("running_S", torch.eye(d).expand(groups, d, d).clone())
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Affine weight ~ U(0, 1), bias 0 (official ``ZCANormBatch.reset_parameters``)."""
        if self.affine:
            with torch.no_grad():
                self.weight.uniform_()
                self.bias.zero_()

    def _grouped(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (G, d, B·H·W)."""
        return x.transpose(0, 1).reshape(self.groups, self.num_features // self.groups, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whiten per group with batch statistics (training) or running statistics (eval)."""
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"expected (B, {self.num_features}, H, W) input, got {tuple(x.shape)}")
        with full_precision(x):
            return self._whiten(x)

    def _whiten(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        X = self._grouped(x)
        if self.training:
            Xc = X.to(self.compute_dtype)
            mu = Xc.mean(dim=-1, keepdim=True)
            Xc = Xc - mu
            d = Xc.shape[1]
            eye = torch.eye(d, dtype=Xc.dtype, device=Xc.device)
            cov = Xc @ Xc.transpose(1, 2) / Xc.shape[-1]  # P of eq. 2
            self._maybe_record(cov, ridge=self.eps)
            S = self._solve(inv_sqrtm, cov + self.eps * eye)
            y = (S @ Xc).to(x.dtype)
            with torch.no_grad():  # (1 − m)·running + m·batch, in the official op order
                m, mean, run_s = self.momentum, self.running_mean, self.running_S
                mean.copy_((1 - m) * mean + m * mu.to(mean.dtype))
                run_s.copy_((1 - m) * run_s + m * S.detach().to(run_s.dtype))
                self.num_batches_tracked.add_(1)
        else:
            S = self.running_S.to(x.dtype)
            y = S @ (X - self.running_mean.to(x.dtype))
        y = y.reshape(C, B, H, W).transpose(0, 1)
        if self.affine:
            y = y * self.weight.view(1, C, 1, 1) + self.bias.view(1, C, 1, 1)
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, groups={self.groups}, eps={self.eps}, "
            f"momentum={self.momentum}, affine={self.affine}, {super().extra_repr()}"
        )


class CovariancePooling(_MetaLayerBase):
    """GCP head (ICCV'21 §3): 1×1 conv+BN+ReLU, P = cov (eq. 2), Q = P^{1/2} (eq. 4), triu(Q)."""

    def __init__(
        self,
        in_channels: int,
        *,
        reduction_dim: int = 256,
        method: str = "svd",
        precision: str = "float64",
        opts: dict[str, Any] | None = None,
        solver: str | None = None,
    ) -> None:
        super().__init__(method, precision, opts, solver)
        self.in_channels = in_channels
        self.reduction_dim = reduction_dim
        self.conv = nn.Conv2d(in_channels, reduction_dim, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(reduction_dim)
        self.relu = nn.ReLU(inplace=True)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        rows, cols = torch.triu_indices(reduction_dim, reduction_dim)
        self.register_buffer("triu_rows", rows, persistent=False)
        self.register_buffer("triu_cols", cols, persistent=False)

    @property
    def output_dim(self) -> int:
        """Length of the vectorised upper triangle, d(d+1)/2."""
        return self.reduction_dim * (self.reduction_dim + 1) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, d(d+1)/2): upper triangle of the covariance's square root."""
        z = self.relu(self.bn(self.conv(x)))  # the Pre-SVD layer: the backbone's precision
        with full_precision(z):
            X = z.flatten(2).to(self.compute_dtype)
            P = covariance(X)
            self._maybe_record(P)
            Q = self._solve(sqrtm, P)
            return Q[:, self.triu_rows, self.triu_cols].to(z.dtype)

    def extra_repr(self) -> str:
        return f"{self.in_channels}->{self.reduction_dim}, {super().extra_repr()}"
