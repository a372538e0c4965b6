"""Read a study's child runs from MLflow (docs/internals.md, "MLflow layout") into pandas.

Every axis of a trial is read from the child's tags (`schema.Tag`), falling back to the parent's
tag for the axes a study shares; of the params only `schema.CAPTION_PARAMS` are read (what the
captions' fidelity notes key on). Frames come out in the canonical order (`canonical_order`), so
no statistic depends on the order the store returns runs in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from mlflow.entities import Run

from svdablate.report.reading.parents import client, parent_info
from svdablate.schema import (
    CAPTION_PARAMS,
    CONTEXT_TAGS,
    RUN_METRICS,
    SPEED_EXPERIMENT,
    SPEED_METRICS,
    SPEED_PARAMS,
    RunStatus,
    Tag,
    TrialStatus,
    search_all_runs,
    search_child_runs,
)

#: Axes that split a row into variants ('NS (float32)'); the canonical order sorts by them.
VARIANT_AXES = ("dataset", "model", "protocol", "precision")
#: Canonical order of the runs: every statistic sees its sample in this order.
CANONICAL_ORDER = ("row", *VARIANT_AXES, "seed", "config_hash", "run_id")
_MLFLOW_STATUS = {
    RunStatus.FINISHED: TrialStatus.FINISHED,
    RunStatus.FAILED: TrialStatus.FAILED,
    RunStatus.KILLED: TrialStatus.FAILED,
}
# De-duplication keeps the best status first, then the newest start time.
_STATUS_PRIORITY = {
    TrialStatus.FINISHED: 3,
    TrialStatus.DIVERGED: 2,
    TrialStatus.FAILED: 1,
    TrialStatus.RUNNING: 1,
    TrialStatus.INTERRUPTED: 1,
}
RUN_COLUMNS = (
    "run_id",
    "parent_run_id",
    "row",
    "seed",
    "config_hash",
    "trial_id",
    "status",
    "method",
    *CONTEXT_TAGS,
    "preset",
    "smoke",
    "start_time",
    *RUN_METRICS,
    *CAPTION_PARAMS,
)


def canonical_order(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs sorted by row, variant axes, seed, config hash and run id; index 0..n-1."""
    keys = [k for k in CANONICAL_ORDER if k in runs]
    ordered = runs.sort_values(keys, kind="stable", na_position="last").reset_index(drop=True)
    ordered.attrs = dict(runs.attrs)
    return ordered


def _status(run: Run) -> str:
    tag = run.data.tags.get(Tag.STATUS, "").strip().lower()
    if tag in TrialStatus.ALL:
        return tag
    return _MLFLOW_STATUS.get(run.info.status, TrialStatus.RUNNING)


def _seed(run: Run) -> float:
    try:
        return int(run.data.tags.get(Tag.SEED, ""))
    except ValueError:
        return np.nan


def _child_record(run: Run, parent: dict[str, object]) -> dict[str, object]:
    tags = run.data.tags
    record: dict[str, object] = {
        "run_id": run.info.run_id,
        "parent_run_id": parent["run_id"],
        "row": tags.get(Tag.ROW, ""),
        "seed": _seed(run),
        "config_hash": tags.get(Tag.CONFIG_HASH, ""),
        "trial_id": tags.get(Tag.TRIAL_ID, ""),
        "status": _status(run),
        "method": tags.get(Tag.METHOD, ""),
        "preset": parent["preset"],
        "smoke": str(parent["smoke"]).lower() == "true",
        "start_time": run.info.start_time,
    }
    for name, tag in CONTEXT_TAGS.items():
        record[name] = str(tags.get(tag) or parent.get(name) or "")
    for key in RUN_METRICS:
        record[key] = run.data.metrics.get(key, np.nan)
    for column, param in CAPTION_PARAMS.items():
        record[column] = run.data.params.get(param, "")
    return record


def _as_list(parent_run_ids: str | Iterable[str]) -> list[str]:
    if isinstance(parent_run_ids, str):
        return [parent_run_ids]
    return list(dict.fromkeys(parent_run_ids))


