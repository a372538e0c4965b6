"""Runs frames for the claims tests: what `runs.deduplicate` gives the report, built by hand."""

from __future__ import annotations

import pandas as pd

#: The `method` tag the orchestrator writes for each row label used in these tests.
METHOD = {
    "SVD": "svd",
    "NS": "ns",
    "MPN-COV": "svd",
    "iSQRT-COV": "ns",
    "SVD-Pade": "svd-pade",
    "SVD-Taylor": "svd-taylor",
    "SVD-Newton": "svd-newton",
    "SVD-Trunc": "svd-trunc",
    "SVD-TopN": "svd-topn",
    "SVD-PI": "svd-pi",
}
DBN = {"application": "dbn", "dataset": "cifar100", "model": "resnet50"}
ALEXNET = {"application": "gcp", "dataset": "imagenet", "model": "alexnet"}
RESNET50 = {"application": "gcp", "dataset": "imagenet", "model": "resnet50"}
RESNET18 = {"application": "gcp", "dataset": "imagenet", "model": "resnet18"}


def runs_frame(samples: dict, **context: object) -> pd.DataFrame:
    """samples = {row or (row, (axis, value), ...): [errors]}; context overrides the defaults
    (DBN on ResNet-50/CIFAR-100, standalone, float64). Each run's final error is its best + 1,
    κ = 10 ** (best error) so κ claims see the error's ordering on log10 κ, 0 failures, 10
    epochs, finished; a value of None makes a diverged run."""
    records = []
    for key, values in samples.items():
        row, axes = (key, {}) if isinstance(key, str) else (key[0], dict(key[1:]))
        base_row = row.split("+")[0]
        for seed, value in enumerate(values):
            diverged = value is None
            records.append(
                {
                    "run_id": f"{row}-{sorted(axes.items())}-{sorted(context.items())}-{seed}",
                    "row": row,
                    "seed": seed,
                    "config_hash": f"{row}{sorted(axes.items())}{sorted(context.items())}",
                    "status": "diverged" if diverged else "finished",
                    "method": METHOD.get(base_row, "svd"),
                    **DBN,
                    "protocol": "standalone",
                    "precision": "float64",
                    "smoke": False,
                    "start_time": seed,
                    "best_val_err": float("nan") if diverged else value,
                    "final_val_err": float("nan") if diverged else value + 1.0,
                    "best_val_err5": float("nan") if diverged else value / 2,
                    "final_val_err5": float("nan") if diverged else value / 2 + 1.0,
                    "final_kappa": float("nan") if diverged else 10.0**value,
                    "failures_total": 0.0,
                    "epochs_completed": 10.0,
                    **context,
                    **axes,
                }
            )
    return pd.DataFrame.from_records(records)


def runs_of(*frames: pd.DataFrame) -> pd.DataFrame:
    """Frames concatenated (each built by `runs_frame`)."""
    return pd.concat(frames, ignore_index=True)


def claim_row(frame: pd.DataFrame, text: str, context: str = "") -> pd.Series:
    """The one claims-table row of claim `text` in `context`."""
    mine = frame[(frame["claim"] == text) & (frame["context"] == context)]
    assert len(mine) == 1, (text, context, list(zip(frame["claim"], frame["context"], strict=True)))
    return mine.iloc[0]
