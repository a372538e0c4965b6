"""OW as Skew Orthogonal Convolution (SOC; Singla & Feizi, ICML'21; ECCV'22 ref. [43]).

The operator the ECCV'22 official code runs for OW (``models/skew_symmetric_conv.py`` of
OrthoImproveCond): a free kernel P (M, M, kh, kw), M = max(C_in, C_out), gives the skew kernel
L = (P − Pᵀ)/2, where Pᵀ is the kernel of the adjoint convolution; the "same", zero-padded,
stride-1 convolution with L is a skew-symmetric operator, so its exponential is orthogonal. The
layer computes exp(L⋆) x by a truncated Taylor series on the input zero-padded to M channels, then
keeps the first C_out channels. L is first scaled by correction / σ, σ the smallest of the norms
of four reshapes of L ("fantastic four", by power iteration), so the series converges fast.

Exactness: with C_out ≥ C_in, ‖y‖ = ‖x‖ for every input up to the Taylor truncation (the padded
input has x's norm); with C_out < C_in, the Jacobian has orthonormal rows, ‖Jᵀg‖ = ‖g‖.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SOCOptions",
    "SkewOrthogonalConv2d",
    "exp_conv_taylor",
    "fantastic_four_matrices",
    "fantastic_four_sigma",
    "fantastic_four_step",
    "skew_kernel",
    "transpose_kernel",
]


@dataclass(frozen=True)
class SOCOptions:
    """SOC's settings, defaults as in the official ``skew_conv``."""

    #: Taylor terms of exp in training / in eval
    train_terms: int = 5
    eval_terms: int = 10
    #: power iterations for σ at construction and every ``update_freq`` training forwards
    init_iters: int = 50
    #: power iterations per training forward otherwise (none in eval)
    update_iters: int = 1
    update_freq: int = 200
    #: L is scaled by correction / σ (the official code uses 1.0 for 1×1 kernels)
    correction: float = 0.7
    correction_1x1: float = 1.0

    def __post_init__(self) -> None:
        for name in ("train_terms", "eval_terms", "init_iters", "update_iters", "update_freq"):
            value = getattr(self, name)
            low = 0 if name == "update_iters" else 1
            if not isinstance(value, int) or value < low:
                raise ValueError(f"SOC option {name} must be an int >= {low}, got {value!r}")
        for name in ("correction", "correction_1x1"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"SOC option {name} must be a finite number > 0, got {value!r}")


def transpose_kernel(kernel: Tensor) -> Tensor:
    """Kernel of the adjoint of a zero-padded "same" stride-1 conv: channels swapped, flipped."""
    return kernel.transpose(0, 1).flip(2, 3)


def skew_kernel(free: Tensor) -> Tensor:
    """L = (P − Pᵀ)/2: conv with L is skew-symmetric (SOC §4; ECCV'22 eq. 13 for convolutions)."""
    return 0.5 * (free - transpose_kernel(free))


