"""Where the eigendecomposition runs: on P's device or on the CPU, chosen by measuring.

The official ICCV'21 code moves every eigendecomposition to the CPU ("SVD is faster on CPU"); on
a GPU, batched float64 ``eigh`` of 256×256 matrices may or may not be slower than the round trip.
Nobody has measured it on a given card, so ``eigh_device="auto"`` (TrialConfig) measures it:
:func:`measure_eigh` times ``eigh`` of a random SPD batch of the trial's own (batch, d, dtype) on
its device and on the CPU (copies both ways included) and :func:`choose_eigh_device` keeps the
faster, once per shape and device in a process. On a CPU there is nothing to choose: ``same``.
Both places give the same numbers to LAPACK/cuSOLVER round-off (tests/test_eigh_placement.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from svdablate.metalayers.spectral import eigh

#: eigh_device values a trial may ask for: ``auto`` (measured), ``same`` (P's device) or ``cpu``.
EIGH_CHOICES = ("auto", "same", "cpu")


@dataclass(frozen=True)
class EighPlacement:
    """Where a shape's eigendecomposition runs, and the measurement that chose it (None: not
    measured: asked for, or on a CPU)."""

    where: str  # "same" or "cpu"
    shape: tuple[int, ...]
    dtype: str
    device: str
    same_ms: float | None = None
    cpu_ms: float | None = None

    def describe(self) -> str:
        """One line for the run's tag: `cpu (measured: same 12.1 ms, cpu 3.4 ms; 256×256×256
        float64 on cuda:0)`."""
        shape = "×".join(map(str, self.shape))
        what = f"{shape} {self.dtype} on {self.device}"
        if self.same_ms is None or self.cpu_ms is None:
            return f"{self.where} ({what})"
        timing = f"same {self.same_ms:.2f} ms, cpu {self.cpu_ms:.2f} ms"
        return f"{self.where} (measured: {timing}; {what})"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def spd_batch(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A random SPD batch (B, d, d): the covariance of 2d Gaussian samples, as a meta-layer's."""
    *batch, d, _ = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*batch, d, 2 * d, generator=g, dtype=dtype)
    return (x @ x.mT / (2 * d)).to(device)


def time_eigh(p: torch.Tensor, where: str, repeats: int = 3) -> float:
    """Median milliseconds of ``eigh(p, where)`` (factors back on p's device), after a warm-up."""
    eigh(p, where)
    _sync(p.device)
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        eigh(p, where)
        _sync(p.device)
        times.append((time.perf_counter() - began) * 1e3)
    return sorted(times)[len(times) // 2]


def measure_eigh(
    shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, repeats: int = 3
) -> EighPlacement:
    """Time eigh of an SPD batch of `shape` on `device` and on the CPU; the faster wins."""
    p = spd_batch(shape, dtype, device)
    same, cpu = time_eigh(p, "same", repeats), time_eigh(p, "cpu", repeats)
    where = "cpu" if cpu < same else "same"
    return EighPlacement(where, tuple(shape), str(dtype).removeprefix("torch."), str(device),
                         same, cpu)  # fmt: skip


_CHOSEN: dict[tuple, EighPlacement] = {}


def choose_eigh_device(
    requested: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> EighPlacement:
    """The placement for `requested` (EIGH_CHOICES) at this shape: `auto` measures once per
    (shape, dtype, device) in this process; on a CPU it is `same` without measuring."""
    if requested not in EIGH_CHOICES:
        raise ValueError(f"eigh_device must be one of {', '.join(EIGH_CHOICES)}, got {requested!r}")
    name = str(dtype).removeprefix("torch.")
    if requested != "auto" or device.type == "cpu":
        where = "same" if requested == "auto" else requested
        return EighPlacement(where, tuple(shape), name, str(device))
    key = (tuple(shape), dtype, str(device))
    if key not in _CHOSEN:
        _CHOSEN[key] = measure_eigh(tuple(shape), dtype, device)
    return _CHOSEN[key]
