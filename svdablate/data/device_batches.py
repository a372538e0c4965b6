"""CIFAR on the training device: the whole split as one uint8 tensor, augmented a batch at a time.

CIFAR's 50 000 training images are 150 MB as uint8: they fit on any GPU, and the recipe of both
papers (random crop 32 with zero padding 4, horizontal flip with probability ½, then ToTensor and
Normalize) is a few tensor operations on a batch. :class:`DeviceBatches` replaces the DataLoader
for CIFAR: no loader workers, no PIL, no per-image Python, no host-to-device copy per step.

Its draws follow torchvision's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``: the
crop's top and left offsets are each uniform on {0, …, 8} (independent), the flip a fair coin
(tests/unit/test_device_batches.py compares the two by a χ² test on many draws). The random numbers
come from the loop's CPU ``torch.Generator`` (the one a trial checkpoints as ``loader_rng``), so a
resumed trial draws what it would have drawn. ToTensor + Normalize are the same float32
operations torchvision runs (``x / 255``, then ``(x − mean) / std``): the same values.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

PAD = 4  # RandomCrop(32, padding=4)
SIZE = 32


def cifar_arrays(dataset: Dataset) -> tuple[np.ndarray, np.ndarray] | None:
    """(images N×32×32×3 uint8, labels) of a torchvision CIFAR dataset or a Subset of one; None
    for any other dataset (it keeps its DataLoader)."""
    indices = None
    if isinstance(dataset, Subset):
        dataset, indices = dataset.dataset, np.asarray(dataset.indices)
    data = getattr(dataset, "data", None)
    targets = getattr(dataset, "targets", None)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (32, 32, 3):
        return None
    labels = np.asarray(targets, dtype=np.int64)
    if indices is not None:
        data, labels = data[indices], labels[indices]
    return data, labels


def normalize(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 (B, 3, H, W) → float32, as ToTensor + Normalize: x / 255, then (x − mean) / std."""
    return images.to(torch.float32).div_(255).sub_(mean).div_(std)


def draw_augmentation(batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """A batch's crop offsets (top, left, each uniform on 0..2·PAD) and flips (fair coins)."""
    top = torch.randint(0, 2 * PAD + 1, (batch,), generator=generator)
    left = torch.randint(0, 2 * PAD + 1, (batch,), generator=generator)
    flip = torch.rand(batch, generator=generator) < 0.5
    return top, left, flip


def crop_and_flip(images: Tensor, top: Tensor, left: Tensor, flip: Tensor) -> Tensor:
    """Zero-pad (B, C, 32, 32) by PAD, crop 32×32 at (top, left) per image, mirror where `flip`
    (offsets and flips on the images' device)."""
    padded = F.pad(images, (PAD, PAD, PAD, PAD))
    steps = torch.arange(SIZE, device=images.device)
    rows = (top.unsqueeze(1) + steps).unsqueeze(2)  # (B, 32, 1)
    cols = left.unsqueeze(1) + steps  # (B, 32)
    mirrored = torch.where(flip.unsqueeze(1), cols.flip(1), cols).unsqueeze(1)
    batch = torch.arange(images.shape[0], device=images.device).view(-1, 1, 1)
    return padded[batch, :, rows, mirrored].permute(0, 3, 1, 2)  # (B, 32, 32, C) → (B, C, 32, 32)


class DeviceBatches:
    """Shuffled, augmented, normalised CIFAR batches from a uint8 tensor on `device`.

    Iterating gives (images float32 (B, 3, 32, 32), labels) for one epoch: a permutation from
    `generator`, `drop_last` as the DataLoader it replaces. With `augment=False` (validation) the
    batches come in order, unaugmented, the last one short.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device,
        generator: torch.Generator | None = None,
        augment: bool = True,
    ) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        self.images = self.images.contiguous().to(device)
        self.labels = torch.from_numpy(labels).to(device)
        self.batch_size = batch_size
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.generator = generator
        self.augment = augment

    def __len__(self) -> int:
        n = self.labels.shape[0]
        return n // self.batch_size if self.augment else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = self.labels.shape[0]
        if not self.augment:
            for start in range(0, n, self.batch_size):
                chunk = slice(start, start + self.batch_size)
                yield normalize(self.images[chunk], self.mean, self.std), self.labels[chunk]
            return
        # every random number of the epoch drawn at once and copied once: a per-step copy from
        # host memory would synchronise the device each step
        order = torch.randperm(n, generator=self.generator)
        draws = draw_augmentation(n, self.generator)
        order, top, left, flip = (t.to(self.labels.device) for t in (order, *draws))
        for step in range(len(self)):
            chunk = slice(step * self.batch_size, (step + 1) * self.batch_size)
            images = crop_and_flip(self.images[order[chunk]], top[chunk], left[chunk], flip[chunk])
            yield normalize(images, self.mean, self.std), self.labels[order[chunk]]
