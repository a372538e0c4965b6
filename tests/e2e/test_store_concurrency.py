"""One SQLite store, several studies (issue 14, item 1): two first runs at the same moment into
one fresh results dir both succeed, and so do two studies into a store that exists.

The studies are real `svdablate run` processes on the pytest worker's shared Ray cluster. A store
left half-migrated: tests/unit/test_store_migration.py.
"""

import subprocess
from pathlib import Path

from mlflow.tracking import MlflowClient

from svdablate.schema import Metric, Tag, TrialStatus
from svdablate.store.tracking import check_store, read_store_state


def _start_together(cli, results: Path, address: str, n: int = 2) -> list[subprocess.Popen]:
    """`n` smoke studies (2 trials each) into `results`, started at the same moment."""
    args = [
        "run", "--rows", "SVD", "--seeds", "2", "--epochs", "1", "--smoke",
        "--results-dir", str(results), "--address", address, "--no-progress", "--no-report",
    ]  # fmt: skip
    return [
        cli.start(*args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(n)
    ]


def _assert_all_complete(results: Path, drivers: list[subprocess.Popen], studies: int) -> None:
    try:
        outputs = [d.communicate(timeout=240)[0] for d in drivers]
    finally:
        for driver in drivers:
            if driver.poll() is None:
                driver.kill()
    for driver, output in zip(drivers, outputs, strict=True):
        assert driver.returncode == 0, output[-3000:]
    state = read_store_state(results / "mlflow.db")
    assert state is not None and state.current, "the store is migrated to this MLflow's schema"
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(experiments, f"tags.`{Tag.ROLE}` = 'parent'")
    assert len(parents) == studies
    for parent in parents:
        trials = client.search_runs(
            experiments, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        )
        assert [t.data.tags[Tag.STATUS] for t in trials] == [TrialStatus.FINISHED] * 2
        assert parent.data.tags[Tag.STATUS] == "finished"
        for trial in trials:  # the telemetry a smoke trial logs like a real one
            assert {Metric.KAPPA_MEDIAN, Metric.PRE_SVD_LR} <= trial.data.metrics.keys()
    assert not list((results / "ray").rglob("checkpoint_*")), "finished trials drop checkpoints"


def test_two_first_runs_into_one_fresh_results_dir_both_succeed(tmp_path, cli, shared_ray):
    results = tmp_path / "results"
    _assert_all_complete(results, _start_together(cli, results, shared_ray), studies=2)


def test_two_studies_into_an_existing_store_both_complete(tmp_path, cli, shared_ray):
    results = tmp_path / "results"
    results.mkdir()
    check_store(f"sqlite:///{results / 'mlflow.db'}")
    _assert_all_complete(results, _start_together(cli, results, shared_ray), studies=2)
