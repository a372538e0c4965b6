"""Checks and facts gathered on the driver before trials start: the data, the Ray cluster's
resources, and the names of runs."""

from __future__ import annotations

from typing import Any

from svdablate.errors import UserError
from svdablate.spec.config import Resources, TrialConfig

#: The axes that tell a row's trials apart in a run's name when the study varies them.
NAME_AXES = ("reported_dataset", "protocol", "precision")
#: Per `TrialConfig.data_key`, what MLflow's `log_input` records of that data.
DataRecords = dict[tuple[Any, ...], dict[str, str]]


def _source(config: TrialConfig) -> str:
    if config.dataset == "fake":
        return f"torchvision FakeData shaped like {config.fake_like or 'cifar100'}"
    if config.dataset == "digits":
        return "scikit-learn load_digits (fixed stratified 80/20 split)"
    return str(config.data_dir or "")


def check_data(configs: list[TrialConfig]) -> DataRecords:
    """Open every dataset of the grid once on the driver, so a bad --data-dir fails before Ray;
    returns, per `data_key`, what MLflow's `log_input` records of it (name, digest, profile)."""
    from svdablate.data.datasets import DataError, build_datasets, describe_datasets

    described: DataRecords = {}
    for config in configs:
        key = config.data_key
        if key in described:
            continue
        try:
            train, val, info = build_datasets(**config.data_args)
        except DataError as exc:
            raise UserError(str(exc)) from None
        described[key] = describe_datasets(
            config.reported_dataset, train, val, info, _source(config)
        )
    return described


def run_names(configs: list[TrialConfig]) -> dict[str, str]:
    """Each trial's MLflow run name: its row and seed, and the axes the study varies
    (`SVD+NOG · seed 3`, `MPN-COV · hybrid · seed 0`, `NS · float32 · seed 0`)."""
    varying = [a for a in NAME_AXES if len({getattr(c, a) for c in configs}) > 1]
    return {
        c.trial_id: " · ".join([c.row, *(str(getattr(c, a)) for a in varying), f"seed {c.seed}"])
        for c in configs
    }


def join_ray(address: str | None, resources: Resources, tune_storage: str | None = None) -> None:
    """Join the study's Ray cluster (start a local one without an address; a no-op once joined),
    check that a node can hold one trial and, once a process, that every node which may run a
    trial sees `tune_storage` (`runtime/shared_storage.py`)."""
    from svdablate.runtime.ray_cluster import check_resources, connect_ray
    from svdablate.runtime.shared_storage import check_shared_storage

    connect_ray(address)
    check_resources(resources)
    if tune_storage is not None and tune_storage not in _STORAGE_CHECKED:
        check_shared_storage(tune_storage, resources)
        _STORAGE_CHECKED.add(tune_storage)


#: The Tune storage paths this process has checked on its cluster's nodes.
_STORAGE_CHECKED: set[str] = set()
