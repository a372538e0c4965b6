"""`ray start` nodes on this machine for the cluster tests: each in a process group of its own."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a node, a server, a driver)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_node(command: list[str], log: Path) -> subprocess.Popen:
    """A `ray start … --block` node with this process's environment (as it is now)."""
    with log.open("w") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ
        )


def stop_node(process: subprocess.Popen) -> None:
    """`ray start --block` stops the node's processes on SIGTERM; its group goes after."""
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
