"""A real 2-node Ray cluster and a real `mlflow server` on loopback; a node dies mid-study."""

import subprocess
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from svdablate.training.faults import faults_env


@pytest.fixture
def two_node_cluster(ray_cluster):
    cluster = ray_cluster(num_cpus=1)
    worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    cluster.wait_for_nodes()
    return cluster, worker


def test_worker_node_dies_and_every_trial_still_finishes_once(
    tmp_path, cli, wait_for, mlflow_server, two_node_cluster
):
    cluster, worker = two_node_cluster
    log = tmp_path / "completions.log"
    starts = tmp_path / "starts.log"
    faults = [{"sleep_per_epoch": 3.0, "completion_log": str(log), "start_log": str(starts)}]
    results = tmp_path / "results"
    driver = cli.start(
        "run", "--preset", "demo", "--rows", "SVD,NS", "--seeds", "2", "--epochs", "4",
        "--results-dir", str(results), "--address", cluster.address,
        "--tracking-uri", mlflow_server.url, "--no-progress", "--no-report",
        "--set", "checkpoint_every_s=0", "--max-failures", "3", env=faults_env(faults),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    client = MlflowClient(mlflow_server.url)

    def trials_mid_training() -> int:
        experiment = client.get_experiment_by_name("demo")
        if experiment is None:
            return 0
        runs = client.search_runs(
            [experiment.experiment_id],
            "tags.`svdablate.status` = 'running' and metrics.epochs_completed >= 1",
        )
        # MLflow lags the trials under load: a trial the completion log already names is done.
        finished = set(log.read_text().split()[0::2]) if log.exists() else set()
        return sum(r.data.tags["svdablate.trial_id"] not in finished for r in runs)

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
        assert steps == [0, 1, 2, 3]
    finished = Path(log).read_text().split()[0::2]
    assert sorted(finished) == sorted({r.data.tags["svdablate.trial_id"] for r in runs})
    events = Path(starts).read_text().split()
    resumed = [t for t, e in zip(events[0::2], events[1::2], strict=True) if e != "start-epoch-0"]
    assert resumed, "no trial was interrupted by the node's death and resumed from a checkpoint"
