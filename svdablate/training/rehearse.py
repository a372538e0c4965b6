"""A rehearsal of one trial shape: a few real training steps at full size, timed by phase.

The network, meta-layer, treatments, optimizer and step are the trial's own (`training.step`);
only the data is synthetic, of the dataset's real shape: CIFAR as random uint8 images fed from the
device exactly as a CIFAR trial is fed (:class:`DeviceBatches`), digits as an in-memory tensor (as
a digits trial holds it), the ImageFolder datasets through torchvision's FakeData at their full
resolution in the DataLoader a trial would use (random PIL images, made per item: no JPEG
decoding and no resized crop, so not the real loader's cost: compare the feed's rate with the
demand, and measure a real tree's loader where it matters).

Three measurements per shape, after ``warmup`` steps:

* ``step_s``: seconds per step of ``steps`` steps run as a trial runs them (no synchronisation
  but at the end), data included: what an epoch costs;
* the phases (data, forward, meta-layer, backward, optimizer) of ``steps`` more steps, each
  phase's end synchronised (medians): where the time goes; the meta-layer's forward and backward
  (GCP: with its 1×1 Pre-SVD conv) are taken out of the forward and backward;
* the feed alone (``loader_images_per_s``) against the step's demand (batch / step_s).

Also the peak memory (the device's allocator on a GPU; on a CPU the process's peak RSS
during the rehearsal, Linux's high-water mark reset at its start), solver
failures, steps with a non-finite gradient, and on a GPU the share of the unsynchronised steps'
wall time the GPU spent in kernels (torch.profiler): what `plan` packs trials by.

No pydantic, Ray or MLflow here: `benchmarks/gpu_step.py` runs it on a bare GPU machine.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from svdablate.data.datasets import FAKE_SHAPES, NORMALIZATIONS, DataInfo, build_datasets
from svdablate.data.device_batches import DeviceBatches
from svdablate.schema.metrics import PHASES
from svdablate.training.batches import make_batches
from svdablate.training.step import (
    STEPPED,
    EpochTelemetry,
    assemble_step,
    build_network,
    to_device,
    train_step,
)

SYNTHETIC_CIFAR_IMAGES = 4096
SYNTHETIC_DIGITS_IMAGES = 1437  # the digits training split's size


@dataclass
class ShapeRehearsal:
    """What a rehearsal of one trial shape measured (seconds per step unless named)."""

    shape: str
    row: str
    device: str
    batch_size: int
    steps: int
    step_s: float
    phases: dict[str, float]
    peak_memory_mb: float
    memory_kind: str  # "device" (allocator peak) or "process RSS"
    device_memory_mb: float | None
    loader_images_per_s: float
    demand_images_per_s: float
    feed: str
    failures: int
    nonfinite_grad_steps: int
    busy_fraction: float | None = None
    eigh_device: str | None = None
    #: the peak above what the process held when the shape began (on a GPU: the allocator's peak,
    #: reset then); on a CPU what the shape itself added to the process's imports and runtime
    memory_added_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def memory_fraction(self) -> float | None:
        """Peak memory as a share of the device's (None on a CPU)."""
        if not self.device_memory_mb:
            return None
        return self.peak_memory_mb / self.device_memory_mb

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def shape_label(config: Any) -> str:
    """`resnet50 cifar100 32px b128 svd float64` (+ the autocast, when on)."""
    dataset = getattr(config, "reported_dataset", None) or config.dataset
    size = FAKE_SHAPES[dataset][2]
    label = f"{config.model} {dataset} {size}px b{config.batch_size} {config.method} "
    label += config.precision
    return label if config.autocast == "off" else f"{label} {config.autocast}"


