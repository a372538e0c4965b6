"""Datasets: digits (offline), CIFAR-10/100, ImageFolder trees (ImageNet, CUB, Dogs, Cars), fake.

``build_datasets(name, ...) -> (train, val, DataInfo)``. Each builder checks its data directory
before loading anything and raises ``DataError`` (one line naming the expected layout) when it is
missing or malformed. The splits are fixed (no seed): every trial of a grid sees the same data, so
rows stay paired.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from svdablate.data.provenance import DataInfo, describe_datasets

__all__ = ["DATASETS", "NORMALIZATIONS", "DataError", "DataInfo", "build_datasets"]
__all__ += ["describe_datasets", "digits_split"]

SMOKE_IMAGE = 16  # image size in smoke mode (the smallest the stems and heads run on)
SMOKE_TRAIN, SMOKE_VAL = 16, 8  # dataset sizes in smoke mode: 2 steps of 4, one small eval
DIGITS_IMAGE = 16  # digits are 8×8; upsampled to this
DIGITS_SPLIT_STATE = 0  # fixed random_state of the stratified 80/20 digits split

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
#: What CIFAR inputs are normalised with: "dataset" (each dataset's own mean/std, the default)
#: or a named dataset's constants. The official ECCV'22 CIFAR-100 script (main_cifar100.py,
#: a copy of main_cifar10.py down to its CIFAR-10 class names) uses CIFAR-10's: for CIFAR-100
#: that is ours ×(1.32, 1.29, 1.37) + (0.08, 0.02, −0.03) per channel.
Normalization = Literal["dataset", "cifar10", "cifar100"]
NORMALIZATIONS: dict[str, tuple[tuple, tuple]] = {
    "cifar10": (CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (CIFAR100_MEAN, CIFAR100_STD),
}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """Missing or malformed data: the message is one line naming the expected layout."""


def _subset(ds: Dataset, n: int) -> Dataset:
    """The first-n-evenly-spaced subset (deterministic), or ds itself when it is not larger."""
    size = len(ds)  # type: ignore[arg-type]
    if size <= n:
        return ds
    return Subset(ds, np.linspace(0, size - 1, n).round().astype(int).tolist())


# --------------------------------------------------------------------------------------- digits
class DigitsSplit(TensorDataset):
    """A digits split: (image, label) tensors plus the indices into ``load_digits()`` it holds."""

    def __init__(self, indices: np.ndarray, images: torch.Tensor, labels: torch.Tensor) -> None:
        idx = torch.as_tensor(indices, dtype=torch.long)
        super().__init__(images[idx], labels[idx])
        self.source_indices = idx


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits (8×8 images of 0–16, labels) and the fixed stratified 80/20 split.

    Cached per scikit-learn version in the cache folder (svdablate.cache): importing
    sklearn.datasets and sklearn.model_selection costs every driver and every trial ~2.3 s.
    """
    from importlib.metadata import version

    from svdablate.cache import cache_dir, write_atomically

    path = cache_dir() / f"digits-sklearn-{version('scikit-learn')}-split{DIGITS_SPLIT_STATE}.npz"
    try:
        with np.load(path, allow_pickle=False) as cached:
            return cached["images"], cached["target"], cached["train"], cached["val"]
    except (OSError, KeyError, ValueError):
        pass  # absent or damaged: made again below
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train, val = train_test_split(
        np.arange(len(digits.target)),
        test_size=0.2,
        stratify=digits.target,
        random_state=DIGITS_SPLIT_STATE,
    )
    images = digits.images.astype(np.uint8)  # integers 0–16: exact
    arrays = {"images": images, "target": digits.target, "train": train, "val": val}

    def write(partial: Path) -> None:
        with open(partial, "wb") as handle:
            np.savez(handle, **arrays)

    write_atomically(path, write)
    return images, digits.target, train, val


