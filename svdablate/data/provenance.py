"""What MLflow records of a trial's data: a digest of both splits' content and a profile.

``describe_datasets`` (re-exported by ``svdablate.data.datasets``) identifies a split without
reading every image: a Subset by its indices, tensors and CIFAR by their arrays, FakeData by its
parameters, an ImageFolder by its file names and labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset, Subset, TensorDataset


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about a dataset (and what its profile records)."""

    num_classes: int
    in_channels: int
    image_size: int


def _content_hash(ds: Dataset, hasher: Any) -> None:
    """Feed what identifies a split's content to `hasher`, without reading every image file."""
    if isinstance(ds, Subset):
        hasher.update(np.asarray(ds.indices, dtype=np.int64).tobytes())
        _content_hash(ds.dataset, hasher)
    elif isinstance(ds, TensorDataset):
        for tensor in ds.tensors:
            hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    elif type(ds).__name__ == "FakeData":  # torchvision's: its parameters are its content
        hasher.update(repr((ds.size, ds.image_size, ds.num_classes, ds.random_offset)).encode())
    elif hasattr(ds, "samples"):  # ImageFolder: the files and labels, by name
        hasher.update(repr(sorted((str(Path(p).name), c) for p, c in ds.samples)).encode())
    elif hasattr(ds, "data"):  # torchvision CIFAR: the pixel array and labels
        hasher.update(np.ascontiguousarray(ds.data).tobytes())
        hasher.update(np.asarray(ds.targets, dtype=np.int64).tobytes())
    else:  # pragma: no cover - a dataset type this module does not build
        hasher.update(f"{type(ds).__name__}:{len(ds)}".encode())  # type: ignore[arg-type]


def describe_datasets(
    name: str, train: Dataset, val: Dataset, info: DataInfo, source: str
) -> dict[str, Any]:
    """What MLflow's `log_input` records of a trial's data: name, a digest of both splits'
    content (equal digests: the same images and labels), where it came from, and a profile."""
    import hashlib
    import json

    hasher = hashlib.sha256()
    _content_hash(train, hasher)
    _content_hash(val, hasher)
    profile = {
        "train": len(train),  # type: ignore[arg-type]
        "val": len(val),  # type: ignore[arg-type]
        "classes": info.num_classes,
        "channels": info.in_channels,
        "image_size": info.image_size,
    }
    return {
        "name": name,
        "digest": hasher.hexdigest()[:16],
        "source": source,
        "profile": json.dumps(profile),
    }