def exp_conv_taylor(x: Tensor, kernel: Tensor, terms: int) -> Tensor:
    """exp(L⋆) x ≈ Σ_{i=0}^{terms} (L⋆)^i x / i! (SOC eq. 5), L⋆ the "same" zero-padded conv."""
    padding = (kernel.shape[2] // 2, kernel.shape[3] // 2)
    term, total = x, x
    for i in range(1, terms + 1):
        term = F.conv2d(term, kernel, padding=padding) / float(i)
        total = total + term
    return total


def _unit(t: Tensor) -> Tensor:
    return t / torch.linalg.vector_norm(t).clamp_min(1e-12)


def fantastic_four_matrices(kernel: Tensor) -> list[Tensor]:
    """The four reshapes R_k of a kernel (out, in, h, w) whose norms bound the conv's
    ("Fantastic Four", Singla & Feizi ICLR'21): (out·h)×(in·w), (out·w)×(in·h), out×(in·h·w),
    in×(out·h·w)."""
    o, i, h, w = kernel.shape
    return [
        kernel.permute(0, 2, 1, 3).reshape(o * h, i * w),
        kernel.permute(0, 3, 1, 2).reshape(o * w, i * h),
        kernel.reshape(o, i * h * w),
        kernel.permute(1, 0, 2, 3).reshape(i, o * h * w),
    ]


def fantastic_four_step(
    mats: list[Tensor], us: list[Tensor], vs: list[Tensor]
) -> tuple[list[Tensor], list[Tensor]]:
    """One power iteration on each R_k: v_k = R_k u_k / ‖·‖, then u_k = R_kᵀ v_k / ‖·‖."""
    new_us, new_vs = [], []
    for R, u in zip(mats, us, strict=True):
        v = _unit(R @ u)
        new_vs.append(v)
        new_us.append(_unit(R.mT @ v))
    return new_us, new_vs


def fantastic_four_sigma(mats: list[Tensor], us: list[Tensor], vs: list[Tensor]) -> Tensor:
    """σ = min_k v_kᵀ R_k u_k over the four reshapes R_k (differentiable in them)."""
    return torch.stack([v @ (R @ u) for R, u, v in zip(mats, us, vs, strict=True)]).min()


class SkewOrthogonalConv2d(nn.Module):
    """A stride-1 "same" conv C_in → C_out whose Jacobian is orthogonal (SOC); see the module doc.

    The free parameter is ``kernel`` (M, M, kh, kw); NOG and OLR act on it. The power-iteration
    vectors ``u1..u4``, ``v1..v4`` and ``num_updates`` are buffers (they round-trip state_dict).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        *,
        bias: bool,
        options: SOCOptions | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kh, kw = kernel_size
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"SOC needs an odd kernel size, got {kernel_size}")
        self.options = options or SOCOptions()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = (int(kh), int(kw))
        channels = max(self.in_channels, self.out_channels)
        factory = {"device": device, "dtype": dtype}
        self.kernel = nn.Parameter(torch.empty(channels, channels, kh, kw, **factory))
        nn.init.normal_(self.kernel, std=1.0 / math.sqrt(channels))
        if bias:
            self.bias: nn.Parameter | None = nn.Parameter(torch.empty(self.out_channels, **factory))
            bound = 1.0 / math.sqrt(self.out_channels)
            nn.init.uniform_(self.bias, -bound, bound)
        else:
            self.bias = None
        one_by_one = self.kernel_size == (1, 1)
        self.correction = self.options.correction_1x1 if one_by_one else self.options.correction
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long, device=device))
        with torch.no_grad():
            L = skew_kernel(self.kernel)
            mats = fantastic_four_matrices(L)
            us = [_unit(torch.randn_like(R[0])) for R in mats]
            vs = [_unit(torch.randn_like(R[:, 0])) for R in mats]
            for _ in range(self.options.init_iters):
                us, vs = fantastic_four_step(mats, us, vs)
        for k, (u, v) in enumerate(zip(us, vs, strict=True), start=1):
            self.register_buffer(f"u{k}", u)
            self.register_buffer(f"v{k}", v)

    @classmethod
    def from_conv(cls, conv: nn.Module, options: SOCOptions | None = None) -> SkewOrthogonalConv2d:
        """The SOC layer with ``conv``'s channels, kernel size and a copy of its bias.

        ValueError, naming the fix, when SOC cannot represent ``conv`` (stride ≠ 1, even kernel,
        padding other than zero "same", dilation, groups). The kernel starts from SOC's own
        random init (as the official code), not from conv's weight.
        """
        fix = "; use ow_map='matrix_exp' for this layer"
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"SOC replaces an nn.Conv2d, got {type(conv).__name__}{fix}")
        kh, kw = conv.kernel_size
        same = (kh // 2, kw // 2)
        if conv.stride != (1, 1):
            raise ValueError(f"SOC needs stride 1, the layer has stride {conv.stride}{fix}")
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"SOC needs an odd kernel, the layer's is {conv.kernel_size}{fix}")
        if conv.dilation != (1, 1) or conv.groups != 1:
            raise ValueError(
                f"SOC needs dilation 1 and groups 1, the layer has dilation {conv.dilation} and "
                f"groups {conv.groups}{fix}"
            )
        if conv.padding not in (same, "same") or conv.padding_mode != "zeros":
            raise ValueError(
                f"SOC needs zero padding {same} (same size out), the layer has "
                f"{conv.padding_mode} padding {conv.padding}{fix}"
            )
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            (kh, kw),
            bias=conv.bias is not None,
            options=options,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        if conv.bias is not None:
            with torch.no_grad():
                layer.bias.copy_(conv.bias)
        return layer

    def _vectors(self) -> tuple[list[Tensor], list[Tensor]]:
        return [getattr(self, f"u{k}") for k in range(1, 5)], [
            getattr(self, f"v{k}") for k in range(1, 5)
        ]

    def scaled_skew_kernel(self) -> Tensor:
        """correction · L / σ (differentiable in ``kernel``); a training forward refines σ."""
        L = skew_kernel(self.kernel)
        mats = fantastic_four_matrices(L)
        us, vs = self._vectors()
        if self.training:
            opts = self.options
            every = int(self.num_updates) % opts.update_freq == 0
            iters = opts.init_iters if every else opts.update_iters
            with torch.no_grad():
                fixed = [R.detach() for R in mats]
                for _ in range(iters):
                    us, vs = fantastic_four_step(fixed, us, vs)
                for k, (u, v) in enumerate(zip(us, vs, strict=True), start=1):
                    getattr(self, f"u{k}").copy_(u)
                    getattr(self, f"v{k}").copy_(v)
                self.num_updates += 1
        return self.correction * L / fantastic_four_sigma(mats, us, vs)

    def forward(self, x: Tensor) -> Tensor:
        """y = crop_{C_out}(exp(L⋆) pad_M(x)) + bias, by ``train_terms``/``eval_terms`` terms."""
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]}")
        kernel = self.scaled_skew_kernel()
        extra = self.kernel.shape[0] - self.in_channels
        z = F.pad(x, (0, 0, 0, 0, 0, extra)) if extra else x
        terms = self.options.train_terms if self.training else self.options.eval_terms
        z = exp_conv_taylor(z, kernel, terms)[:, : self.out_channels]
        if self.bias is not None:
            z = z + self.bias.view(1, -1, 1, 1)
        return z

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"bias={self.bias is not None}, terms={self.options.train_terms}/"
            f"{self.options.eval_terms}, correction={self.correction}"
        )
