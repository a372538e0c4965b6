"""`svdablate ARGS` in a process forked from a server that has imported the libraries a command
imports (torch, MLflow, Ray Tune, scipy, pandas): the tests' `cli(...)` (tests/conftest.py).

A CLI process spends most of its CPU importing them (a `run` driver ~6 of its ~9 CPU-s, `status`
~2.5 of 2.7), and the end-to-end tests start ~60: on CI's 2 cores that was ~2.5 minutes. Each
call is still a process of its own running `python -m svdablate.cli` from the start (svdablate
itself is not preloaded), with the call's environment, working directory, stdio and exit status,
and a normal interpreter exit (atexit handlers, non-daemon threads). What differs from a fresh
interpreter: the preloaded libraries read their import-time environment variables once, when the
server started (from the pytest worker's environment), and the interpreter's hash seed is the
server's. `SVDABLATE_TEST_FORK_CLI=0` runs every call as a plain subprocess.

The server (one per pytest worker, started on first use) forks, per request, a waiter that forks
the command and reports its pid and then its exit status on the request's socket; the server
itself only accepts and forks, so it stays single-threaded, and it exits when its parent does.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

#: What every command imports, or one of `run`/`resume`/`report`: imported once, by the server.
PRELOAD = (
    "torch",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "ray",
    "ray.tune",
    "scipy.stats",
    "pandas",
    "pydantic",
    "typer",
    "rich",
)
ENABLE_ENV = "SVDABLATE_TEST_FORK_CLI"
PARENT_CHECK_S = 2.0  # how often the server checks that the pytest worker that started it lives


def enabled() -> bool:
    return os.environ.get(ENABLE_ENV, "1") != "0"


# ------------------------------------------------------------------------------------ the server
def _run_command(request: dict, fds: list[int]) -> None:
    """In the forked command process: become `python -m svdablate.cli ARGS` and run to exit."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDONLY)
    for source, target in ((null, 0), (fds[0], 1), (fds[1], 2)):
        os.dup2(source, target)
    for fd in (null, *fds):
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[0] = request["cwd"]  # as `python -m` puts it
    if "numpy" in sys.modules:  # a fresh interpreter seeds numpy's global generator by entropy
        sys.modules["numpy"].random.seed()
    import runpy

    kind, target = request["target"]
    sys.argv = [target, *request["args"]]
    if kind == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")
    sys.exit(0)


def _wait_for(connection: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked waiter: fork the command, send its pid, then its exit status, and exit."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        connection.close()
        _run_command(request, fds)  # raises SystemExit: the interpreter exits as a command's does
    for fd in fds:
        os.close(fd)
    try:
        connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        connection.sendall(json.dumps({"returncode": code}).encode() + b"\n")
    finally:
        os._exit(0)


def serve(path: str, parent: int) -> None:
    """The server's loop: accept a request (JSON line + the stdout/stderr fds), fork its waiter."""
    for module in PRELOAD:
        __import__(module)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    listener.settimeout(PARENT_CHECK_S)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the waiters are reaped by the kernel
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while os.getppid() == parent:
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            continue
        connection.settimeout(None)
        message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 2)
        request = json.loads(message)
        if os.fork() == 0:
            listener.close()
            _wait_for(connection, request, fds)
        connection.close()
        for fd in fds:
            os.close(fd)
    os.unlink(path)


# ------------------------------------------------------------------------------------ the client
class ForkedCli:
    """Starts the server on first use (per process) and runs commands through it."""

    def __init__(self) -> None:
        self._server: subprocess.Popen | None = None
        self._path = ""
        self._lock = threading.Lock()

    def _ensure_server(self) -> str:
        with self._lock:
            if self._server is None or self._server.poll() is not None:
                folder = tempfile.mkdtemp(prefix="svdablate-forked-cli-")
                self._path = str(Path(folder) / "socket")
                self._server = subprocess.Popen(
                    [sys.executable, __file__, self._path, str(os.getpid())],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                ready = self._server.stdout.readline()  # type: ignore[union-attr]
                if ready.strip() != "ready":
                    raise RuntimeError(f"the forked-CLI server did not start: {ready!r}")
            return self._path

    def run(
        self,
        target: tuple[str, str],
        args: tuple[str, ...] | list[str],
        env: dict[str, str],
        timeout: float,
        cwd: str | os.PathLike | None = None,
    ) -> subprocess.CompletedProcess:
        """Like `subprocess.run([python, "-m", module, *args], capture_output=True, text=True,
        timeout=…)` for `target` ("module", name), or `[python, path, *args]` for ("path", …)."""
        path = self._ensure_server()
        kind, name = target
        command = [sys.executable, *(["-m"] if kind == "module" else []), name, *args]
        request = {"target": [kind, name], "args": list(args), "env": env}
        request["cwd"] = str(Path(cwd or os.getcwd()).absolute())
        with (
            tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection,
        ):
            connection.connect(path)
            socket.send_fds(
                connection, [json.dumps(request).encode()], [out.fileno(), err.fileno()]
            )
            replies = connection.makefile("r")
            pid = json.loads(replies.readline())["pid"]
            connection.settimeout(timeout)
            try:
                code = json.loads(replies.readline())["returncode"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                out.seek(0)
                err.seek(0)
                raise subprocess.TimeoutExpired(command, timeout, out.read(), err.read()) from None
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(
                command,
                code,
                out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )

    def close(self) -> None:
        if self._server is not None and self._server.poll() is None:
            self._server.terminate()
            self._server.wait()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