def _digits(data_dir: str | None, download: bool, smoke: bool) -> tuple[Dataset, Dataset, DataInfo]:
    """scikit-learn's 8×8 digits, fixed stratified 80/20 split, upsampled, standardised."""
    raw, target, tr, va = digits_split()
    images = raw.astype(np.float32) / 16.0
    x = torch.from_numpy(images).unsqueeze(1)
    x = torch.nn.functional.interpolate(
        x, size=(DIGITS_IMAGE, DIGITS_IMAGE), mode="bilinear", align_corners=False
    )
    y = torch.from_numpy(target.astype(np.int64))
    mean, std = x[tr].mean(), x[tr].std()
    x = (x - mean) / std
    train: Dataset = DigitsSplit(tr, x, y)
    val: Dataset = DigitsSplit(va, x, y)
    if smoke:
        train, val = _subset(train, SMOKE_TRAIN), _subset(val, SMOKE_VAL)
    return train, val, DataInfo(num_classes=10, in_channels=1, image_size=DIGITS_IMAGE)


# ---------------------------------------------------------------------------------------- CIFAR
@cache
def _cifar_class(name: str) -> type:
    """torchvision's CIFAR10/CIFAR100 with existence checks instead of md5 (archives are
    md5-checked). torchvision is imported here, on first use, not with this module."""
    from torchvision import datasets

    base = getattr(datasets, name)

    class Checked(base):  # type: ignore[misc, valid-type]
        train_list: ClassVar[list] = [[n, None] for n, _ in base.train_list]
        test_list: ClassVar[list] = [[n, None] for n, _ in base.test_list]
        meta: ClassVar[dict] = {**base.meta, "md5": None}

    Checked.__name__ = Checked.__qualname__ = f"_{name}"
    return Checked


def _cifar_transforms(mean: tuple, std: tuple) -> tuple[Callable, Callable]:
    """CIFAR recipe (both papers): random crop 32 pad 4 + horizontal flip; normalised."""
    from torchvision import transforms as T

    norm = T.Normalize(mean, std)
    train = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    val = T.Compose([T.ToTensor(), norm])
    return train, val


