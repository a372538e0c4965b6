"""docs/deploy/slurm.sbatch end to end, as SLURM would run it on a one-node allocation: `srun`,
`scontrol` and `hostname` are shims (this machine is the node, on loopback), the SLURM_*
variables are set, and the script starts a real `ray start --head`, runs its study on it (the demo
`--smoke` instead of the preset's grid, which needs CIFAR-100 and GPUs) and stops Ray."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ray_nodes import free_port, reachable

# A deployment scenario, like the Ray job and the UI: 27-69 s on 2 cores, run by make test-deploy.
pytestmark = pytest.mark.deploy

RECIPE = Path(__file__).parents[2] / "docs" / "deploy" / "slurm.sbatch"
SHIMS = {
    # srun --nodes=1 --ntasks=1 -w NODE COMMAND…: every node is this machine.
    "srun": 'while [[ $1 == -* ]]; do [[ $1 == -w ]] && shift; shift; done\nexec "$@"',
    "scontrol": 'echo "$3"',  # scontrol show hostnames NODELIST: the one node
    "hostname": "echo 127.0.0.1",  # hostname --ip-address
}
GRID = "--preset eccv22-dbn-cifar100 --gpus-per-trial 0.25"


def test_the_slurm_recipe_starts_ray_runs_a_study_and_stops_ray(tmp_path, monkeypatch, wait_for):
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    text = RECIPE.read_text()
    assert GRID in text and "\nport=6379\n" in text, "the recipe changed: update this test"
    port = free_port()
    script = tmp_path / "slurm.sbatch"
    script.write_text(
        text.replace(GRID, "--preset demo --smoke").replace("\nport=6379\n", f"\nport={port}\n")
    )
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, body in SHIMS.items():
        (shims / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (shims / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{shims}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "node1",
        "SLURM_CPUS_PER_TASK": "2",
        "SHARED": str(tmp_path / "shared"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    log = tmp_path / "svdablate-1.log"
    with log.open("w") as out:
        job = subprocess.Popen(
            ["bash", str(script)], stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,  # what the job leaves behind goes with its group
        )  # fmt: skip
    try:
        job.wait(timeout=300)
        stopped = wait_for(lambda: not reachable(port), 60)
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(job.pid, sig)
            except ProcessLookupError:
                break
            wait_for(lambda: job.poll() is not None, 30)
    output = log.read_text()
    assert job.returncode == 0, output[-3000:]
    assert f"tracking sqlite:///{tmp_path / 'mlflow.db'}" in output, output[-3000:]
    assert " 0 failed" in output and "finished before" in output, output[-3000:]
    assert stopped, "Ray's head outlived the job"
