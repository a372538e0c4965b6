"""A real `mlflow server` on loopback killed and restarted mid-study (issue 14, item 2): trials
keep running while it is away, their writes wait in the spool and reach the server once each when
it is back, and the study takes about as long as an undisturbed one (within 20 %)."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from polling import wait_for

from svdablate.schema import EPOCH_METRICS, FINAL_OF, Metric, Tag, TrialStatus

pytestmark = pytest.mark.e2e
EPOCHS = 16  # 4 trials on 2 slots, 1 s an epoch: ~40 s of trials around a ~20 s outage
TRIALS = 4


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlflow server` on 127.0.0.1, killed (its whole process group) and started again on the
    same port and store."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process: subprocess.Popen | None = None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def start(self) -> None:
        port = self.url.rsplit(":", 1)[1]
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", port,
            "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
            "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # uvicorn runs as its child: the group goes together
        )
        assert wait_for(self.healthy, 180), "mlflow server did not start"

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        assert wait_for(lambda: not self.healthy(), 30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _study(results: Path, url: str) -> subprocess.Popen:
    hooks = json.dumps([{"sleep_per_epoch": 1}])
    command = [
        sys.executable, "-m", "svdablate.cli", "run", "--rows", "SVD,NS", "--seeds", "2",
        "--epochs", str(EPOCHS), "--smoke", "--results-dir", str(results), "--tracking-uri", url,
        "--no-progress", "--no-report", "--set", f"test_hooks={hooks}",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(driver: subprocess.Popen) -> str:
    try:
        output, _ = driver.communicate(timeout=400)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output[-3000:]
    return output


def _parent_id(output: str) -> str:
    return output.split("parent run ", 1)[1].split(",", 1)[0].strip()


def _trial_runs(client: MlflowClient, parent_id: str):
    experiment = client.get_run(parent_id).info.experiment_id
    return client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent_id}'")


def test_a_server_outage_mid_study_stalls_no_trial_and_loses_no_write(tmp_path, server):
    client = MlflowClient(server.url)
    began = time.perf_counter()
    undisturbed = _finish(_study(tmp_path / "undisturbed", server.url))
    undisturbed_s = time.perf_counter() - began
    earlier = {r.info.run_id for r in _trial_runs(client, _parent_id(undisturbed))}

    results = tmp_path / "outage"
    began = time.perf_counter()
    driver = _study(results, server.url)

    def an_epoch_logged() -> bool:
        experiment = client.get_experiment_by_name("demo")
        runs = client.search_runs(
            [experiment.experiment_id], "metrics.epochs_completed >= 1", max_results=100
        )
        return any(r.info.run_id not in earlier for r in runs)

    assert wait_for(an_epoch_logged, 300), "no epoch was logged"
    down_at = time.time() * 1000
    server.kill()
    spooled = 0
    for _ in range(10):  # while it is away, writes wait in the spool
        time.sleep(1)
        spooled = max([spooled, *(p.stat().st_size for p in results.glob("studies/*.spool*"))])
    server.start()
    up_at = time.time() * 1000
    output = _finish(driver)
    outage_s = time.perf_counter() - began

    runs = _trial_runs(client, _parent_id(output))
    assert len(runs) == TRIALS, "one child run per trial"
    during = 0
    for run in runs:
        assert run.data.tags[Tag.STATUS] == TrialStatus.FINISHED
        for key in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, key)
            steps = sorted(m.step for m in history)
            if key in FINAL_OF:
                assert steps == [EPOCHS - 1], (key, steps)
            else:
                assert key in (*EPOCH_METRICS, Metric.EPOCHS_COMPLETED), key
                assert steps == list(range(EPOCHS)), (key, steps)
            if key == Metric.EPOCHS_COMPLETED:
                during += sum(down_at < m.timestamp < up_at for m in history)
    print(f"undisturbed {undisturbed_s:.1f} s, outage {outage_s:.1f} s, {during} epochs meanwhile")
    assert during >= 2 * 5, f"trials reported only {during} epochs while the server was away"
    assert outage_s <= 1.2 * undisturbed_s, (outage_s, undisturbed_s)
    assert spooled > 0, "no write waited in the spool while the server was away"
    assert not list(results.glob("studies/*.spool*")), "the spool was sent and removed"
