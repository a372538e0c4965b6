"""The driver as a Ray job: `ray job submit -- svdablate run … --address auto` on a `ray start
--head` cluster with its dashboard; the study's lines are in `ray job logs` while it runs."""

import json
import subprocess
import sys
import time
import uuid

import pytest
from polling import poll as wait_for
from ray_nodes import RAY, free_port, reachable, start_node, stop_node

from svdablate.runtime.ray_cluster import resolve_address
from svdablate.training.faults import faults_env

pytestmark = [pytest.mark.e2e, pytest.mark.deploy]


def test_a_study_submitted_as_a_ray_job_logs_while_it_runs(tmp_path, monkeypatch):
    from ray.job_submission import JobStatus, JobSubmissionClient

    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    port, dashboard = free_port(), free_port()
    head = start_node(
        [RAY, "start", "--head", "--port", str(port), "--num-cpus", "2", "--dashboard-host",
         "127.0.0.1", "--dashboard-port", str(dashboard), "--block"],
        tmp_path / "head.log",
    )  # fmt: skip
    try:
        assert wait_for(lambda: reachable(dashboard), 120), (tmp_path / "head.log").read_text()
        resolve_address(f"127.0.0.1:{port}")  # RAY_AUTH_MODE=token when the cluster asks
        url = f"http://127.0.0.1:{dashboard}"
        job = f"svdablate-{uuid.uuid4().hex[:8]}"
        submit = subprocess.run(
            [RAY, "job", "submit", "--address", url, "--submission-id", job, "--no-wait",
             "--runtime-env-json", json.dumps({"env_vars": faults_env([{"sleep_per_epoch": 2.0}])}),
             "--",
             sys.executable, "-m", "svdablate.cli", "run", "--rows", "SVD", "--seeds", "1",
             "--epochs", "3", "--results-dir", str(tmp_path / "results"), "--address", "auto",
             "--no-report"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert submit.returncode == 0, submit.stdout[-2000:] + submit.stderr[-2000:]
        client = JobSubmissionClient(url)
        started = wait_for(lambda: "trial SVD · seed 0 started" in client.get_job_logs(job), 240)
        running = client.get_job_status(job) == JobStatus.RUNNING
        deadline = time.monotonic() + 240
        while not client.get_job_status(job).is_terminal() and time.monotonic() < deadline:
            time.sleep(1)
        status, logs = client.get_job_status(job), client.get_job_logs(job)
    finally:
        stop_node(head)
    assert started and running, f"nothing in `ray job logs` while the study ran:\n{logs}"
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    assert " study demo: 1 trials (0 finished before), parent run " in logs
    assert "demo: 1 trials — 1 finished, 0 diverged, 0 failed" in logs
