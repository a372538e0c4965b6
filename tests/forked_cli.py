"""`svdablate ARGS` in a process forked from a server that has imported the libraries a command
imports (torch, torchvision, MLflow, Ray, scipy, pandas, matplotlib): the tests' `cli(...)`
and `cli.start(...)` (tests/conftest.py).

A CLI process spends most of its CPU importing them (a `run` driver ~6 of its ~9 CPU-s, `status`
~2.5 of 2.7), and the end-to-end tests start ~70: on CI's 2 cores that was ~2.5 minutes. Each
call is still a process of its own running `python -m svdablate.cli` from the start (svdablate
itself is not preloaded), with the call's environment, working directory, stdio, session and exit
status, and a normal interpreter exit (atexit handlers, non-daemon threads). What differs from a
fresh interpreter: the preloaded libraries read their import-time environment variables once,
when the server started (but torch's thread count follows the call's OMP_NUM_THREADS, which the
pytest workers set to 1), the interpreter's hash seed is the server's, and the process is the
server's child, not the test's (`ForkedProcess` stands in for `subprocess.Popen`).
`SVDABLATE_TEST_FORK_CLI=0` runs every call in a fresh interpreter.

The server (one for the run, started by pytest-xdist's controller; else one per process, started
on first use) forks, per request, a waiter that forks
the command and reports its pid and then its exit status on the request's socket; the server
itself only accepts and forks, so it stays single-threaded (its preloaded objects frozen out of
the commands' garbage collections, which would copy their pages), and exits when its parent does.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

#: What every command imports, or one of `run`/`resume`/`report`: imported once, by the server.
PRELOAD = (
    "torch",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "ray",  # not ray.tune: its import draws from Ray's ID generator, which forks would then share
    "torchvision",  # FakeData: a smoke study's data check
    "scipy.stats",
    "pandas",
    "matplotlib.figure",  # the figures a study publishes
    "matplotlib.backends.backend_agg",
    "pydantic",
    "typer",
    "rich",
)
ENABLE_ENV = "SVDABLATE_TEST_FORK_CLI"
PARENT_CHECK_S = 2.0  # how often the server checks that the process that started it lives
READY_S = 300.0  # how long a client waits for a server to listen (its imports: ~6 CPU-s)
Target = tuple[str, str]  # ("module", "svdablate.cli") or ("path", "/a/script.py")


def enabled() -> bool:
    return os.environ.get(ENABLE_ENV, "1") != "0"


# ------------------------------------------------------------------------------------ the server
def _run_command(request: dict, fds: list[int]) -> None:
    """In the forked command process: become `python -m MODULE ARGS` and run to exit."""
    for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if request["new_session"]:
        os.setsid()
    for source, target in zip(fds, (0, 1, 2), strict=True):
        os.dup2(source, target)
    for fd in set(fds):
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[0] = request["cwd"]  # as `python -m` puts it
    if "torch" in sys.modules:  # a fresh interpreter sizes torch's pool: OMP_NUM_THREADS, ≤ cores
        asked = os.environ.get("OMP_NUM_THREADS", "")
        count = min(int(asked), request["threads"]) if asked.isdigit() and int(asked) > 0 else 0
        sys.modules["torch"].set_num_threads(count or request["threads"])
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
    for fd in set(fds):
        os.close(fd)
    try:
        connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        connection.sendall(json.dumps({"returncode": code}).encode() + b"\n")
    finally:
        os._exit(0)


def _receive(connection: socket.socket) -> tuple[dict, list[int]]:
    """A request: one JSON line, the command's stdin, stdout and stderr fds with its start."""
    message, fds, _, _ = socket.recv_fds(connection, 1 << 16, 3)
    while not message.endswith(b"\n"):
        more = connection.recv(1 << 16)
        if not more:
            raise ConnectionError("a request ended before its line did")
        message += more
    return json.loads(message), fds


def serve(path: str, parent: int) -> None:
    """The server's loop: accept a request, fork its waiter."""
    for module in PRELOAD:
        __import__(module)
    threads = sys.modules["torch"].get_num_threads()  # its default (the server's environment)
    gc.collect()
    gc.freeze()  # a command's collections skip (and so do not copy the pages of) what is preloaded
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    listener.settimeout(PARENT_CHECK_S)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the waiters are reaped by the kernel
    while os.getppid() == parent:
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            continue
        connection.settimeout(None)
        request, fds = _receive(connection)
        request["threads"] = threads
        if os.fork() == 0:
            listener.close()
            _wait_for(connection, request, fds)
        connection.close()
        for fd in set(fds):
            os.close(fd)
    os.unlink(path)


