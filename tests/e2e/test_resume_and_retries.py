"""End-to-end through Ray Tune and MLflow: report numbers, driver kill + resume, retries, NaN."""

import csv
import io
import os
import signal
import subprocess
import time
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


def test_killed_driver_resumes_without_rerunning_or_duplicating(tmp_path, cli, wait_for):
    """The driver and the Ray it started die together, as on a lost login node."""
    log = tmp_path / "completions.log"
    faults = faults_env([{"sleep_per_epoch": 2.0, "completion_log": str(log)}])
    driver = cli.start(
        "run", "--preset", "demo", "--rows", "SVD,NS", "--seeds", "2", "--epochs", "3",
        "--results-dir", str(tmp_path), "--no-progress", "--no-report",
        "--max-concurrent", "1", "--set", "checkpoint_every_s=0", env=faults,
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        finished_one = wait_for(lambda: log.exists() and log.read_text().count("\n") >= 1, 300)
        assert finished_one, "no trial finished before the kill"
        time.sleep(3)  # let the next trial start and log an epoch
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    before = children(tmp_path)
    done_before = before[before.status == "finished"]
    assert 1 <= len(done_before) < 4
    kept = {r.trial_id: history(tmp_path, r.run_id, "val_err") for r in done_before.itertuples()}

    resumed = cli("resume", "--latest", "--results-dir", str(tmp_path), "--no-progress", env=faults)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = children(tmp_path)
    assert len(after) == 4, "one MLflow child run per trial"
    assert set(after.status) == {"finished"}
    assert (after.epochs_completed == 3).all()
    for r in after.itertuples():
        assert [step for step, _ in history(tmp_path, r.run_id, "val_err")] == [0, 1, 2]
    for trial_id, values in kept.items():
        run_id = after.set_index("trial_id").loc[trial_id, "run_id"]
        assert history(tmp_path, run_id, "val_err") == values
    completions = log.read_text().split()
    finished_ids = completions[0::2]
    assert sorted(finished_ids) == sorted(set(finished_ids)) and len(finished_ids) == 4


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
