"""Checks before a study starts, and the status of one that runs elsewhere."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.table import Table

from svdablate.data import DataError, build_datasets

from .errors import UserError
from .tune_runner import Study


def check_data(configs: list[dict[str, Any]]) -> None:
    """Open every dataset of the grid once on the driver, so a bad --data-dir fails before Ray."""
    seen = set()
    for config in configs:
        key = (config["dataset"], config.get("data_dir"), config.get("fake_like"), config["smoke"])
        if key in seen:
            continue
        seen.add(key)
        try:
            build_datasets(
                config["dataset"],
                data_dir=config.get("data_dir"),
                download=bool(config.get("download")),
                smoke=bool(config.get("smoke")),
                like=config.get("fake_like"),
            )
        except DataError as exc:
            raise UserError(str(exc)) from None


def study_status(study: Study) -> Table:
    """A table of the study's trials by status, read from its MLflow child runs."""
    from .mlflow_writer import TAG, MlflowClient, child_runs

    runs = child_runs(MlflowClient(study.tracking_uri), study.parent_run_id)
    statuses = Counter(r.data.tags.get(TAG + "status", "running") for r in runs.values())
    pending = len({c["trial_id"] for c in study.configs} - set(runs))
    table = Table(title=f"{study.name} · parent run {study.parent_run_id}")
    for column in (
        "trials",
        "pending",
        "running",
        "finished",
        "diverged",
        "failed",
        "epochs logged",
    ):
        table.add_column(column, justify="right")
    epochs = sum(int(r.data.metrics.get("epochs_completed", 0)) for r in runs.values())
    table.add_row(
        str(len(study.configs)),
        str(pending),
        str(statuses["running"]),
        str(statuses["finished"]),
        str(statuses["diverged"]),
        str(statuses["failed"]),
        str(epochs),
    )
    return table
