"""Where a trial's batches come from: CIFAR from the device, everything else from a DataLoader.

CIFAR (torchvision's datasets, also a smoke Subset of them) becomes :class:`DeviceBatches`: the
split as a uint8 tensor on the training device, augmented there a batch at a time (no loader
workers at all). Every other dataset keeps a DataLoader whose workers default to the trial's CPUs
when it trains on a GPU (``num_workers`` unset; on a CPU they would take the cores the training
uses), persistent across epochs, prefetching, with pinned memory for non-blocking copies.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.utils.data import DataLoader, Dataset

from svdablate.data.datasets import NORMALIZATIONS
from svdablate.data.device_batches import DeviceBatches, cifar_arrays

PREFETCH_BATCHES = 4  # per worker


def loader_workers(requested: int | None, device: torch.device) -> int:
    """`num_workers` as set, else the trial's CPUs (torch's threads, which the runner sets to
    ``cpus_per_trial``) on a GPU and none on a CPU."""
    if requested is not None:
        return requested
    return torch.get_num_threads() if device.type == "cuda" else 0


def _normalization(dataset: str, normalization: str) -> tuple[tuple, tuple]:
    return NORMALIZATIONS[dataset if normalization == "dataset" else normalization]


def make_batches(
    train_set: Dataset,
    val_set: Dataset,
    *,
    dataset: str,
    normalization: str,
    batch_size: int,
    num_workers: int | None,
    device: torch.device,
    generator: torch.Generator,
) -> tuple[Iterable, Iterable, str]:
    """(training batches, validation batches, what feeds them: `device` or `loader×N`)."""
    train_arrays, val_arrays = cifar_arrays(train_set), cifar_arrays(val_set)
    if train_arrays is not None and val_arrays is not None and dataset in NORMALIZATIONS:
        mean, std = _normalization(dataset, normalization)
        common = {"batch_size": batch_size, "mean": mean, "std": std, "device": device}
        train = DeviceBatches(*train_arrays, generator=generator, **common)
        val = DeviceBatches(*val_arrays, augment=False, **common)
        return train, val, "device"
    workers = loader_workers(num_workers, device)
    options = {
        "batch_size": batch_size,
        "num_workers": workers,
        "pin_memory": device.type == "cuda",
        "persistent_workers": workers > 0,
        "prefetch_factor": PREFETCH_BATCHES if workers > 0 else None,
    }
    train = DataLoader(train_set, shuffle=True, drop_last=True, generator=generator, **options)
    return train, DataLoader(val_set, **options), f"loader×{workers}"
