"""`svdablate rehearse` measures through the Ray cluster `run` would join, with a trial's own
resources: the record names the Ray node, worker and resources each shape ran on; a cluster that
cannot hold a trial, or an address where no Ray answers, is one line and exit 2."""

import json
import math

import pytest
from mlflow import MlflowClient


@pytest.fixture(scope="module")
def quarter_gpu_rehearsal(tmp_path_factory, cli):
    """A cluster of 2 CPUs and 1 logical GPU; the demo's SVD shape rehearsed on it with
    --gpus-per-trial 0.25 and a bf16 comparison (no CUDA here: the worker falls back to the CPU,
    as a trial does)."""
    from ray.cluster_utils import Cluster

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # conftest's LOOPBACK_CLUSTER
    head = {"node_ip_address": "127.0.0.1", "include_dashboard": False, "num_cpus": 2,
            "num_gpus": 1}  # fmt: skip
    cluster = Cluster(initialize_head=True, head_node_args=head)
    cluster.wait_for_nodes()
    folder = tmp_path_factory.mktemp("rehearse")
    try:
        result = cli(
            "rehearse", "--preset", "demo", "--rows", "SVD", "--steps", "1", "--warmup", "0",
            "--gpus-per-trial", "0.25", "--cpus-per-trial", "1", "--address", cluster.address,
            "--compare-autocast", "bf16", "--results-dir", str(folder / "results"),
            env={"COLUMNS": "200"}, cwd=folder,
        )  # fmt: skip
        nodes = {node["NodeID"] for node in _nodes(cluster.address)}
        refused = cli(
            "rehearse", "--preset", "demo", "--rows", "SVD", "--cpus-per-trial", "64",
            "--address", cluster.address, "--results-dir", str(folder / "refused"), cwd=folder,
        )  # fmt: skip
        yield folder, result, nodes, refused
    finally:
        cluster.shutdown()
        monkeypatch.undo()


def _nodes(address: str) -> list[dict]:
    import subprocess
    import sys

    script = f"import json, ray; ray.init({address!r}); print(json.dumps(ray.nodes()))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_each_shape_runs_as_a_ray_task_holding_a_trials_resources(quarter_gpu_rehearsal):
    folder, result, nodes, _ = quarter_gpu_rehearsal
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((folder / "results/rehearsals/demo.json").read_text())
    off = record["shapes"][0]
    ran_on = off["ran_on"]
    assert ran_on["resources"] == {"CPU": 1.0, "GPU": 0.25}  # what `run` asks for a trial
    assert ran_on["gpu_ids"] == ["0"] and ran_on["node_ip"] == "127.0.0.1"
    assert ran_on["node_id"] in nodes
    assert off["threads"] == 1 and off["device"] == "cpu"  # no CUDA: the CPU, as a trial
    assert record["ray"]["resources_per_trial"] == {"CPU": 1.0, "GPU": 0.25}
    assert record["cluster"] == "1 GPUs, 2 CPUs"  # the Ray cluster's, not this machine's
    assert "on Ray node 127.0.0.1" in result.stdout
    saving = off["autocast"]
    assert saving["mode"] == "bf16" and saving["step_s_on"] > 0 and saving["step_s_off"] > 0
    assert saving["step_ratio"] == pytest.approx(saving["step_s_on"] / saving["step_s_off"])
    assert "autocast bf16 against off on cpu" in result.stdout
    assert record["trials"] == 5 and math.isfinite(record["device_hours"])


def test_the_driver_records_it_in_mlflow_and_plan_reads_it(quarter_gpu_rehearsal, cli):
    folder, result, _, _ = quarter_gpu_rehearsal
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{folder}/results/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("svdablate-rehearsal").experiment_id])
    assert len(runs) == 2  # the rehearsal and its one shape
    child = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    record = json.loads((folder / "results/rehearsals/demo.json").read_text())
    assert child.data.metrics["step_s"] == pytest.approx(record["shapes"][0]["step_s"])
    assert child.data.params["node_ip"] == "127.0.0.1"
    assert child.data.metrics["autocast_step_ratio"] > 0
    planned = cli("plan", "--preset", "demo", "--results-dir", str(folder / "results"))
    assert planned.returncode == 0 and "measured: rehearsal of" in planned.stdout


def test_a_cluster_that_cannot_hold_a_trial_is_one_line(quarter_gpu_rehearsal):
    *_, refused = quarter_gpu_rehearsal
    assert refused.returncode == 2, refused.stderr[-3000:]
    lines = refused.stderr.strip().splitlines()
    assert lines == [
        "error: each trial asks for 64 CPUs but the Ray cluster has 2: lower --cpus-per-trial"
    ]


def test_an_address_where_no_ray_answers_is_one_line(cli, tmp_path, port):
    address = f"127.0.0.1:{port}"
    result = cli("rehearse", "--address", address, "--results-dir", str(tmp_path), timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: cannot reach the Ray cluster at {address}"
    )


def test_a_gpu_trial_on_a_cluster_without_a_gpu_is_one_line(cli, shared_ray, tmp_path):
    """The cluster named by RAY_ADDRESS (as `run` finds it) has CPUs only."""
    result = cli(
        "rehearse", "--preset", "demo", "--gpus-per-trial", "1", "--results-dir", str(tmp_path)
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "error: the Ray cluster has no GPU but each trial asks for 1: rehearse on the CPU with "
        "--gpus-per-trial 0, or join a GPU cluster with --address"
    ]