def synthetic_batches(
    config: Any, device: torch.device, generator: torch.Generator
) -> tuple[Iterable, DataInfo, str]:
    """Training batches of the dataset's real shape, fed as a trial of it is fed."""
    dataset = getattr(config, "reported_dataset", None) or config.dataset
    classes, channels, size, _, _ = FAKE_SHAPES[dataset]
    info = DataInfo(num_classes=classes, in_channels=channels, image_size=size)
    if dataset in NORMALIZATIONS:  # CIFAR: the device path
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (SYNTHETIC_CIFAR_IMAGES, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, classes, SYNTHETIC_CIFAR_IMAGES)
        mean, std = NORMALIZATIONS[dataset]
        batches = DeviceBatches(images, labels, batch_size=config.batch_size, mean=mean,
                                std=std, device=device, generator=generator)  # fmt: skip
        return batches, info, "device"
    if dataset == "digits":  # in memory as a tensor in a real trial: so here
        g = torch.Generator().manual_seed(0)
        images = torch.randn(SYNTHETIC_DIGITS_IMAGES, channels, size, size, generator=g)
        train = TensorDataset(images, torch.randint(0, classes, (len(images),), generator=g))
        val = train
    else:
        train, val, _ = build_datasets("fake", like=dataset)
    batches, _, feed = make_batches(
        train, val, dataset="fake", normalization="dataset", batch_size=config.batch_size,
        num_workers=getattr(config, "num_workers", None), device=device, generator=generator,
    )  # fmt: skip
    return batches, info, feed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forever(batches: Iterable) -> Iterator:
    while True:
        yield from batches


class PhaseClock:
    """Synchronised phase times of a step; the meta-layer's forward and backward from hooks."""

    def __init__(self, device: torch.device, metalayer: torch.nn.Module) -> None:
        self.device = device
        self.times: dict[str, list[float]] = {p: [] for p in PHASES}
        self.current: dict[str, float] = {}
        self._last = 0.0
        self._meta_began = 0.0
        metalayer.register_forward_pre_hook(self._meta_start)
        metalayer.register_forward_hook(self._meta_end)
        self.active = False

    def _now(self) -> float:
        _sync(self.device)
        return time.perf_counter()

    def start(self) -> None:
        self.current = dict.fromkeys(PHASES, 0.0)
        self._last = self._now()
        self.active = True

    def mark(self, phase: str) -> None:
        now = self._now()
        self.current[phase] += now - self._last
        self._last = now

    def finish(self) -> None:
        for phase in ("forward", "backward"):
            self.current[phase] -= self.current.get(f"_{phase}_meta", 0.0)
        self.current["metalayer"] = sum(
            self.current.pop(f"_{p}_meta", 0.0) for p in ("forward", "backward")
        )
        for phase in PHASES:
            self.times[phase].append(self.current[phase])
        self.active = False

    def _add(self, key: str, seconds: float) -> None:
        self.current[key] = self.current.get(key, 0.0) + seconds

    def _meta_start(self, module: Any, inputs: tuple) -> None:
        if self.active and module.training:
            self._meta_began = self._now()
            x = inputs[0]
            if x.requires_grad:  # the gradient reaching the input ends its backward
                x.register_hook(self._backward_end)

    def _meta_end(self, module: Any, inputs: tuple, output: torch.Tensor) -> None:
        if self.active and module.training:
            self._add("_forward_meta", self._now() - self._meta_began)
            if output.requires_grad:
                output.register_hook(self._backward_start)

    def _backward_start(self, grad: torch.Tensor) -> None:
        self._meta_began = self._now()

    def _backward_end(self, grad: torch.Tensor) -> None:
        self._add("_backward_meta", self._now() - self._meta_began)

    def medians(self) -> dict[str, float]:
        return {p: statistics.median(v) if v else float("nan") for p, v in self.times.items()}


def _proc_status_mb(field: str) -> float | None:
    """A memory line of Linux's /proc/self/status (VmRSS, VmHWM) in MiB; None elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _start_cpu_peak() -> float | None:
    """Reset the process's peak RSS to its RSS now (Linux's clear_refs "5"), so the peak read at
    the end is this rehearsal's, not that of whatever the process (a reused Ray worker, a pytest
    worker) ran before; returns the RSS now (None where /proc cannot do this)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return None
    return _proc_status_mb("VmRSS")


