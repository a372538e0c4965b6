"""A cluster made by `ray start --head`, as the README tells users to, is joined by its address.

Ray (2.5x+) turns token auth on in `ray start` whenever the user holds a token, and a client given
the cluster's address sends no token unless RAY_AUTH_MODE=token: it retried for 20 s, then died in
a traceback. svdablate sends the user's token; a token the cluster refuses is one line, exit 2.
"""

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from svdablate.orchestrator import ray_cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("address", "environment", "sent"),
    [
        ("127.0.0.1:6379", {}, "token"),  # a token file and a concrete address: sent
        ("local", {}, None),  # a Ray of our own: Ray decides
        ("127.0.0.1:6379", {"RAY_AUTH_MODE": "disabled"}, "disabled"),  # the user's choice stays
    ],
)
def test_the_users_token_is_sent_to_a_cluster_joined_by_address(
    address, environment, sent, tmp_path, monkeypatch
):
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    ray_cluster._send_token(address)
    assert os.environ.get("RAY_AUTH_MODE") == sent


def test_no_token_no_auth_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(name, raising=False)
    assert not ray_cluster.ray_token_available()
    ray_cluster._send_token("127.0.0.1:6379")
    assert "RAY_AUTH_MODE" not in os.environ


def started_here(temp_dir: Path) -> list[int]:
    """The PIDs of the processes whose command line names `temp_dir` (that cluster's own)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if str(temp_dir).encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
    return [p for p in pids if p != os.getpid()]


@pytest.fixture
def ray_start_head():
    """`ray start --head` on loopback with a token of its own; its processes stopped by PID."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rayauth-", dir="/tmp"))  # short: socket paths
    token = temp_dir / "token"
    token.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(RAY_AUTH_TOKEN_PATH=str(token), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    port = free_port()
    ray = Path(sys.executable).with_name("ray")
    started = subprocess.run(
        [
            str(ray), "start", "--head", f"--port={port}", "--num-cpus=1",
            "--node-ip-address=127.0.0.1", "--include-dashboard=false",
            "--disable-usage-stats", f"--temp-dir={temp_dir}",
        ],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        assert "Token authentication is enabled" in started.stderr + started.stdout
        yield f"127.0.0.1:{port}", env
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in started_here(temp_dir):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.time() + 15
            while started_here(temp_dir) and time.time() < deadline:
                time.sleep(0.2)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_a_ray_start_cluster_is_joined_and_a_refused_token_is_one_line(ray_start_head, tmp_path):
    address, env = ray_start_head
    joined = subprocess.run(
        [
            sys.executable, "-c",
            "import ray; from svdablate.orchestrator.ray_cluster import connect_ray; "
            f"connect_ray({address!r}); print('CPUs', ray.cluster_resources()['CPU'])",
        ],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert joined.returncode == 0 and "CPUs 1.0" in joined.stdout, joined.stderr[-2000:]

    refused = subprocess.run(
        [
            sys.executable, "-m", "svdablate.cli", "run", "--rows", "SVD", "--seeds", "1",
            "--epochs", "1", "--no-progress", "--results-dir", str(tmp_path), "--address", address,
        ],
        env={**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr[-2000:]
    ours = [line for line in refused.stderr.splitlines() if not line.startswith("[")]
    assert ours == [
        f"Error: the Ray cluster at {address} refused this client's auth token: set "
        "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the cluster's token (`ray get-auth-token` "
        "on its head)"
    ], refused.stderr[-2000:]
    assert not list(tmp_path.glob("studies/*.json")), "no study was started"
