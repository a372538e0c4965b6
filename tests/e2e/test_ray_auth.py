"""Joining a `ray start --head` cluster that has token auth on (Ray 2.60 turns it on whenever a
token exists): the study sends the token; a missing or wrong token is one line, exit code 2."""

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

CURRENT_CLUSTER = Path("/tmp/ray/ray_current_cluster")  # `ray start` records itself here


def stop_processes_of(folder: str) -> None:
    """Kill, by PID, every process whose command line names `folder` (the cluster's temp dir)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if folder in command:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


@pytest.fixture
def cluster_with_token(tmp_path, port):
    """A one-node `ray start --head` on loopback that only takes clients with its token."""
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    folder = tempfile.mkdtemp(prefix="rayauth-", dir="/tmp")  # short: Ray's socket paths
    recorded = CURRENT_CLUSTER.read_text() if CURRENT_CLUSTER.exists() else None
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    start = [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--port", str(port),
        "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--temp-dir", folder,
        "--include-dashboard", "false", "--disable-usage-stats",
    ]  # fmt: skip
    try:
        started = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr[-2000:]
        yield f"127.0.0.1:{port}", token
    finally:
        stop_processes_of(folder)
        shutil.rmtree(folder, ignore_errors=True)
        if recorded is None:
            CURRENT_CLUSTER.unlink(missing_ok=True)
        else:
            CURRENT_CLUSTER.write_text(recorded)


def run(cli, address: str, results: Path, **env: str) -> subprocess.CompletedProcess:
    """A one-trial study on `address` with `env` for its token (this test has no RAY_AUTH_*)."""
    return cli(
        "run", "--rows", "SVD", "--seeds", "1", "--epochs", "1", "--set", "max_steps_per_epoch=2",
        "--address", address, "--results-dir", str(results), "--no-progress", "--no-report",
        env=env, timeout=300,
    )  # fmt: skip


def test_a_cluster_with_token_auth_is_joined_with_the_token_and_refuses_others(
    tmp_path, cluster_with_token, cli, monkeypatch
):
    address, token = cluster_with_token
    for name in [n for n in os.environ if n.startswith("RAY_AUTH")]:
        monkeypatch.delenv(name)
    joined = run(cli, address, tmp_path / "joined", RAY_AUTH_TOKEN_PATH=str(token))
    assert joined.returncode == 0, joined.stdout[-2000:] + joined.stderr[-2000:]
    assert "1 finished" in " ".join(joined.stdout.split())
    assert "InvalidAuthToken" not in joined.stderr, "the probe's refusal is not shown"

    wrong = run(cli, address, tmp_path / "wrong", RAY_AUTH_TOKEN=secrets.token_hex(32))
    missing = run(cli, address, tmp_path / "missing", RAY_AUTH_TOKEN_PATH=str(tmp_path / "none"))
    for result, folder, needle in (
        (wrong, "wrong", "refused this machine's token"),
        (missing, "missing", "asks for a token"),
    ):
        assert result.returncode == 2, result.stderr[-2000:]
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
        assert needle in lines[0] and "RAY_AUTH_TOKEN" in lines[0]
        assert not (tmp_path / folder / "mlflow.db").exists(), "found before the store is made"
