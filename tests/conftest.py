"""Fixtures every test may use: an isolated environment, the CLI (in this process or a
subprocess) and polling. Those of the end-to-end tests (ports, an MLflow server, Ray clusters)
are in tests/e2e/conftest.py.

Every test starts from an environment that names no store, experiment or cluster: a developer's
exported MLFLOW_TRACKING_URI or RAY_ADDRESS must never receive a test's runs, and one test must
not leak them into the next (``mlflow.set_tracking_uri`` exports the variable). Tests that want
one set it with ``monkeypatch.setenv`` or pass it to the subprocess they start.
"""

import gc
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import forked_cli
import pytest
from polling import poll

#: The controller's forked-CLI server (pytest's stash), and its path in each worker's input.
FORKED_CLI = pytest.StashKey[forked_cli.ForkedCli]()
FORKED_CLI_INPUT = "forked_cli_server"
ISOLATED_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
    "RAY_ADDRESS",
)


def pytest_configure(config: pytest.Config) -> None:
    """A pytest-xdist worker computes with one thread, and so do the processes it starts: the
    workers share the cores, and torch's default (a thread per core in each) has their OpenMP
    threads spin against each other (the unit tests took twice the CPU in 4 workers on 2 cores
    as in one process). A study's trials set their own (`cpus_per_trial`)."""
    if hasattr(config, "workerinput"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
    elif forked_cli.enabled() and config.getoption("numprocesses", None):  # xdist's controller
        config.stash[FORKED_CLI] = forked_cli.ForkedCli()
        config.stash[FORKED_CLI].launch()  # one server for the workers' CLI calls


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """Each pytest-xdist worker is told where the run's forked-CLI server listens."""
    if FORKED_CLI in node.config.stash:
        node.workerinput[FORKED_CLI_INPUT] = node.config.stash[FORKED_CLI].path


def pytest_unconfigure(config: pytest.Config) -> None:
    if FORKED_CLI in config.stash:
        config.stash[FORKED_CLI].close()


def pytest_collection_finish(session: pytest.Session) -> None:
    """What the imports and the collection made stays to the end: frozen out of the garbage
    collector's passes (a worker spent ~8 % of its CPU in them)."""
    gc.collect()
    gc.freeze()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long tests start first (the end-to-end scenarios, tens of seconds each; then those
    marked `slow`, the presets' smoke studies and full-size steps), so that the pytest-xdist
    workers do not wait at the end for one of them started last."""

    def starts_late(item: pytest.Item) -> int:
        return 0 if item.get_closest_marker("e2e") else 1 if item.get_closest_marker("slow") else 2

    items.sort(key=starts_late)  # stable: else as found


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def no_engine_outlives_its_test(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After a test, close the engines MLflow caches (per URI, in this process) on stores in
    the tests' temp dirs. pytest deletes a passed test's tmp_path, and a later test of this
    worker whose name starts alike gets the same path: an engine left open there holds the
    deleted file (SQLite refused its writes as "attempt to write a readonly database")."""
    yield
    module = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    if module is None:
        return
    from svdablate.store.tracking import _dispose_engine

    base = str(tmp_path_factory.getbasetemp())
    for uri in [uri for uri in module.SqlAlchemyStore._engine_map if base in uri]:
        _dispose_engine(uri)


class Cli:
    """`svdablate ARGS` in a process of its own, with this test's environment plus `env`:
    `cli(...)` waits for it (a CompletedProcess with text stdout and stderr), `cli.start(...)`
    does not (a Popen, or what stands in for one). Each is forked from a server that has
    imported the libraries (forked_cli.py: ~6 CPU-s fewer a `run`), or is a fresh interpreter
    under `SVDABLATE_TEST_FORK_CLI=0`."""

    TARGET = ("module", "svdablate.cli")

    def __init__(self, server: str | None = None) -> None:
        self.forked = forked_cli.ForkedCli(server)

    @staticmethod
    def command(*args: str) -> list[str]:
        return [sys.executable, "-m", "svdablate.cli", *args]

    def __call__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 600,
        cwd: str | os.PathLike | None = None,
    ) -> subprocess.CompletedProcess:
        environment = {**os.environ, **(env or {})}
        if forked_cli.enabled():
            return self.forked.run(self.TARGET, args, environment, timeout, cwd)
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment,
            cwd=cwd,
        )

    def start(
        self, *args: str, env: dict[str, str] | None = None, **kwargs
    ) -> subprocess.Popen | forked_cli.ForkedProcess:
        """kwargs: Popen's `stdout`, `stderr`, `text`, `start_new_session`, `cwd`."""
        environment = {**os.environ, **(env or {})}
        if forked_cli.enabled():
            return self.forked.start(self.TARGET, args, environment, **kwargs)
        return subprocess.Popen(self.command(*args), env=environment, **kwargs)


@pytest.fixture(scope="session")  # it holds nothing: module-scoped fixtures may run studies
def cli(pytestconfig: pytest.Config) -> Iterator[Cli]:
    runner = Cli(getattr(pytestconfig, "workerinput", {}).get(FORKED_CLI_INPUT))
    yield runner
    runner.forked.close()


@pytest.fixture
def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> Callable[..., tuple[int, str, str]]:
    """Run the installed entry point in this process: `run_main(*args)` returns (exit code,
    stdout, stderr); a command that returns without SystemExit exits 0."""
    from svdablate import cli as entry_point

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["svdablate", *args])
        code = 0
        try:
            entry_point.main()
        except SystemExit as exit_info:
            code = exit_info.code or 0
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def wait_for() -> Callable[[Callable[[], bool], float], bool]:
    """`wait_for(predicate, timeout)`: the tests that watch real processes and stores poll."""
    return poll
