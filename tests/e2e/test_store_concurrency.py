"""One SQLite store, several studies (issue 14, item 1): two first runs at the same moment into
one fresh results dir both succeed, and so do two studies into a store that exists.

The studies are real `svdablate run` processes on one shared Ray cluster (started once here). A
store left half-migrated: tests/test_store_migration.py.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from svdablate.schema import Tag, TrialStatus
from svdablate.store.tracking import check_store, read_store_state

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def ray_address():
    from ray.cluster_utils import Cluster

    # Every Ray process of the test (the node, the drivers, workers) resolves this node to
    # loopback, as in test_multinode.
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "node_ip_address": "127.0.0.1", "include_dashboard": False},
    )
    try:
        yield cluster.address
    finally:
        cluster.shutdown()
        mp.undo()


def _start_together(results: Path, address: str, n: int = 2) -> list[subprocess.Popen]:
    """`n` smoke studies (2 trials each) into `results`, started at the same moment."""
    command = [
        sys.executable, "-m", "svdablate.cli", "run", "--rows", "SVD", "--seeds", "2",
        "--epochs", "1", "--smoke", "--results-dir", str(results), "--address", address,
        "--no-progress", "--no-report",
    ]  # fmt: skip
    return [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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


def test_two_first_runs_into_one_fresh_results_dir_both_succeed(tmp_path, ray_address):
    results = tmp_path / "results"
    _assert_all_complete(results, _start_together(results, ray_address), studies=2)


def test_two_studies_into_an_existing_store_both_complete(tmp_path, ray_address):
    results = tmp_path / "results"
    results.mkdir()
    check_store(f"sqlite:///{results / 'mlflow.db'}")
    _assert_all_complete(results, _start_together(results, ray_address), studies=2)
