"""`svdablate rehearse` measures through the Ray cluster `run` would join, with a trial's own
resources: the record names the Ray node, worker and resources each shape ran on; a cluster that
cannot hold a trial, or an address where no Ray answers, is one line and exit 2."""

import json
import math

import pytest
from mlflow import MlflowClient


def test_each_shape_is_a_ray_task_holding_a_trials_resources(cli, ray_cluster, tmp_path):
    """A cluster of 2 CPUs and 1 logical GPU; the demo's SVD shape rehearsed on it with
    --gpus-per-trial 0.25 and a bf16 comparison (no CUDA here: the worker falls back to the CPU,
    as a trial does). One test, one cluster: the rehearsal, its records, `plan`, a refusal."""
    cluster = ray_cluster(num_cpus=2, num_gpus=1)
    results = tmp_path / "results"
    result = cli(
        "rehearse", "--preset", "demo", "--rows", "SVD", "--steps", "1", "--warmup", "0",
        "--gpus-per-trial", "0.25", "--cpus-per-trial", "1", "--address", cluster.address,
        "--compare-autocast", "bf16", "--results-dir", str(results),
        env={"COLUMNS": "200"}, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = json.loads((results / "rehearsals/demo.json").read_text())
    off = record["shapes"][0]
    ran_on = off["ran_on"]
    assert ran_on["resources"] == {"CPU": 1.0, "GPU": 0.25}  # what `run` asks for a trial
    assert ran_on["gpu_ids"] == ["0"] and ran_on["node_ip"] == "127.0.0.1"
    assert ran_on["node_id"] == cluster.head_node.node_id
    assert off["threads"] == 1 and off["device"] == "cpu"  # no CUDA: the CPU, as a trial
    assert record["ray"]["resources_per_trial"] == {"CPU": 1.0, "GPU": 0.25}
    assert record["cluster"] == "1 GPUs, 2 CPUs"  # the Ray cluster's, not this machine's
    assert "on Ray node 127.0.0.1" in result.stdout
    saving = off["autocast"]
    assert saving["mode"] == "bf16" and saving["step_s_on"] > 0 and saving["step_s_off"] > 0
    assert saving["step_ratio"] == pytest.approx(saving["step_s_on"] / saving["step_s_off"])
    # each measurement a fresh worker (max_calls=1): the memory a shape adds is its own, > 0
    assert 0 < saving["memory_added_mb_off"] < off["peak_memory_mb"]
    assert saving["memory_added_mb_on"] > 0 and off["memory_kind"] == "process RSS"
    assert "autocast bf16 against off on cpu" in result.stdout
    assert record["trials"] == 5 and math.isfinite(record["device_hours"])

    client = MlflowClient(f"sqlite:///{results}/mlflow.db")  # written by the driver
    runs = client.search_runs([client.get_experiment_by_name("svdablate-rehearsal").experiment_id])
    assert len(runs) == 2  # the rehearsal and its one shape
    child = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert child.data.metrics["step_s"] == pytest.approx(off["step_s"])
    assert child.data.params["node_ip"] == "127.0.0.1"
    assert child.data.metrics["autocast_step_ratio"] == pytest.approx(saving["step_ratio"])
    planned = cli("plan", "--preset", "demo", "--results-dir", str(results))
    assert planned.returncode == 0 and "measured: rehearsal of" in planned.stdout

    refused = cli(
        "rehearse", "--preset", "demo", "--rows", "SVD", "--cpus-per-trial", "64",
        "--address", cluster.address, "--results-dir", str(tmp_path / "refused"),
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert refused.stderr.strip().splitlines() == [
        "error: each trial asks for 64 CPUs but the Ray cluster has 2: lower --cpus-per-trial"
    ]


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


def test_an_address_where_no_ray_answers_is_one_line(cli, tmp_path, port):
    address = f"127.0.0.1:{port}"
    result = cli("rehearse", "--address", address, "--results-dir", str(tmp_path), timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: cannot reach the Ray cluster at {address}"
    )
