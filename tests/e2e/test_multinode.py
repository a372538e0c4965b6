"""A real 2-node Ray cluster and a real `mlflow server` on loopback; a node dies mid-study."""

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from polling import wait_for

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: healthy(url), 120), "mlflow server did not start"
        yield url
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def two_node_cluster(monkeypatch):
    from ray.cluster_utils import Cluster

    # Every Ray process of the test (nodes, driver, workers) resolves this node to loopback.
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False},
    )
    worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    try:
        yield cluster, worker
    finally:
        cluster.shutdown()


def test_worker_node_dies_and_every_trial_still_finishes_once(
    tmp_path, mlflow_server, two_node_cluster
):
    cluster, worker = two_node_cluster
    log = tmp_path / "completions.log"
    starts = tmp_path / "starts.log"
    hooks = json.dumps(
        [{"sleep_per_epoch": 3.0, "completion_log": str(log), "start_log": str(starts)}]
    )
    results = tmp_path / "results"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "svdablate.cli",
            "run",
            "--preset",
            "demo",
            "--rows",
            "SVD,NS",
            "--seeds",
            "2",
            "--epochs",
            "3",
            "--results-dir",
            str(results),
            "--address",
            cluster.address,
            "--tracking-uri",
            mlflow_server,
            "--no-progress",
            "--no-report",
            "--set",
            f"test_hooks={hooks}",
            "--set",
            "checkpoint_every_s=0",
            "--max-failures",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    client = MlflowClient(mlflow_server)

    def trials_mid_training() -> int:
        experiment = client.get_experiment_by_name("demo")
        if experiment is None:
            return 0
        runs = client.search_runs(
            [experiment.experiment_id],
            "tags.`svdablate.status` = 'running' and metrics.epochs_completed >= 1",
        )
        return len(runs)

    try:
        assert wait_for(lambda: trials_mid_training() >= 2, 300), "trials never ran on both nodes"
        cluster.remove_node(worker, allow_graceful=False)
        output, _ = driver.communicate(timeout=480)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output[-3000:]
    experiment = client.get_experiment_by_name("demo")
    runs = client.search_runs([experiment.experiment_id], "tags.`svdablate.role` = 'trial'")
    assert len(runs) == 4, "one MLflow run per trial"
    assert {r.data.tags["svdablate.status"] for r in runs} == {"finished"}
    for run in runs:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_err"))
        assert steps == [0, 1, 2]
    finished = Path(log).read_text().split()[0::2]
    assert sorted(finished) == sorted({r.data.tags["svdablate.trial_id"] for r in runs})
    events = Path(starts).read_text().split()
    resumed = [t for t, e in zip(events[0::2], events[1::2], strict=True) if e != "start-epoch-0"]
    assert resumed, "no trial was interrupted by the node's death and resumed from a checkpoint"
