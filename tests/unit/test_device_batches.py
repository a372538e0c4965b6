"""CIFAR on the device (`svdablate.data.device_batches`): the same augmentation distribution and
the same normalised values as torchvision's transforms, without a DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torch.utils.data import Subset
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from svdablate.data.datasets import CIFAR100_MEAN, CIFAR100_STD
from svdablate.data.device_batches import (
    DeviceBatches,
    cifar_arrays,
    crop_and_flip,
    draw_augmentation,
)

CPU = torch.device("cpu")


class _Cifar:
    """What torchvision's CIFAR datasets hold: `data` (N, 32, 32, 3) uint8 and `targets`."""

    def __init__(self, data: np.ndarray, targets: list[int]) -> None:
        self.data, self.targets = data, targets

    def __len__(self) -> int:
        return len(self.targets)


def _coordinate_image() -> np.ndarray:
    """32×32×3 uint8: channel 0 holds row + 1, channel 1 column + 1 (the zero padding is 0)."""
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    return np.stack([rows + 1, cols + 1, np.full_like(rows, 7)], axis=-1).astype(np.uint8)


def _offsets(crops: np.ndarray) -> np.ndarray:
    """(top, left, flipped) of crops (N, 3, 32, 32) of the coordinate image: the centre pixel's
    row and column tell the offsets, the direction of its row the flip."""
    top = crops[:, 0, 16, 16].astype(int) - 13
    flipped = crops[:, 1, 16, 17].astype(int) < crops[:, 1, 16, 15].astype(int)
    centre = crops[:, 1, 16, 16].astype(int)
    left = np.where(flipped, centre - 1 - 15 + 4, centre - 1 - 16 + 4)
    return np.stack([top, left, flipped.astype(int)], axis=1)


def test_a_crop_at_given_offsets_is_torchvisions_crop_of_the_padded_image() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=g)
    top, left, flip = torch.tensor([0, 8, 3, 4, 8, 0]), torch.tensor([0, 8, 5, 1, 0, 8]), None
    flip = torch.tensor([False, True, True, False, False, True])
    out = crop_and_flip(images, top, left, flip)
    for k in range(6):
        expected = TF.crop(TF.pad(images[k], [4]), int(top[k]), int(left[k]), 32, 32)
        expected = TF.hflip(expected) if flip[k] else expected
        assert torch.equal(out[k], expected), k


def test_the_draws_follow_torchvisions_random_crop_and_flip() -> None:
    """χ² tests: ours against torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip on
    the offsets and the flip, and ours against the uniform 9 × 9 × 2 law it must be."""
    image = _coordinate_image()
    torch.manual_seed(0)
    recipe = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.PILToTensor()])
    pil = Image.fromarray(image)
    theirs = _offsets(np.stack([recipe(pil).numpy() for _ in range(3000)]))
    n = 20000
    g = torch.Generator().manual_seed(1)
    top, left, flip = draw_augmentation(n, g)
    batch = torch.from_numpy(image).permute(2, 0, 1).expand(n, 3, 32, 32)
    ours = _offsets(crop_and_flip(batch, top, left, flip).numpy())
    assert np.array_equal(ours, torch.stack([top, left, flip.long()], dim=1).numpy())
    for column, cells in ((0, 9), (1, 9), (2, 2)):
        table = [np.bincount(x[:, column], minlength=cells) for x in (ours, theirs)]
        assert stats.chi2_contingency(np.array(table)).pvalue > 1e-3, column
    joint = np.bincount(ours[:, 0] * 18 + ours[:, 1] * 2 + ours[:, 2], minlength=162)
    assert stats.chisquare(joint).pvalue > 1e-3
    assert theirs[:, 0].min() == 0 and theirs[:, 0].max() == 8  # the decoding sees the range


def test_batches_cover_a_shuffled_epoch_and_normalise_as_torchvision() -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    targets = list(rng.integers(0, 100, 50))
    arrays = cifar_arrays(Subset(_Cifar(data, targets), list(range(5, 45))))
    assert arrays is not None and arrays[0].shape == (40, 32, 32, 3)
    assert arrays[1].tolist() == targets[5:45]
    kwargs = dict(batch_size=16, mean=CIFAR100_MEAN, std=CIFAR100_STD, device=CPU)
    val = DeviceBatches(data, np.array(targets), augment=False, **kwargs)
    got = torch.cat([images for images, _ in val])
    reference = T.Compose([T.ToTensor(), T.Normalize(CIFAR100_MEAN, CIFAR100_STD)])
    assert torch.equal(got, torch.stack([reference(Image.fromarray(x)) for x in data]))
    train = DeviceBatches(data, np.arange(50), generator=torch.Generator().manual_seed(0), **kwargs)
    labels = [lab for _, lab in train]
    assert len(labels) == len(train) == 3  # drop_last, as the DataLoader it replaces
    seen = torch.cat(labels)
    assert len(set(seen.tolist())) == 48 and seen.tolist() != sorted(seen.tolist())


def test_other_datasets_keep_their_loader() -> None:
    assert cifar_arrays(torch.utils.data.TensorDataset(torch.zeros(3, 1, 8, 8))) is None
    assert cifar_arrays(_Cifar(np.zeros((2, 16, 16, 3), np.uint8), [0, 1])) is None


@pytest.mark.parametrize("batch", [1, 7])
def test_a_resumed_generator_draws_the_same_epoch(batch: int) -> None:
    data = np.random.default_rng(1).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    g = torch.Generator().manual_seed(3)
    kwargs = dict(batch_size=batch, mean=CIFAR100_MEAN, std=CIFAR100_STD, device=CPU)
    state = g.get_state()
    first = [x for x, _ in DeviceBatches(data, np.arange(20), generator=g, **kwargs)]
    g.set_state(state)
    again = [x for x, _ in DeviceBatches(data, np.arange(20), generator=g, **kwargs)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
