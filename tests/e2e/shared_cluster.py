"""One Ray cluster for every pytest-xdist worker of a run: the cluster of the end-to-end tests
that do not test Ray's own start, stop or death (`shared_ray` in conftest.py).

The first worker that needs it starts it in a process of its own (this file run as a script: it
holds a `ray.cluster_utils.Cluster` until SIGTERM); each worker counts itself in a state file
beside the workers' temp dirs, and the last one to leave stops it. A run cut short (Ctrl-C, a
crashed worker) leaves no cluster behind: the host stops it once no worker it counts runs.
One cluster instead of one per worker: a start (~5 CPU-s) and ~1.8 CPU-s a minute idle fewer
for each other worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

STATE_FILE = "shared-ray.json"  # {"address", "pid", "workers": [[worker id, its pid], …]}
STOP_TIMEOUT_S = 60
WATCH_S = 5  # how often the host looks for a worker still running
JOIN_S = 30  # the worker that started the host counts itself in within this


def start_cluster(**head_node_args: object):
    """A `ray.cluster_utils.Cluster` whose head node runs on 127.0.0.1 without a dashboard."""
    from ray.cluster_utils import Cluster

    head = {"node_ip_address": "127.0.0.1", "include_dashboard": False, **head_node_args}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    cluster.wait_for_nodes()
    return cluster


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / "shared-ray.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write(folder: Path, state: dict) -> None:
    partial = folder / f"{STATE_FILE}.partial"
    partial.write_text(json.dumps(state))
    partial.replace(folder / STATE_FILE)  # the host reads it without the lock


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not yet waited for, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def join(folder: Path, worker: str) -> str:
    """The address of the run's shared cluster, started now when no worker holds one; `worker`
    is counted in until it calls `leave`."""
    with _locked(folder):
        state = _read(folder)
        if state is None or not _alive(state["pid"]):
            with open(folder / "shared-ray.log", "a") as log:  # outlives the worker's stderr
                host = subprocess.Popen(
                    [sys.executable, __file__, str(folder)],
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    start_new_session=True,  # stopped by `leave`, not by a worker's Ctrl-C
                )
            line = host.stdout.readline() if host.stdout else ""
            if host.stdout:
                host.stdout.close()
            assert line.startswith("address "), f"the shared Ray cluster did not start: {line!r}"
            state = {"address": line.split()[1], "pid": host.pid, "workers": []}
        state["workers"].append([worker, os.getpid()])
        _write(folder, state)
        return state["address"]


def leave(folder: Path, worker: str) -> None:
    """Count `worker` out; the last one out stops the cluster and waits for its processes."""
    with _locked(folder):
        state = _read(folder)
        if state is None:
            return
        state["workers"] = [w for w in state["workers"] if w[0] != worker]
        if state["workers"]:
            _write(folder, state)
            return
        (folder / STATE_FILE).unlink()
        with contextlib.suppress(ProcessLookupError):
            os.kill(state["pid"], signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(state["pid"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state["pid"], signal.SIGKILL)


def _counted_worker_runs(folder: Path) -> bool:
    """Whether a worker the state file counts still runs (a state being written counts)."""
    path = folder / STATE_FILE
    if not path.exists():
        return False
    state = _read(folder)
    return state is None or any(_alive(pid) for _, pid in state["workers"])


def _host(folder: Path) -> None:
    """Start the cluster, print its address, hold it until SIGTERM or until no worker it
    counts runs (after the first has joined), then shut it down."""
    from svdablate.runtime.ray_cluster import LOCAL_RAY_CONFIG

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    # configured as the local Ray a study starts: this machine's CPUs, no prestarted workers
    cluster = start_cluster(num_cpus=os.cpu_count(), _system_config=LOCAL_RAY_CONFIG)
    try:
        print("address", cluster.address, flush=True)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # its reader may go
        deadline = time.monotonic() + JOIN_S
        while signal.sigtimedwait({signal.SIGTERM}, WATCH_S) is None:
            if time.monotonic() > deadline and not _counted_worker_runs(folder):
                break
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    _host(Path(sys.argv[1]))
