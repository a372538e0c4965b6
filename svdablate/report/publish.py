"""Publish a study on its parent run, where the MLflow UI shows it (docs/internals.md).

Under `report/`: the table as an MLflow table (`log_table`, rendered by the UI), the HTML page,
the CSV and the claims CSV, the κ and error figures (PNG); the `svdablate.claims` tag; and per
row summary metrics (`schema.row_metric_key`), so the runs view charts rows against each other.
A second publish (after `resume`) replaces the files and the table and logs a metric only when
its value changed, at step = the study's trials done by then: no (key, step) is written twice.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric as MlflowMetric
from mlflow.entities import RunTag
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from svdablate.report.api import StudyReport, claims_path, study_report
from svdablate.report.attach import (
    ATTACH_ERRORS,
    claims_tag,
    print_warning,
    quiet_store_errors,
    refused,
)
from svdablate.report.reading.parents import client, resolve_parents
from svdablate.report.render.csv_table import claims_csv, csv_frame
from svdablate.report.render.formats import render
from svdablate.report.tables.summary import error_metrics, summary_table
from svdablate.schema import REPORT_ARTIFACT_DIR, ROW_STATS, Tag, TrialStatus, row_metric_key

#: summary_table column of each ROW_STATS entry.
STAT_COLUMNS = dict(zip(ROW_STATS, ("val_err_mean", "val_err_std", "kappa", "n"), strict=True))


def table_artifact(study: StudyReport) -> str:
    """Where the MLflow table of the study goes: `report/<table>.json`."""
    return f"{REPORT_ARTIFACT_DIR}/{study.table.name}.json"


def write_files(study: StudyReport, folder: Path) -> list[Path]:
    """The page, the CSV, the claims CSV and the figures (PNG) in `folder`."""
    name = study.table.name
    texts = {
        folder / f"{name}.html": study.html,
        folder / f"{name}.csv": render(study.table, "csv"),
        claims_path(folder / f"{name}.csv"): claims_csv(study.table),
    }
    for path, text in texts.items():
        path.write_text(text, encoding="utf-8")
    figures = []
    for stem, curves in study.figures.curves.items():
        if curves:
            figures.append(folder / f"{stem}.png")
            figures[-1].write_bytes(study.figures.png(stem))
    return [*texts, *figures]


def row_metrics(study: StudyReport, metric: str) -> dict[str, float]:
    """`row_metric_key` -> value for every row and ROW_STATS entry with a finite value."""
    summary = summary_table(study.runs, study.runs.attrs["rows"], metric=metric)
    error, _ = error_metrics(metric)
    values = {}
    for row, record in summary.iterrows():
        for stat, column in STAT_COLUMNS.items():
            value = float(record[column])
            if math.isfinite(value):
                values[row_metric_key(stat, str(row), error)] = value
    return values


def trials_done(study: StudyReport) -> int:
    """The study's trials that are done (finished or diverged, after de-duplication)."""
    return sum(study.table.statuses.get(status, 0) for status in TrialStatus.DONE)


def changed_metrics(
    mlflow: MlflowClient, parent: str, values: dict[str, float], step: int
) -> list[MlflowMetric]:
    """The metrics whose value the parent does not hold yet, at `step`."""
    held = mlflow.get_run(parent).data.metrics
    now = int(time.time() * 1000)
    return [
        MlflowMetric(key, value, now, step)
        for key, value in values.items()
        if held.get(key) != value
    ]


def replace_table(mlflow: MlflowClient, parent: str, frame: pd.DataFrame, path: str) -> None:
    """`log_table` the frame at `path`, replacing (not appending to) one logged before.

    The repository is the client's store's: a server's proxied `mlflow-artifacts:` URI names no
    host, and MLflow resolves it against the tracking URI it is given, else the process's
    default one (a local SQLite file, refused: the table was never logged on a server)."""
    artifact_uri = mlflow.get_run(parent).info.artifact_uri
    repository = get_artifact_repository(artifact_uri, tracking_uri=mlflow.tracking_uri)
    repository.delete_artifacts(path)
    mlflow.log_table(parent, frame, path)


def publish_study(
    tracking_uri: str | None, parent_run_id: str, *, metric: str = "best"
) -> list[str]:
    """Put the study's table, page, CSVs, figures, claims and per-row metrics on its parent run.

    Returns the warning lines (also printed to stderr): one when the store or its artifact
    folder is read-only, in which case nothing is published; [] otherwise.
    """
    parents = resolve_parents(tracking_uri, parent_run_id)
    study = study_report(tracking_uri, parents, layout=None, metric=metric)
    values = row_metrics(study, metric)
    mlflow = client(tracking_uri)
    warnings: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp, quiet_store_errors():
            mlflow.log_batch(  # the store first: a read-only one refuses before any file
                parent_run_id,
                metrics=changed_metrics(mlflow, parent_run_id, values, trials_done(study)),
                tags=[RunTag(Tag.CLAIMS, claims_tag(study.table.claims))],
            )
            write_files(study, Path(tmp))
            mlflow.log_artifacts(parent_run_id, tmp, artifact_path=REPORT_ARTIFACT_DIR)
            replace_table(mlflow, parent_run_id, csv_frame(study.table), table_artifact(study))
    except ATTACH_ERRORS as err:
        print_warning(refused(parents, err), warnings)
    return warnings