# ------------------------------------------------------------------------------------ the client
class ForkedProcess:
    """A command started through the server, with what the tests use of `subprocess.Popen`:
    `pid`, `returncode`, `poll`, `wait`, `communicate`, `send_signal`, `terminate`, `kill`."""

    def __init__(
        self, args: list[str], connection: socket.socket, pipes: dict[str, IO], text: bool
    ) -> None:
        self.args = args
        self.returncode: int | None = None
        self._connection = connection
        self._replies = connection.makefile("r")
        self.pid: int = json.loads(self._replies.readline())["pid"]
        self.stdout, self.stderr = pipes.get("stdout"), pipes.get("stderr")
        self._text = text
        self._output: dict[str, bytes] = {}
        self._readers = [  # started by `communicate`: until then the pipes are the caller's
            threading.Thread(target=self._read, args=(name, pipe), daemon=True)
            for name, pipe in pipes.items()
        ]
        self._waiter = threading.Thread(target=self._wait, daemon=True)
        self._waiter.start()

    def _read(self, name: str, pipe: IO) -> None:
        with pipe:
            self._output[name] = pipe.read()

    def _wait(self) -> None:
        line = self._replies.readline()
        if line:
            self.returncode = json.loads(line)["returncode"]
        self._connection.close()

    def _status(self) -> int | None:
        """The exit status; an error where the waiter ended without sending it (no made-up one)."""
        if self.returncode is None and not self._waiter.is_alive():
            raise ChildProcessError(f"the forked-CLI waiter of {self.pid} ended without its status")
        return self.returncode

    def poll(self) -> int | None:
        return self._status()

    def wait(self, timeout: float | None = None) -> int:
        self._waiter.join(timeout)
        if self._waiter.is_alive():
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self._status()  # type: ignore[return-value]

    def communicate(self, timeout: float | None = None) -> tuple[Any, Any]:
        """(stdout, stderr) read to their end (None where not a pipe), once the command exits."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in self._readers:
            if reader.ident is None:
                reader.start()
        for thread in (*self._readers, self._waiter):
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self._decoded("stdout"), self._decoded("stderr")

    def _decoded(self, name: str) -> Any:
        if name not in self._output:
            return None
        raw = self._output[name]
        return raw.decode(errors="replace") if self._text else raw

    def send_signal(self, number: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, number)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkedCli:
    """A client of one server: the one at `path` (pytest-xdist's controller starts one for all
    its workers, tests/conftest.py), else one it starts itself on first use."""

    def __init__(self, path: str | None = None) -> None:
        self._server: subprocess.Popen | None = None
        self.path = path or ""
        self._lock = threading.Lock()

    def launch(self) -> str:
        """Start a server, without waiting for its imports; returns the path it will listen at."""
        folder = tempfile.mkdtemp(prefix="svdablate-forked-cli-")
        self.path = str(Path(folder) / "socket")
        self._server = subprocess.Popen([sys.executable, __file__, self.path, str(os.getpid())])
        return self.path

    def _connect(self) -> socket.socket:
        """A connection to the server, once it listens (it binds its path after its imports)."""
        with self._lock:
            if not self.path:
                self.launch()
        deadline = time.monotonic() + READY_S
        while True:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                connection.connect(self.path)
                return connection
            except (FileNotFoundError, ConnectionRefusedError):
                connection.close()
            if self._server is not None and self._server.poll() is not None:
                raise RuntimeError(f"the forked-CLI server exited ({self._server.returncode})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no forked-CLI server listens at {self.path}")
            time.sleep(0.05)

    def start(
        self,
        target: Target,
        args: tuple[str, ...] | list[str],
        env: dict[str, str],
        *,
        cwd: str | os.PathLike | None = None,
        stdout: int | IO | None = None,
        stderr: int | IO | None = None,
        text: bool = False,
        start_new_session: bool = False,
    ) -> ForkedProcess:
        """Like `subprocess.Popen([python, "-m", module, *args], …)` for `target` ("module",
        name), or `[python, path, *args]` for ("path", …); stdout and stderr: None (this
        process's), `subprocess.PIPE`, `DEVNULL`, (stderr) `STDOUT`, or a file object or
        descriptor; stdin is /dev/null."""
        kind, name = target
        command = [sys.executable, *(["-m"] if kind == "module" else []), name, *args]
        request = {
            "target": [kind, name],
            "args": list(args),
            "env": env,
            "cwd": str(Path(cwd or os.getcwd()).absolute()),
            "new_session": start_new_session,
        }
        null = os.open(os.devnull, os.O_RDWR)
        ends: list[int] = [null]  # what the command gets as 0, 1, 2
        ours: dict[str, IO] = {}
        for name, where in (("stdout", stdout), ("stderr", stderr)):
            if where == subprocess.PIPE:
                read, write = os.pipe()
                ours[name] = os.fdopen(read, "rb")
                ends.append(write)
            elif where == subprocess.STDOUT:
                ends.append(ends[1])
            elif hasattr(where, "fileno") or (isinstance(where, int) and where >= 0):
                ends.append(os.dup(where if isinstance(where, int) else where.fileno()))
            else:
                ends.append(null if where == subprocess.DEVNULL else (1 if name == "stdout" else 2))
        try:
            connection = self._connect()
            socket.send_fds(connection, [json.dumps(request).encode() + b"\n"], ends)
        except BaseException:
            for pipe in ours.values():
                pipe.close()
            raise
        finally:
            for fd in set(ends) - {1, 2}:
                os.close(fd)
        return ForkedProcess(command, connection, ours, text)

    def run(
        self,
        target: Target,
        args: tuple[str, ...] | list[str],
        env: dict[str, str],
        timeout: float,
        cwd: str | os.PathLike | None = None,
    ) -> subprocess.CompletedProcess:
        """Like `subprocess.run(…, capture_output=True, text=True, timeout=…)` (see `start`)."""
        process = self.start(
            target, args, env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            out, err = process.communicate(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            raise subprocess.TimeoutExpired(process.args, timeout, out, err) from None
        return subprocess.CompletedProcess(process.args, process.wait(), out, err)

    def close(self) -> None:
        """Stop the server this client started (none: nothing to do)."""
        if self._server is not None:
            if self._server.poll() is None:
                self._server.terminate()
                self._server.wait()
            shutil.rmtree(Path(self.path).parent, ignore_errors=True)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
