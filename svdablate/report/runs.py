"""Read a study's runs from MLflow (the layout of docs/internals.md) into pandas.

Nothing here imports the rest of svdablate: the report reads MLflow only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType

FINAL_METRICS = (
    "final_val_err",
    "final_val_err5",
    "best_val_err",
    "best_val_err5",
    "final_kappa",
    "failures_total",
    "epochs_completed",
)
PARENT_TAGS = ("preset", "grid_id", "application", "dataset", "model", "protocol", "smoke")
# Axes of a trial read from the child's params, falling back to the parent's tags.
CONTEXT_KEYS = ("application", "dataset", "model", "protocol", "precision")
STATUSES = ("finished", "diverged", "failed", "running")
_MLFLOW_STATUS = {
    "FINISHED": "finished",
    "FAILED": "failed",
    "KILLED": "failed",
    "RUNNING": "running",
    "SCHEDULED": "running",
}
# De-duplication keeps the best status first, then the newest start time.
_STATUS_PRIORITY = {"finished": 3, "diverged": 2, "failed": 1, "running": 1}
RUN_COLUMNS = (
    "run_id",
    "parent_run_id",
    "experiment_id",
    "row",
    "seed",
    "config_hash",
    "trial_id",
    "status",
    "method",
    *CONTEXT_KEYS,
    "preset",
    "smoke",
    "start_time",
    "end_time",
    *FINAL_METRICS,
)


def _client(tracking_uri: str | None) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri)


def _search_all(client: MlflowClient, experiment_ids: list[str], filter_string: str) -> list[Run]:
    """Every run matching the filter (all pages), active and deleted-excluded."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids,
            filter_string=filter_string,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _experiment_ids(client: MlflowClient, experiment: str | None) -> list[str]:
    if experiment is None:
        return [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        try:
            exp = client.get_experiment(experiment)
        except Exception as err:  # MlflowException for an unknown id
            raise LookupError(f"no MLflow experiment named or numbered {experiment!r}") from err
    return [exp.experiment_id]


def latest_parent(tracking_uri: str | None, experiment: str | None = None) -> str:
    """Run id of the newest parent run (tag `svdablate.role=parent`), in one experiment or all.

    Raises LookupError when there is none.
    """
    client = _client(tracking_uri)
    ids = _experiment_ids(client, experiment)
    if not ids:
        raise LookupError(f"no MLflow experiments at {tracking_uri}")
    page = client.search_runs(
        ids,
        filter_string="tags.`svdablate.role` = 'parent'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if not page:
        where = f"experiment {experiment!r}" if experiment else tracking_uri
        raise LookupError(f"no svdablate parent run in {where}")
    return page[0].info.run_id


def parent_info(tracking_uri: str | None, parent_run_id: str) -> dict[str, object]:
    """The parent's tags without the `svdablate.` prefix; `rows` decoded from JSON to a list."""
    run = _client(tracking_uri).get_run(parent_run_id)
    tags = run.data.tags
    info: dict[str, object] = {k: tags.get(f"svdablate.{k}", "") for k in PARENT_TAGS}
    try:
        rows = json.loads(tags.get("svdablate.rows", "[]"))
    except json.JSONDecodeError:
        rows = []
    info["rows"] = [str(r) for r in rows] if isinstance(rows, list) else []
    info["run_id"] = parent_run_id
    info["experiment_id"] = run.info.experiment_id
    info["run_name"] = run.info.run_name
    return info


def _status(run: Run) -> str:
    tag = run.data.tags.get("svdablate.status", "").strip().lower()
    if tag in STATUSES:
        return tag
    return _MLFLOW_STATUS.get(run.info.status, "running")


def _seed(run: Run) -> float:
    raw = run.data.tags.get("svdablate.seed", run.data.params.get("seed", ""))
    try:
        return int(raw)
    except (TypeError, ValueError):
        return np.nan


def _is_smoke(params: dict[str, str], parent: dict[str, object]) -> bool:
    """A `--smoke` trial: FakeData standing in for the dataset its tag names."""
    flags = (str(parent.get("smoke", "")), params.get("smoke", ""))
    return any(f.lower() == "true" for f in flags) or params.get("dataset") == "fake"


def _child_record(run: Run, parent: dict[str, object]) -> dict[str, object]:
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    record: dict[str, object] = {
        "run_id": run.info.run_id,
        "parent_run_id": parent["run_id"],
        "experiment_id": run.info.experiment_id,
        "row": tags.get("svdablate.row", params.get("row", "")),
        "seed": _seed(run),
        "config_hash": tags.get("svdablate.config_hash", params.get("config_hash", "")),
        "trial_id": tags.get("svdablate.trial_id", params.get("trial_id", "")),
        "status": _status(run),
        "method": tags.get("svdablate.method", params.get("method", "")),
        "preset": parent["preset"],
        "smoke": _is_smoke(params, parent),
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
    }
    for key in CONTEXT_KEYS:
        value = tags.get(f"svdablate.{key}") or params.get(key) or parent.get(key, "")
        record[key] = "" if value in (None, "None") else str(value)
    for key in FINAL_METRICS:
        record[key] = metrics.get(key, np.nan)
    return record


def _as_list(parent_run_ids: str | Iterable[str]) -> list[str]:
    if isinstance(parent_run_ids, str):
        return [parent_run_ids]
    return list(dict.fromkeys(parent_run_ids))


def load_runs(tracking_uri: str | None, parent_run_id: str | Sequence[str]) -> pd.DataFrame:
    """One row per child run of the parent(s): tags, axes and final metrics.

    Columns: RUN_COLUMNS (row, seed, config_hash, status in finished|diverged|failed|running,
    method, application, dataset, model, protocol, precision, preset, smoke (FakeData run),
    start/end time in ms and the final metrics, NaN where a run has not logged them). No
    de-duplication here: see `deduplicate`. The frame's `attrs["rows"]` is the union of the
    parents' `svdablate.rows` (table order) followed by any other row seen in the children.
    """
    client = _client(tracking_uri)
    records: list[dict[str, object]] = []
    rows: list[str] = []
    for pid in _as_list(parent_run_id):
        parent = parent_info(tracking_uri, pid)
        rows.extend(r for r in parent["rows"] if r not in rows)  # type: ignore[union-attr]
        children = _search_all(
            client, [str(parent["experiment_id"])], f"tags.mlflow.parentRunId = '{pid}'"
        )
        records.extend(_child_record(run, parent) for run in children)
    frame = pd.DataFrame.from_records(records, columns=list(RUN_COLUMNS))
    frame = frame.sort_values("start_time", kind="stable").reset_index(drop=True)
    rows.extend(r for r in dict.fromkeys(frame["row"]) if r not in rows)
    frame.attrs["rows"] = rows
    frame.attrs["parents"] = _as_list(parent_run_id)
    return frame


def deduplicate(runs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep one run per (row, seed, config_hash): the newest finished one.

    Within a group the status decides first (finished > diverged > failed = running), then the
    newest start time. Returns the kept runs (original order) and how many were dropped.
    """
    if runs.empty:
        return runs.copy(), 0
    priority = runs["status"].map(_STATUS_PRIORITY).fillna(0)
    order = runs.assign(_priority=priority).sort_values(
        ["_priority", "start_time"], ascending=[False, False], kind="stable"
    )
    keys = ["row", "seed", "config_hash"]
    kept = order.drop_duplicates(subset=keys, keep="first").drop(columns="_priority")
    kept = kept.sort_index()
    kept.attrs = dict(runs.attrs)
    return kept, len(runs) - len(kept)


def metric_history(tracking_uri: str | None, run_id: str, key: str) -> pd.Series:
    """A run's per-epoch metric, indexed by step (the latest value of a repeated step)."""
    history = _client(tracking_uri).get_metric_history(run_id, key)
    points = sorted(history, key=lambda m: (m.step, m.timestamp))
    series = pd.Series({m.step: m.value for m in points}, dtype=float)
    series.index = series.index.astype(int)
    return series.sort_index()


def load_speed_runs(tracking_uri: str | None, experiment: str = "metalayer-speed") -> pd.DataFrame:
    """The meta-layer timings (`benchmarks/metalayer_speed.py --tracking-uri`), newest per key.

    One row per (method, batch, dim, dtype) with fp_s, bp_s and total_s = fp_s + bp_s.
    """
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise LookupError(f"no MLflow experiment {experiment!r} at {tracking_uri}")
    records = []
    for run in _search_all(client, [exp.experiment_id], ""):
        params, metrics = run.data.params, run.data.metrics
        if "fp_s" not in metrics or "method" not in params:
            continue
        records.append(
            {
                "run_id": run.info.run_id,
                "method": params["method"],
                "batch": params.get("batch", ""),
                "dim": params.get("dim", ""),
                "dtype": params.get("dtype", ""),
                "fp_s": metrics["fp_s"],
                "bp_s": metrics.get("bp_s", np.nan),
                "start_time": run.info.start_time,
            }
        )
    columns = ["run_id", "method", "batch", "dim", "dtype", "fp_s", "bp_s", "start_time"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame = frame.sort_values("start_time", ascending=False, kind="stable")
    frame = frame.drop_duplicates(["method", "batch", "dim", "dtype"], keep="first")
    frame["total_s"] = frame["fp_s"] + frame["bp_s"]
    return frame.sort_values("start_time", kind="stable").reset_index(drop=True)
