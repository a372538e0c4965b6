"""A production MLflow: `mlflow server` on a PostgreSQL backend store, artifacts proxied through
the server (`--artifacts-destination`, `mlflow-artifacts:` URIs), one server shared by the module
(conftest's `module_mlflow_server`). A study and its `resume` (the lean scenario `make test-e2e`
runs where PostgreSQL is installed, skipped otherwise); two studies at once and the server killed
and restarted mid-study, no epoch lost, are `deploy` scenarios (`make test-deploy`)."""

import glob
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from polling import poll as wait_for
from ray_nodes import free_port

from svdablate.schema import REPORT_ARTIFACT_DIR, Tag
from svdablate.training.faults import faults_env

#: Debian's PostgreSQL server programs (initdb, pg_ctl): not on PATH.
PG_BIN = sorted(path.parent for path in map(Path, glob.glob("/usr/lib/postgresql/*/bin/initdb")))


def as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: root runs it as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL of its own on 127.0.0.1 (a temporary data dir); its `mlflow` database URI."""
    if not PG_BIN:
        pytest.skip(
            "no PostgreSQL server (/usr/lib/postgresql/*/bin/initdb): apt-get install -y "
            "postgresql (`make test-deploy` installs it)"
        )
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


@pytest.fixture(scope="module")
def mlflow_backend_store(postgres: str) -> str:
    """conftest's `module_mlflow_server` runs on this module's PostgreSQL."""
    return postgres


def study(
    cli, results: Path, tracking: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    arguments = [
        "run", "--rows", "SVD", "--results-dir", str(results), "--tracking-uri", tracking,
        "--no-report", "--no-progress", *extra,
    ]  # fmt: skip
    output = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    return cli.start(*arguments, env=env, **output)


def resume(cli, results: Path, parent: str) -> subprocess.CompletedProcess:
    return cli(
        "resume", parent, "--results-dir", str(results), "--no-report", "--no-progress", timeout=300
    )


def parent_of(output: str) -> str:
    return output.split("parent run ", 1)[1].split(",", 1)[0].strip()


def published(client: MlflowClient, parent: str) -> pd.DataFrame:
    """The study's report on its parent run, read back through the server: the files are
    there and the MLflow table (`report/summary.json`) is returned as a frame."""
    run = client.get_run(parent)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    files = {a.path for a in client.list_artifacts(parent, REPORT_ARTIFACT_DIR)}
    for name in ("summary.json", "summary.html", "summary.csv"):
        assert f"{REPORT_ARTIFACT_DIR}/{name}" in files, files
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(parent, f"{REPORT_ARTIFACT_DIR}/summary.json", folder)
        table = json.loads(Path(path).read_text())
    return pd.DataFrame(table["data"], columns=table["columns"])


def children(client: MlflowClient, parent: str) -> list:
    experiment = client.get_run(parent).info.experiment_id
    return client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'")


def test_a_study_and_its_resume(tmp_path, module_mlflow_server, shared_ray, cli):
    """The lean scenario `make test-e2e` runs where PostgreSQL is installed: one trial of one
    epoch, its report published through the proxied artifact store, then `resume`, which
    publishes the report again in place (the MLflow table replaced, not appended to)."""
    running = study(cli, tmp_path / "a", module_mlflow_server.url, "--seeds", "1", "--epochs", "1")
    output = running.communicate(timeout=300)[0]
    assert running.returncode == 0 and "warning:" not in output, output[-3000:]
    parent = parent_of(output)
    client = MlflowClient(module_mlflow_server.url)
    first = published(client, parent)
    assert [r.data.tags[Tag.STATUS] for r in children(client, parent)] == ["finished"]
    again = resume(cli, tmp_path / "a", parent)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "1 already finished before" in again.stdout, again.stdout[-2000:]
    assert "warning:" not in again.stdout + again.stderr, again.stderr[-2000:]
    assert len(published(client, parent)) == len(first) >= 1


@pytest.mark.deploy
def test_two_studies_at_once(tmp_path, module_mlflow_server, cli):
    server = module_mlflow_server
    first = study(cli, tmp_path / "a", server.url, "--seeds", "2", "--epochs", "2")
    second = study(cli, tmp_path / "b", server.url, "--seeds", "2", "--epochs", "2")
    outputs = [process.communicate(timeout=480)[0] for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], [o[-2000:] for o in outputs]
    client = MlflowClient(server.url)
    for output in outputs:
        assert "warning:" not in output, output[-3000:]
        published(client, parent_of(output))
        statuses = [r.data.tags[Tag.STATUS] for r in children(client, parent_of(output))]
        assert statuses == ["finished", "finished"], statuses


@pytest.mark.deploy
def test_the_server_killed_mid_study_loses_no_epoch(tmp_path, module_mlflow_server, cli):
    server = module_mlflow_server
    faults = faults_env([{"sleep_per_epoch": 1.0}])
    running = study(cli, tmp_path / "c", server.url, "--seeds", "2", "--epochs", "8", env=faults)
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
        resumed = resume(cli, tmp_path / "c", parent)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    for run in children(client, parent):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_err"))
        assert steps == list(range(8)), steps
