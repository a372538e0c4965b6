"""End-to-end through Ray Tune and MLflow: report numbers, extend, retries, NaN (a killed driver
and its resume: tests/e2e/test_faults_trials.py)."""

import csv
import io
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from svdablate.training.faults import faults_env


def children(results: Path) -> pd.DataFrame:
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, "tags.`svdablate.role` = 'trial'", max_results=1000)
    return pd.DataFrame(
        [
            {
                "run_id": r.info.run_id,
                "trial_id": r.data.tags["svdablate.trial_id"],
                "row": r.data.tags["svdablate.row"],
                "seed": int(r.data.tags["svdablate.seed"]),
                "status": r.data.tags.get("svdablate.status"),
                **r.data.metrics,
            }
            for r in runs
        ]
    )


def history(results: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_report_numbers_equal_pandas_over_the_child_runs(tmp_path, cli, shared_ray):
    run = cli(
        "run", "--preset", "demo", "--rows", "SVD,SVD+NOG", "--seeds", "2", "--epochs", "1",
        "--results-dir", str(tmp_path), "--no-progress", "--no-report",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    report = cli("report", "--latest", "--format", "csv", "--results-dir", str(tmp_path))
    assert report.returncode == 0, report.stderr[-3000:]
    table_csv, claims_csv = report.stdout.split("\n\n", 1)  # the claims CSV follows the table's
    table = list(csv.DictReader(io.StringIO(table_csv)))
    assert "NOG lowers the error vs SVD" in {
        c["claim"] for c in csv.DictReader(io.StringIO(claims_csv))
    }
    runs = children(tmp_path)
    assert len(runs) == 4 and set(runs.status) == {"finished"}
    expected = runs.groupby("row")["final_val_err"].agg(["mean", "std", "min"])
    assert [r["row"] for r in table] == ["SVD", "SVD+NOG"]
    for line in table:
        want = expected.loc[line["row"]]
        assert float(line["val_err_mean"]) == pytest.approx(want["mean"], abs=5e-3)
        assert float(line["val_err_std"]) == pytest.approx(want["std"], abs=5e-3)
        assert float(line["val_err_min"]) == pytest.approx(want["min"], abs=5e-3)

    status = cli("status", "--results-dir", str(tmp_path))
    assert status.returncode == 0 and "finished" in status.stdout, status.stderr[-2000:]

    parent = runs.run_id.iloc[0]
    parent = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(parent)
    parent_id = parent.data.tags["mlflow.parentRunId"]
    extend = cli(
        "run", "--preset", "demo", "--rows", "SVD,SVD+NOG", "--seeds", "3", "--epochs", "1",
        "--results-dir", str(tmp_path), "--no-progress", "--no-report", "--extend", parent_id,
    )  # fmt: skip
    assert extend.returncode == 0, extend.stderr[-3000:]
    assert "2 new trials" in " ".join(extend.stdout.split())
    extended = children(tmp_path)
    assert len(extended) == 6 and set(extended.seed) == {0, 1, 2}
    assert {r["mlflow.parentRunId"] for r in _tags(tmp_path)} == {parent_id}
    again = cli("report", parent_id, "--format", "csv", "--results-dir", str(tmp_path))
    rows = {r["row"]: r for r in csv.DictReader(io.StringIO(again.stdout))}
    assert rows["SVD"]["n"].startswith("3")


def _tags(results: Path) -> list[dict]:
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, "tags.`svdablate.role` = 'trial'", max_results=1000)
    return [r.data.tags for r in runs]


def test_crashed_trial_retries_from_checkpoint_and_nan_trial_is_diverged(tmp_path, cli, shared_ray):
    log = tmp_path / "completions.log"
    markers = tmp_path / "markers"
    markers.mkdir()
    hooks = [
        {"rows": ["SVD"], "raise_once_at_epoch": [1, str(markers)], "completion_log": str(log)},
        {"rows": ["NS"], "nan_at_epoch": 0, "completion_log": str(log)},
    ]
    run = cli(
        "run", "--preset", "demo", "--rows", "SVD,NS", "--seeds", "1", "--epochs", "3",
        "--results-dir", str(tmp_path), "--no-progress", "--set", "checkpoint_every_s=0",
        env=faults_env(hooks),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert list(markers.glob("crashed-*")), "the injected fault did not fire"
    runs = children(tmp_path).set_index("row")
    assert runs.loc["SVD", "status"] == "finished"
    assert [s for s, _ in history(tmp_path, runs.loc["SVD", "run_id"], "val_err")] == [0, 1, 2]
    assert runs.loc["NS", "status"] == "diverged"
    assert log.read_text().split().count(runs.loc["NS", "trial_id"]) == 1, "diverged: no retry"
    assert "diverged" in run.stdout.lower()
