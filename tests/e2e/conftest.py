"""Fixtures of the end-to-end tests: real Ray clusters and a real `mlflow server` on loopback.

Every test in this folder is marked `e2e` (`make test-e2e`). A study starts a Ray of its own
unless RAY_ADDRESS names one: the tests of Ray's own start, stop or death (a killed driver,
Ctrl-C, a lost node, token auth, fake GPUs) keep that or start a cluster with `ray_cluster`; the
others take `shared_ray`, one cluster for all the run's pytest workers (shared_cluster.py), which
saves each study Ray's start-up.
"""

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import shared_cluster
from polling import poll
from ray_nodes import free_port

HERE = Path(__file__).parent
#: Every Ray process of a test (nodes, drivers, workers) resolves this node to loopback.
LOOPBACK_CLUSTER = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    return free_port()


#: A tracking server without MLflow's job runner (GenAI jobs: ~10 huey processes, ~14 CPU-s a
#: start), as `svdablate ui` starts one.
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class MlflowServer:
    """`mlflow server` on 127.0.0.1 over a SQLite store in `folder` (or `backend_store`, e.g. a
    PostgreSQL URI), artifacts proxied to `folder/artifacts`; it can be killed (its whole process
    group) and started again on the same port and store; `wait_for` polls."""

    def __init__(
        self,
        folder: Path,
        wait_for: Callable[[Callable[[], bool], float], bool],
        backend_store: str | None = None,
    ):
        self.folder = folder
        self.wait_for = wait_for
        self.backend_store = backend_store or f"sqlite:///{folder / 'server.db'}"
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
            "--backend-store-uri", self.backend_store,
            "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **MLFLOW_SERVER_ENV},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # uvicorn runs as its child: the group goes together
        )
        assert self.wait_for(self.healthy, 180), "mlflow server did not start"

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        assert self.wait_for(lambda: not self.healthy(), 30)


@pytest.fixture
def mlflow_server(tmp_path_factory: pytest.TempPathFactory, wait_for) -> Iterator[MlflowServer]:
    """A started `mlflow server` of the test's own (its URL: `.url`)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), wait_for)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def mlflow_backend_store() -> str | None:
    """The backend store of `module_mlflow_server`: None is SQLite in the server's folder; a
    test module overrides this fixture (tests/e2e/test_postgres_store.py: a PostgreSQL URI)."""
    return None


@pytest.fixture(scope="module")
def module_mlflow_server(
    tmp_path_factory: pytest.TempPathFactory, mlflow_backend_store: str | None
) -> Iterator[MlflowServer]:
    """A started `mlflow server` on `mlflow_backend_store`, shared by the tests of a module."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), poll, mlflow_backend_store)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def ray_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., object]]:
    """`ray_cluster(num_cpus=…, num_gpus=…)` starts a cluster of the test's own (a
    `ray.cluster_utils.Cluster`: `.address`, `.add_node`, `.remove_node`), shut down after it."""
    monkeypatch.setenv(*LOOPBACK_CLUSTER)
    started = []

    def start(**head_node_args: object):
        started.append(shared_cluster.start_cluster(**head_node_args))
        return started[-1]

    try:
        yield start
    finally:
        for cluster in started:
            cluster.shutdown()


@pytest.fixture(scope="session")
def session_cluster(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[str]:
    """The address of the run's one Ray cluster, shared by its pytest workers (shared_cluster.py),
    configured as the local Ray a study starts (this machine's CPUs, no prestarted workers)."""
    base = tmp_path_factory.getbasetemp()
    folder = base if worker_id == "master" else base.parent  # the workers' common folder
    env = pytest.MonkeyPatch()
    env.setenv(*LOOPBACK_CLUSTER)
    try:
        yield shared_cluster.join(folder, worker_id)
    finally:
        shared_cluster.leave(folder, worker_id)
        env.undo()


@pytest.fixture
def shared_ray(session_cluster, monkeypatch: pytest.MonkeyPatch) -> str:
    """RAY_ADDRESS names the worker's shared cluster for every study the test starts, in this
    process or a subprocess; returns the address."""
    monkeypatch.setenv("RAY_ADDRESS", session_cluster)
    return session_cluster