def _peak_memory_mb(device: torch.device) -> tuple[float, str, float | None]:
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory / 2**20
        return torch.cuda.max_memory_allocated(device) / 2**20, "device", total
    peak = _proc_status_mb("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak, "process RSS", None


def _busy_fraction(run: Callable[[], None], device: torch.device) -> float | None:
    """Share of `run`'s wall time the GPU spent in kernels (torch.profiler); None on a CPU or
    when the profiler gives no kernel times."""
    if device.type != "cuda":
        return None
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        began = time.perf_counter()
        run()
        _sync(device)
        wall = time.perf_counter() - began
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    busy_us = sum(getattr(e, "device_time", 0.0) or 0.0 for e in kernels)
    fraction = busy_us / 1e6 / wall if wall > 0 else None
    return fraction if fraction is not None and 0 < fraction <= 1.05 else None


def _loader_rate(batches: Iterable, device: torch.device, count: int) -> float:
    """Images per second the feed delivers on its own (on the device)."""
    iterator = iter(batches)
    images, _ = next(iterator)  # workers start, first batch
    began, seen = time.perf_counter(), 0
    for _ in range(count):
        images, _ = next(iterator, (None, None))
        if images is None:
            break
        to_device(images, device)
        seen += images.shape[0]
    _sync(device)
    return seen / max(time.perf_counter() - began, 1e-9)


def rehearse_shape(
    config: Any, device: torch.device, *, steps: int = 3, warmup: int = 1, seed: int = 0
) -> ShapeRehearsal:
    """Rehearse `config`'s trial shape on `device` (module docstring)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    resident_at_start = 0.0 if device.type == "cuda" else _start_cpu_peak()
    batches, info, feed = synthetic_batches(config, device, generator)
    model = build_network(config, info, config.method)
    parts, _ = assemble_step(model, config, device)
    model.train()
    tele = EpochTelemetry(device)
    stream = _forever(batches)
    clock = PhaseClock(device, model.metalayer)
    nonfinite = 0

    def one(mark: Callable[[str], None] | None, sampled: bool = False) -> str:
        images, labels = next(stream)
        images, labels = to_device(images, device), to_device(labels, device)
        if mark:
            mark("data")
        return train_step(parts, images, labels, tele, sampled=sampled, mark=mark)

    for _ in range(warmup):
        one(None, sampled=True)
    _sync(device)
    began = time.perf_counter()
    for _ in range(steps):
        one(None)
    _sync(device)
    step_s = (time.perf_counter() - began) / steps
    for _ in range(steps):
        clock.start()
        outcome = one(clock.mark)
        clock.finish()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if outcome == STEPPED and not all(bool(torch.isfinite(g).all()) for g in grads):
            nonfinite += 1
    busy = _busy_fraction(lambda: [one(None) for _ in range(steps)], device)
    peak, kind, total = _peak_memory_mb(device)
    loader = _loader_rate(batches, device, max(steps, 4))
    placement = model.metalayer.eigh_placement
    return ShapeRehearsal(
        shape=shape_label(config),
        row=config.row,
        device=str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        batch_size=config.batch_size,
        steps=steps,
        step_s=step_s,
        phases=clock.medians(),
        peak_memory_mb=peak,
        memory_kind=kind,
        device_memory_mb=total,
        loader_images_per_s=loader,
        demand_images_per_s=config.batch_size / step_s,
        feed=feed,
        failures=tele.failures,
        nonfinite_grad_steps=nonfinite,
        busy_fraction=busy,
        eigh_device=None if placement is None else placement.describe(),
        memory_added_mb=None if resident_at_start is None else peak - resident_at_start,
    )
