"""A `ray start` cluster on this machine, joined by loopback: its worker node in a mount namespace
of its own, where the Tune storage is a different (empty) tmpfs, is refused before any trial; a
path both nodes see runs the study."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from polling import poll as wait_for
from ray_nodes import RAY, free_port, reachable, start_node, stop_node

from svdablate.runtime.ray_cluster import resolve_address

pytestmark = [pytest.mark.e2e, pytest.mark.deploy]


@pytest.fixture
def cluster_with_blind_worker(tmp_path, monkeypatch):
    """A head holding no CPUs and a worker whose view of `tmp_path/storage` is its own tmpfs."""
    if os.geteuid() != 0:
        pytest.skip("a mount namespace with a tmpfs needs root (unshare --mount)")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    storage = tmp_path / "storage"
    storage.mkdir()
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = start_node(
        [RAY, "start", "--head", "--port", str(port), "--num-cpus", "0",
         "--include-dashboard=false", "--block"],
        tmp_path / "head.log",
    )  # fmt: skip
    worker = None
    try:
        assert wait_for(lambda: reachable(port), 90), (tmp_path / "head.log").read_text()
        joined = f"mount -t tmpfs tmpfs {storage} && exec {RAY} start --address {address} "
        joined += "--num-cpus 1 --block"
        resolve_address(address)  # RAY_AUTH_MODE=token when the cluster asks for its token
        worker = start_node(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", joined],
            tmp_path / "worker.log",
        )
        assert wait_for(lambda: _alive_nodes(address) == 2, 120), (
            tmp_path / "worker.log"
        ).read_text()
        yield address, storage
    finally:
        for process in (worker, head):
            if process is not None:
                stop_node(process)


def _alive_nodes(address: str) -> int:
    from ray._raylet import GcsClient

    nodes = GcsClient(address=address).get_all_node_info(timeout=5).values()
    return sum(1 for node in nodes if node.state == 0)


def run_study(address: str, storage: Path, results: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "svdablate.cli", "run", "--rows", "SVD", "--seeds", "1",
        "--epochs", "1", "--address", address, "--storage-path", str(storage),
        "--results-dir", str(results), "--no-report",
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_storage_a_node_does_not_share_is_refused_before_any_trial(
    tmp_path, cluster_with_blind_worker
):
    address, storage = cluster_with_blind_worker
    blind = run_study(address, storage, tmp_path / "results")
    assert blind.returncode == 2, blind.stdout[-2000:] + blind.stderr[-2000:]
    (line,) = blind.stderr.strip().splitlines()
    assert "is not shared" in line and "pass --storage-path" in line, line
    assert "started" not in blind.stdout
    assert not (tmp_path / "results" / "studies").exists(), "a study was started"

    shared = tmp_path / "shared"
    seen = run_study(address, shared, tmp_path / "results")
    assert seen.returncode == 0, seen.stdout[-2000:] + seen.stderr[-2000:]
    assert "1 finished" in seen.stdout
    assert list(shared.glob("demo-*/SVD_*")), "the trial's Tune folder is not on the shared path"
