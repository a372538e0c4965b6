"""A production MLflow: `mlflow server` on a PostgreSQL backend store, artifacts proxied through
the server (`--artifacts-destination`, `mlflow-artifacts:` URIs). Two studies at once, `resume`,
and the server killed and restarted mid-study: no epoch lost (what the study could not send
while it was away, `resume` sends)."""

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from polling import poll as wait_for
from ray_nodes import free_port

from svdablate.schema import REPORT_ARTIFACT_DIR, Tag
from svdablate.training.faults import faults_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: root runs it as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL of its own on 127.0.0.1 (a temporary data dir); its `mlflow` database URI."""
    if not PG_BIN:
        pytest.skip("no PostgreSQL: apt-get install -y postgresql (.ci/run installs it)")
    pytest.importorskip("psycopg2", reason="pip install psycopg2-binary (the dev extra has it)")
    folder = Path(tempfile.mkdtemp(prefix="svdablate-pg-"))  # pytest's tmp is root's alone
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    port = free_port()
    ctl = [f"{PG_BIN[-1]}/pg_ctl", "-D", str(data)]
    subprocess.run(
        as_postgres([f"{PG_BIN[-1]}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres"]),
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-h 127.0.0.1 -p {port} -k {folder}"
    subprocess.run(
        as_postgres([*ctl, "-o", options, "-l", str(folder / "log"), "-w", "start"]),
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        subprocess.run(
            as_postgres([f"{PG_BIN[-1]}/createdb", "-h", "127.0.0.1", "-p", str(port),
                         "-U", "postgres", "mlflow"]),
            check=True, capture_output=True,
        )  # fmt: skip
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(as_postgres([*ctl, "-m", "fast", "stop"]), capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


class Server:
    """`mlflow server` on the PostgreSQL store, artifacts proxied to a folder of its own."""

    def __init__(self, store: str, artifacts: Path) -> None:
        self.store, self.artifacts = store, artifacts
        self.url = f"http://127.0.0.1:{free_port()}"
        self.process: subprocess.Popen | None = None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def start(self) -> None:
        command = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
            "--port", self.url.rsplit(":", 1)[1], "--backend-store-uri", self.store,
            "--artifacts-destination", str(self.artifacts), "--workers", "1",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        assert wait_for(self.healthy, 120), "mlflow server did not start"

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    running = Server(postgres, tmp_path_factory.mktemp("artifacts"))
    running.start()
    try:
        yield running
    finally:
        running.kill()


def study(
    results: Path, tracking: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "svdablate.cli", "run", "--rows", "SVD", "--seeds", "2",
        "--results-dir", str(results), "--tracking-uri", tracking, "--no-report", *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def parent_of(output: str) -> str:
    return output.split("parent run ", 1)[1].split(",", 1)[0].strip()


def test_two_studies_at_once_then_resume(tmp_path, server):
    first = study(tmp_path / "a", server.url, "--epochs", "2")
    second = study(tmp_path / "b", server.url, "--epochs", "2")
    outputs = [process.communicate(timeout=480)[0] for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], [o[-2000:] for o in outputs]
    client = MlflowClient(server.url)
    for output in outputs:
        parent = client.get_run(parent_of(output))
        assert parent.info.artifact_uri.startswith("mlflow-artifacts:"), parent.info.artifact_uri
        files = {a.path for a in client.list_artifacts(parent.info.run_id, REPORT_ARTIFACT_DIR)}
        assert f"{REPORT_ARTIFACT_DIR}/summary.html" in files, files
        children = client.search_runs(
            [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        )
        assert {r.data.tags[Tag.STATUS] for r in children} == {"finished"} and len(children) == 2
    resume = subprocess.run(
        [sys.executable, "-m", "svdablate.cli", "resume", parent_of(outputs[0]),
         "--results-dir", str(tmp_path / "a"), "--no-report"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resume.returncode == 0, resume.stdout[-2000:] + resume.stderr[-2000:]
    assert "2 already finished before" in resume.stdout


def test_the_server_killed_mid_study_loses_no_epoch(tmp_path, server):
    faults = faults_env([{"sleep_per_epoch": 1.0}])
    running = study(tmp_path / "c", server.url, "--epochs", "8", env=faults)
    client = MlflowClient(server.url)

    def training() -> bool:
        runs = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            "metrics.epochs_completed >= 1 and tags.`svdablate.status` = 'running'",
        )
        return len(runs) >= 1

    try:
        assert wait_for(training, 300), "no trial trained"
        server.kill()
        wait_for(lambda: running.poll() is not None, 10)
        server.start()
        output, _ = running.communicate(timeout=480)
    finally:
        if running.poll() is None:
            running.kill()
    parent = parent_of(output)
    if running.returncode != 0:  # the server came back after the study ended: resume sends
        assert "writes wait in" in output, output[-3000:]
        resume = subprocess.run(
            [sys.executable, "-m", "svdablate.cli", "resume", parent,
             "--results-dir", str(tmp_path / "c"), "--no-report"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert resume.returncode == 0, resume.stdout[-2000:] + resume.stderr[-2000:]
    for run in client.search_runs(
        [client.get_run(parent).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'"
    ):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_err"))
        assert steps == list(range(8)), steps