def _cifar(
    name: str, torchvision_name: str, label: str, classes: int, mean: tuple, std: tuple
) -> Callable[..., tuple[Dataset, Dataset, DataInfo]]:
    def build(
        data_dir: str | None, download: bool, smoke: bool
    ) -> tuple[Dataset, Dataset, DataInfo]:
        """torchvision CIFAR from ``data_dir`` (downloaded there when ``download``)."""
        cls = _cifar_class(torchvision_name)
        files = [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        listed = ",".join(files).replace(
            ",".join(f"data_batch_{i}" for i in range(1, 6)), "data_batch_1..5"
        )

        def layout(d: object) -> str:
            return f"{d}/{cls.base_folder}/{{{listed}}}"

        if data_dir is None:
            raise DataError(
                f"{name}: no data directory given (expected {layout('DIR')}); "
                "pass --data-dir (and --download to fetch it)"
            )
        root = Path(data_dir).expanduser()
        if download:
            try:
                cls(str(root), train=True, download=True)
            except Exception as e:  # network or archive failure: one line, before training
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise DataError(f"{name}: download into {root} failed: {msg}") from e
        missing = [f for f in files if not (root / cls.base_folder / f).is_file()]
        if missing:
            what = "" if len(missing) == len(files) else f"; missing {', '.join(missing)}"
            raise DataError(
                f"{name}: no {label} python files under {root} (expected "
                f"{layout(root)}{what}); "
                "pass --data-dir or --download"
            )
        train_tf, val_tf = _cifar_transforms(mean, std)
        try:
            train: Dataset = cls(str(root), train=True, transform=train_tf)
            val: Dataset = cls(str(root), train=False, transform=val_tf)
        except Exception as e:
            raise DataError(
                f"{name}: malformed {label} files under {root / cls.base_folder} "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                f"expected pickles with 'data' (uint8 N×3072) and labels"
            ) from e
        n_labels = len(set(train.targets))  # type: ignore[attr-defined]
        if n_labels > classes or max(train.targets) >= classes:  # type: ignore[attr-defined]
            raise DataError(f"{name}: labels under {root} exceed {classes} classes")
        if smoke:
            train, val = _subset(train, SMOKE_TRAIN), _subset(val, SMOKE_VAL)
        return train, val, DataInfo(num_classes=classes, in_channels=3, image_size=32)

    return build


# ---------------------------------------------------------------------------------- ImageFolder
def _imagenet_transforms(size: int) -> tuple[Callable, Callable]:
    from torchvision import transforms as T

    """ImageNet recipe: RandomResizedCrop + flip / Resize(size·8/7) + CenterCrop."""
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    val = T.Compose([T.Resize(size * 256 // 224), T.CenterCrop(size), T.ToTensor(), norm])
    return train, val


def _fgvc_transforms(name: str, size: int) -> tuple[Callable, Callable]:
    from torchvision import transforms as T

    """The ICCV'21 official FGVC recipe (448 crops; per-dataset resize) scaled to ``size``."""
    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if name == "cub200":  # Resize(448) + CenterCrop(448)
        pre: list[Any] = [T.Resize(size), T.CenterCrop(size)]
    elif name == "dogs":  # Resize((512, 512)) + CenterCrop(448)
        big = size * 512 // 448
        pre = [T.Resize((big, big)), T.CenterCrop(size)]
    else:  # cars: Resize((448, 448))
        pre = [T.Resize((size, size))]
    train = T.Compose([*pre, T.RandomHorizontalFlip(), T.ToTensor(), norm])
    val = T.Compose([*pre, T.ToTensor(), norm])
    return train, val


def _has_images(d: Path) -> bool:
    return any(
        p.suffix.lower() in IMAGE_EXTENSIONS for c in d.iterdir() if c.is_dir() for p in c.iterdir()
    )


def _image_folder(
    name: str, size: int, transforms: Callable[[int], tuple[Callable, Callable]]
) -> Callable[..., tuple[Dataset, Dataset, DataInfo]]:
    def build(
        data_dir: str | None, download: bool, smoke: bool
    ) -> tuple[Dataset, Dataset, DataInfo]:
        """ImageFolder tree: ``data_dir/{train,val}/<class>/<image>`` (or ``data_dir/<name>/…``)."""
        layout = "{d}/train/<class>/*.jpg and {d}/val/<class>/*.jpg"
        if data_dir is None:
            raise DataError(
                f"{name}: no data directory given (expected {layout.format(d='DIR')}); "
                "pass --data-dir"
            )
        base = Path(data_dir).expanduser()
        root = next(
            (r for r in (base, base / name) if (r / "train").is_dir() and (r / "val").is_dir()),
            base,
        )
        expected = f"expected {layout.format(d=root)}"
        for split in ("train", "val"):
            if not (root / split).is_dir() or not _has_images(root / split):
                raise DataError(
                    f"{name}: no ImageFolder tree under {root} ({expected}); pass --data-dir"
                    + ("" if not download else f" ({name} cannot be downloaded)")
                )
        s = SMOKE_IMAGE if smoke else size
        train_tf, val_tf = transforms(s)
        from torchvision.datasets import ImageFolder

        try:
            train = ImageFolder(str(root / "train"), transform=train_tf)
            val = ImageFolder(str(root / "val"), transform=val_tf)
        except (FileNotFoundError, OSError) as e:
            raise DataError(f"{name}: malformed ImageFolder tree under {root} ({expected})") from e
        if train.classes != val.classes:
            raise DataError(
                f"{name}: train/ and val/ under {root} have different class folders "
                f"({len(train.classes)} vs {len(val.classes)}; {expected})"
            )
        n = len(train.classes)
        tr: Dataset = train
        va: Dataset = val
        if smoke:
            tr, va = _subset(train, SMOKE_TRAIN), _subset(val, SMOKE_VAL)
        return tr, va, DataInfo(num_classes=n, in_channels=3, image_size=s)

    return build


# ----------------------------------------------------------------------------------------- fake
FAKE_SHAPES: dict[str, tuple[int, int, int, tuple, tuple]] = {
    # name: (num_classes, in_channels, image_size, mean, std)
    "digits": (10, 1, DIGITS_IMAGE, (0.5,), (0.25,)),
    "cifar10": (10, 3, 32, CIFAR10_MEAN, CIFAR10_STD),
    "cifar100": (100, 3, 32, CIFAR100_MEAN, CIFAR100_STD),
    "imagenet": (1000, 3, 224, IMAGENET_MEAN, IMAGENET_STD),
    "cub200": (200, 3, 448, IMAGENET_MEAN, IMAGENET_STD),
    "dogs": (120, 3, 448, IMAGENET_MEAN, IMAGENET_STD),
    "cars": (196, 3, 448, IMAGENET_MEAN, IMAGENET_STD),
}
FAKE_SIZES = (2048, 512)  # (train, val) images when not in smoke mode
FAKE_VAL_OFFSET = 1_000_003  # FakeData random_offset of the val split (disjoint from train)


def _fake(
    mimic: str, stats: tuple[tuple, tuple] | None = None
) -> Callable[..., tuple[Dataset, Dataset, DataInfo]]:
    def build(
        data_dir: str | None, download: bool, smoke: bool
    ) -> tuple[Dataset, Dataset, DataInfo]:
        """torchvision FakeData with ``mimic``'s class count, channels and image size."""
        classes, channels, size, mean, std = FAKE_SHAPES[mimic]
        mean, std = stats or (mean, std)
        s = min(size, SMOKE_IMAGE) if smoke else size
        n_train, n_val = (SMOKE_TRAIN, SMOKE_VAL) if smoke else FAKE_SIZES
        from torchvision import transforms as T
        from torchvision.datasets import FakeData

        tf = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
        train = FakeData(n_train, (channels, s, s), classes, transform=tf, random_offset=0)
        val = FakeData(
            n_val, (channels, s, s), classes, transform=tf, random_offset=FAKE_VAL_OFFSET
        )
        return train, val, DataInfo(num_classes=classes, in_channels=channels, image_size=s)

    return build


_CIFAR = {"cifar10": ("CIFAR10", "CIFAR-10", 10), "cifar100": ("CIFAR100", "CIFAR-100", 100)}
DATASETS: dict[str, Callable[..., tuple[Dataset, Dataset, DataInfo]]] = {
    "digits": _digits,
    **{k: _cifar(k, *_CIFAR[k], *NORMALIZATIONS[k]) for k in _CIFAR},
    "imagenet": _image_folder("imagenet", 224, _imagenet_transforms),
    "cub200": _image_folder("cub200", 448, lambda s: _fgvc_transforms("cub200", s)),
    "dogs": _image_folder("dogs", 448, lambda s: _fgvc_transforms("dogs", s)),
    "cars": _image_folder("cars", 448, lambda s: _fgvc_transforms("cars", s)),
    "fake": _fake("cifar100"),
    **{f"fake-{m}": _fake(m) for m in FAKE_SHAPES},
}


def _builder(key: str, normalization: str) -> Callable[..., tuple[Dataset, Dataset, DataInfo]]:
    """The builder of dataset ``key`` normalising with ``normalization`` (NORMALIZATIONS)."""
    if normalization == "dataset":
        return DATASETS[key]
    if normalization not in NORMALIZATIONS:
        valid = ", ".join(["dataset", *NORMALIZATIONS])
        raise ValueError(f"unknown normalization {normalization!r}; valid: {valid}")
    stats = NORMALIZATIONS[normalization]
    if key in _CIFAR:
        return _cifar(key, *_CIFAR[key], *stats)
    mimic = "cifar100" if key == "fake" else key.removeprefix("fake-")
    if key.startswith("fake") and mimic in _CIFAR:
        return _fake(mimic, stats)
    raise ValueError(
        f"normalization {normalization!r} applies to CIFAR (and fake CIFAR) only; "
        f"{key} is normalised with its own constants: use normalization='dataset'"
    )


def build_datasets(
    name: str,
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    smoke: bool = False,
    like: str | None = None,
    normalization: Normalization = "dataset",
) -> tuple[Dataset, Dataset, DataInfo]:
    """(train, val, DataInfo) of ``name``; ``like`` picks what ``fake`` mimics (``fake-<name>``);
    ``normalization``: CIFAR inputs normalised with their own mean/std or another's."""
    key = name.lower().replace(":", "-")
    if key == "fake" and like:
        key = f"fake-{like.lower()}"
    if key not in DATASETS:
        valid = ", ".join(DATASETS)
        raise ValueError(f"unknown dataset {name!r} (like={like!r}); valid: {valid}")
    build = _builder(key, normalization)
    return build(None if data_dir is None else str(data_dir), download, smoke)