def load_runs(tracking_uri: str | None, parent_run_id: str | Sequence[str]) -> pd.DataFrame:
    """One row per child run of the parent(s), in the canonical order.

    Columns: RUN_COLUMNS (status in finished|diverged|failed|running, method the canonical
    meta-layer, smoke: FakeData runs, start_time in ms, the run metrics of schema.RUN_METRICS,
    NaN where not logged, the params of schema.CAPTION_PARAMS, "" where not logged). No
    de-duplication here: see `deduplicate`. attrs: "rows" (the parents' row lists in table
    order, then any other row seen), "parents", "ow_map".
    """
    mlflow = client(tracking_uri)
    records: list[dict[str, object]] = []
    rows: list[str] = []
    ow_maps: list[str] = []
    for pid in _as_list(parent_run_id):
        parent = parent_info(tracking_uri, pid)
        rows.extend(r for r in parent["rows"] if r not in rows)  # type: ignore[union-attr]
        ow_maps.append(str(parent["ow_map"]))
        children = search_child_runs(mlflow, str(parent["experiment_id"]), pid)
        records.extend(_child_record(run, parent) for run in children)
    frame = canonical_order(pd.DataFrame.from_records(records, columns=list(RUN_COLUMNS)))
    rows.extend(r for r in dict.fromkeys(frame["row"]) if r not in rows)
    frame.attrs.update(
        rows=rows,
        parents=_as_list(parent_run_id),
        ow_map=", ".join(m for m in dict.fromkeys(ow_maps) if m),
    )
    return frame


def deduplicate(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep one run per (row, seed, config_hash): finished > diverged > failed = running, then
    the newest start time (then the run id, so ties too are decided the same way everywhere).

    Returns the kept runs in the canonical order and how many were dropped.
    """
    if runs.empty:
        return canonical_order(runs), 0
    priority = runs["status"].map(_STATUS_PRIORITY).fillna(0)
    best_first = runs.assign(_priority=priority).sort_values(
        ["_priority", "start_time", "run_id"], ascending=[False, False, True], kind="stable"
    )
    kept = best_first.drop_duplicates(["row", "seed", "config_hash"]).drop(columns="_priority")
    kept.attrs = dict(runs.attrs)
    return canonical_order(kept), len(runs) - len(kept)


def metric_histories(tracking_uri: str | None, run_ids: Iterable[str], key: str) -> pd.DataFrame:
    """Per-step values of metric `key` for each run: columns run_id, step, value.

    One `MlflowClient.get_metric_history` call per run (about 2 ms each on a SQLite store: the
    report reads them only for the runs it shows). A step logged twice keeps its latest value.
    """
    mlflow = client(tracking_uri)
    records = [
        (run_id, m.step, m.timestamp, m.value)
        for run_id in run_ids
        for m in mlflow.get_metric_history(run_id, key)
    ]
    frame = pd.DataFrame.from_records(records, columns=["run_id", "step", "timestamp", "value"])
    frame = frame.sort_values(["run_id", "step", "timestamp"], kind="stable")
    frame = frame.drop_duplicates(["run_id", "step"], keep="last").drop(columns="timestamp")
    return frame.astype({"step": int, "value": float}).reset_index(drop=True)


def load_speed_runs(tracking_uri: str | None, experiment: str = SPEED_EXPERIMENT) -> pd.DataFrame:
    """The meta-layer timings (`benchmarks/metalayer_speed.py --tracking-uri`), newest per key.

    One row per (method, batch, dim, dtype) with fp_s, bp_s and total_s = fp_s + bp_s.
    """
    mlflow = client(tracking_uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise LookupError(
            f"no MLflow experiment {experiment!r} at {tracking_uri}: run "
            f"`benchmarks/metalayer_speed.py --tracking-uri {tracking_uri}` first"
        )
    method, fp, bp = SPEED_PARAMS[0], *SPEED_METRICS
    records = [
        {
            "run_id": run.info.run_id,
            **{p: run.data.params.get(p, "") for p in SPEED_PARAMS},
            fp: run.data.metrics[fp],
            bp: run.data.metrics.get(bp, np.nan),
            "start_time": run.info.start_time,
        }
        for run in search_all_runs(mlflow, [exp.experiment_id], "")
        if fp in run.data.metrics and method in run.data.params
    ]
    columns = ["run_id", *SPEED_PARAMS, fp, bp, "start_time"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame = frame.sort_values(["start_time", "run_id"], ascending=False, kind="stable")
    frame = frame.drop_duplicates(list(SPEED_PARAMS), keep="first")
    frame["total_s"] = frame[fp] + frame[bp]
    return frame.sort_values(list(SPEED_PARAMS), kind="stable").reset_index(drop=True)
