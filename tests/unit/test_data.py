"""Datasets: digits split, CIFAR pickles and ImageFolder trees via real loaders, fake, errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from svdablate.data.datasets import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    DATASETS,
    SMOKE_IMAGE,
    SMOKE_TRAIN,
    SMOKE_VAL,
    DataError,
    DataInfo,
    build_datasets,
)


# ------------------------------------------------------------------------------------- digits
def test_digits_from_the_cache_equal_scikit_learns_own(tmp_path, monkeypatch) -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from svdablate.cache import CACHE_DIR_ENV
    from svdablate.data.datasets import DIGITS_SPLIT_STATE, digits_split

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    digits = load_digits()
    train, val = train_test_split(
        np.arange(1797), test_size=0.2, stratify=digits.target, random_state=DIGITS_SPLIT_STATE
    )
    made = digits_split()  # computed, then cached
    assert len(list(tmp_path.glob("digits-*.npz"))) == 1
    cached = digits_split()  # read back
    for got in (made, cached):
        assert np.array_equal(got[0], digits.images) and np.array_equal(got[1], digits.target)
        assert np.array_equal(got[2], train) and np.array_equal(got[3], val)
    next(tmp_path.glob("digits-*.npz")).write_bytes(b"damaged")
    assert np.array_equal(digits_split()[2], train)  # a damaged cache is remade
    monkeypatch.setenv(CACHE_DIR_ENV, str(next(tmp_path.glob("digits-*.npz"))))  # a file
    assert np.array_equal(digits_split()[2], train)  # an unusable cache folder is passed over


def test_digits_split_fixed_disjoint_stratified_normalised() -> None:
    tr, va, info = build_datasets("digits")
    tr2, va2, _ = build_datasets("digits")
    assert info == DataInfo(num_classes=10, in_channels=1, image_size=16)
    assert (len(tr), len(va)) == (1437, 360)
    a, b = tr.source_indices, va.source_indices
    assert set(a.tolist()).isdisjoint(b.tolist())
    assert sorted(a.tolist() + b.tolist()) == list(range(1797))
    # fixed: a second build gives the same indices and the same tensors
    assert torch.equal(a, tr2.source_indices) and torch.equal(b, va2.source_indices)
    assert torch.equal(tr.tensors[0], tr2.tensors[0]) and torch.equal(va.tensors[1], va2.tensors[1])
    # stratified: every class ~20% in val
    counts_tr = torch.bincount(tr.tensors[1], minlength=10).float()
    counts_va = torch.bincount(va.tensors[1], minlength=10).float()
    frac = counts_va / (counts_tr + counts_va)
    assert torch.all((frac - 0.2).abs() < 0.02)
    x, y = tr[0]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(tr.tensors[0].mean().item()) < 1e-4
    assert abs(tr.tensors[0].std().item() - 1) < 1e-3


def test_digits_smoke_is_smaller() -> None:
    tr, va, info = build_datasets("digits", smoke=True)
    assert len(tr) == SMOKE_TRAIN and len(va) == SMOKE_VAL
    assert info.image_size == 16


# -------------------------------------------------------------------------------------- CIFAR
def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _write_cifar10(root: Path, n: int = 4, skip: str | None = None) -> np.ndarray:
    """Tiny CIFAR-10 python tree (the pickle format torchvision reads); returns test data."""
    rng = np.random.default_rng(0)
    base = root / "cifar-10-batches-py"
    test = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        if name == "test_batch":
            test = data
        if name != skip:
            _pickle(base / name, {"data": data, "labels": [int(v) for v in rng.integers(0, 10, n)]})
    if skip != "batches.meta":
        _pickle(base / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    return test


def test_cifar10_tiny_pickles_load_through_torchvision(tmp_path: Path) -> None:
    test = _write_cifar10(tmp_path)
    tr, va, info = build_datasets("cifar10", data_dir=tmp_path)
    assert info == DataInfo(num_classes=10, in_channels=3, image_size=32)
    assert (len(tr), len(va)) == (20, 4)
    x, y = va[1]
    assert x.shape == (3, 32, 32) and isinstance(y, int) and 0 <= y < 10
    # val transform is exactly ToTensor + CIFAR normalisation of the stored CHW row
    mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(3, 1, 1)
    raw = torch.from_numpy(test[1].reshape(3, 32, 32).astype(np.float32) / 255)
    assert torch.allclose(x * std + mean, raw, atol=1e-5)
    # train transform augments (crop+flip) but keeps the shape
    assert tr[0][0].shape == (3, 32, 32)


def _write_cifar100(root: Path) -> np.ndarray:
    base = root / "cifar-100-python"
    rng = np.random.default_rng(1)
    for name, n in (("train", 6), ("test", 3)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        _pickle(
            base / name,
            {"data": data, "fine_labels": [99, 0, 5, 42, 7, 1][:n], "coarse_labels": [0] * n},
        )
    _pickle(base / "meta", {"fine_label_names": [f"f{i}" for i in range(100)]})
    return data  # the test split's pixels


def test_cifar100_tiny_pickles_load_fine_labels(tmp_path: Path) -> None:
    _write_cifar100(tmp_path)
    tr, va, info = build_datasets("cifar100", data_dir=str(tmp_path))
    assert info.num_classes == 100 and (len(tr), len(va)) == (6, 3)
    assert [va[i][1] for i in range(3)] == [99, 0, 5]


@pytest.mark.parametrize(
    ("normalization", "stats"),
    [("dataset", (CIFAR100_MEAN, CIFAR100_STD)), ("cifar10", (CIFAR10_MEAN, CIFAR10_STD))],
)
def test_cifar100_normalisation_own_by_default_or_the_official_scripts(
    tmp_path: Path, normalization: str, stats: tuple
) -> None:
    """CIFAR-100 with its own mean/std (default), or CIFAR-10's as the official ECCV'22
    CIFAR-100 script; fake CIFAR-100 follows the same choice."""
    test = _write_cifar100(tmp_path)
    _, va, _ = build_datasets("cifar100", data_dir=tmp_path, normalization=normalization)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in stats)
    raw = torch.from_numpy(test[0].reshape(3, 32, 32).astype(np.float32) / 255)
    assert torch.allclose(va[0][0] * std + mean, raw, atol=1e-5)
    _, va, _ = build_datasets("fake", like="cifar100", smoke=True, normalization=normalization)
    assert va.transform.transforms[-1].mean == stats[0]


def test_other_normalisations_are_refused_where_they_do_not_apply() -> None:
    with pytest.raises(ValueError, match="valid: dataset, cifar10, cifar100"):
        build_datasets("fake", smoke=True, normalization="cifar1000")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"CIFAR .* only"):
        build_datasets("digits", normalization="cifar10")


def test_cifar_missing_dir_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        build_datasets("cifar100", data_dir=None)
    assert "cifar-100-python" in str(e.value) and "\n" not in str(e.value)
    missing = tmp_path / "nope"
    with pytest.raises(DataError) as e:
        build_datasets("cifar100", data_dir=missing)
    msg = str(e.value)
    assert "\n" not in msg
    assert f"{missing}/cifar-100-python/{{train,test,meta}}" in msg and "--download" in msg
    assert isinstance(e.value, ValueError)


def test_cifar_partial_and_malformed_are_data_errors(tmp_path: Path) -> None:
    _write_cifar10(tmp_path, skip="test_batch")
    with pytest.raises(DataError, match="missing test_batch"):
        build_datasets("cifar10", data_dir=tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="malformed") as e:
        build_datasets("cifar10", data_dir=tmp_path)
    assert "\n" not in str(e.value)


# -------------------------------------------------------------------------------- ImageFolder
def _write_tree(root: Path, classes: tuple[str, ...] = ("ant", "bee"), size: int = 40) -> None:
    rng = np.random.default_rng(2)
    for split in ("train", "val"):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(2):
                arr = rng.integers(0, 256, size=(size, size + 6, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"{i}.png")


def test_image_folder_tree_smoke_and_full_sizes(tmp_path: Path) -> None:
    _write_tree(tmp_path)
    tr, va, info = build_datasets("imagenet", data_dir=tmp_path, smoke=True)
    assert info == DataInfo(num_classes=2, in_channels=3, image_size=SMOKE_IMAGE)
    assert (len(tr), len(va)) == (4, 4)
    x, y = tr[3]
    assert x.shape == (3, SMOKE_IMAGE, SMOKE_IMAGE) and y == 1
    assert va[0][0].shape == (3, SMOKE_IMAGE, SMOKE_IMAGE)
    tr, va, info = build_datasets("cars", data_dir=tmp_path)
    assert info.image_size == 448 and va[0][0].shape == (3, 448, 448)
    tr, va, info = build_datasets("dogs", data_dir=tmp_path, smoke=True)
    assert tr[0][0].shape == (3, SMOKE_IMAGE, SMOKE_IMAGE)


def test_image_folder_nested_under_dataset_name(tmp_path: Path) -> None:
    _write_tree(tmp_path / "cub200", classes=("a", "b", "c"))
    _, va, info = build_datasets("cub200", data_dir=tmp_path, smoke=True)
    assert info.num_classes == 3 and len(va) == 6


def test_image_folder_missing_or_malformed(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"/train/<class>/\*\.jpg") as e:
        build_datasets("imagenet", data_dir=tmp_path)
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="no data directory"):
        build_datasets("dogs")
    (tmp_path / "train" / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "train" / "a" / "x.png")
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match="no ImageFolder tree"):
        build_datasets("imagenet", data_dir=tmp_path)
    (tmp_path / "val" / "b").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "val" / "b" / "x.png")
    with pytest.raises(DataError, match="different class folders"):
        build_datasets("imagenet", data_dir=tmp_path)


# --------------------------------------------------------------------------------------- fake
def test_fake_mimics_shapes() -> None:
    tr, va, info = build_datasets("fake", smoke=True)
    assert info == DataInfo(num_classes=100, in_channels=3, image_size=SMOKE_IMAGE)
    assert (len(tr), len(va)) == (SMOKE_TRAIN, SMOKE_VAL)
    x, y = tr[0]
    assert x.shape == (3, SMOKE_IMAGE, SMOKE_IMAGE) and 0 <= int(y) < 100
    assert not torch.equal(tr[0][0], va[0][0])  # val draws different images
    _, _, info = build_datasets("fake", like="imagenet")
    assert info == DataInfo(num_classes=1000, in_channels=3, image_size=224)
    _, va, info = build_datasets("fake-cub200", smoke=True)
    assert info.num_classes == 200 and va[0][0].shape == (3, SMOKE_IMAGE, SMOKE_IMAGE)


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="digits"):
        build_datasets("mnist")
    assert {"digits", "cifar10", "cifar100", "imagenet", "cub200", "dogs", "cars", "fake"} <= set(
        DATASETS
    )
