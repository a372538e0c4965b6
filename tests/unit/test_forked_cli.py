"""The tests' forked CLI (tests/forked_cli.py) behaves as `subprocess.run` of a fresh interpreter:
the call's arguments, environment and working directory, its stdout, stderr and exit status, an
interpreter exit that runs atexit handlers and waits for threads, a timeout that kills, and a
started command (`cli.start`) with its own session that signals reach."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import atexit, os, sys, threading, time
    from pathlib import Path

    import numpy

    def last_words():
        Path("atexit.txt").write_text("ran")

    def slow_thread():
        time.sleep(0.5)
        Path("thread.txt").write_text("joined")

    atexit.register(last_words)
    threading.Thread(target=slow_thread).start()
    print(" ".join(sys.argv[1:]), os.environ["FORKED_PROBE"], os.getcwd(), sys.path[0])
    print(numpy.random.randint(1 << 30), file=sys.stderr)
    sys.exit(int(os.environ["FORKED_EXIT"]))
    """
)


@pytest.fixture
def forked(cli):
    """The worker's server, the one `cli` runs commands through."""
    return cli.forked


def test_a_script_sees_its_call_and_exits_as_a_fresh_interpreter(forked, tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "FORKED_PROBE": "env-ok", "FORKED_EXIT": "3"}
    done = forked.run(("path", str(script)), ["a", "b c"], env, 60, cwd=work)
    assert done.returncode == 3, done.stderr
    assert done.stdout.split() == ["a", "b", "c", "env-ok", str(work), str(work)]
    assert (work / "atexit.txt").read_text() == "ran"
    assert (work / "thread.txt").read_text() == "joined"  # waited for, as at a normal exit
    again = forked.run(("path", str(script)), [], {**env, "FORKED_EXIT": "0"}, 60, cwd=work)
    assert again.returncode == 0
    assert again.stderr != done.stderr  # numpy's global generator seeded afresh in each


def test_the_cli_answers_as_its_subprocess_does(forked, tmp_path):
    args = ["status", "--results-dir", "results"]
    env = dict(os.environ)
    done = forked.run(("module", "svdablate.cli"), args, env, 60, cwd=tmp_path)
    fresh = subprocess.run(
        [sys.executable, "-m", "svdablate.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )
    assert done.returncode == 2 and "no study under results/studies" in done.stderr


def test_a_call_past_its_timeout_is_killed(forked, tmp_path):
    script = tmp_path / "forever.py"
    script.write_text("import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(600)\n")
    began = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as expired:
        forked.run(("path", str(script)), [], dict(os.environ), 2, cwd=tmp_path)
    assert time.monotonic() - began < 30
    pid = int(expired.value.output.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"the timed-out command {pid} still runs")


def _state_of(pid: int) -> str:
    """What /proc says of `pid` and its threads (state, where it waits), or that it is gone."""
    try:
        threads = sorted(Path(f"/proc/{pid}/task").iterdir())
        return "; ".join(
            f"{t.name} {(t / 'stat').read_text().rsplit(')', 1)[1].split()[0]} "
            f"{(t / 'wchan').read_text()}"
            for t in threads
        )
    except OSError as exc:
        return f"gone ({exc})"


def _interrupted(start) -> tuple[int, str]:
    """Start the sleeper, Ctrl-C its process group once it runs: (exit status, its output)."""
    started = start(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    first = started.stdout.readline().decode()  # stderr's line: it goes first
    ready = started.stdout.readline().decode()
    pid, group = map(int, ready.split())
    assert pid == group == started.pid  # a session and group of its own
    assert started.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        started.wait(0.2)
    os.killpg(started.pid, signal.SIGINT)  # what Ctrl-C does to a foreground process group
    try:
        rest, err = started.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        started.kill()
        pytest.fail(f"no exit 60 s after Ctrl-C: {_state_of(started.pid)}")
    assert err is None and started.poll() == started.returncode
    return started.returncode, first + ready + rest.decode()


def test_a_started_command_has_its_session_pipes_and_signals(forked, tmp_path):
    """As a `svdablate run` driver does, the sleeper imports Ray (whose import sets the
    excepthook, and so the exit status of a KeyboardInterrupt: 1, not -SIGINT)."""
    script = tmp_path / "sleeper.py"
    script.write_text(
        "import os, sys, time\n"
        "import ray\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "print(os.getpid(), os.getpgid(0), flush=True)\n"
        "time.sleep(600)\n"
    )
    env = dict(os.environ)
    forked_code, forked_output = _interrupted(
        lambda **kw: forked.start(("path", str(script)), [], env, cwd=tmp_path, **kw)
    )
    fresh_code, fresh_output = _interrupted(
        lambda **kw: subprocess.Popen([sys.executable, str(script)], env=env, cwd=tmp_path, **kw)
    )
    assert forked_code == fresh_code
    for output in (forked_output, fresh_output):
        assert "to stderr" in output and output.rstrip().endswith("KeyboardInterrupt")


def test_each_command_draws_its_own_random_ids(forked, tmp_path):
    """numpy's global generator and Ray's ID generator (C++, seeded on first use: had a preloaded
    module drawn from it, every fork would draw the same IDs, and two drivers on one cluster
    put the same object: "Check failed: WarmupStore()")."""
    script = tmp_path / "draw.py"
    script.write_text(
        "import numpy\n"
        "from ray._raylet import ObjectID\n"
        "print(numpy.random.randint(1 << 30), ObjectID.from_random().hex())\n"
    )
    env = dict(os.environ)
    draws = [forked.run(("path", str(script)), [], env, 60, cwd=tmp_path) for _ in range(2)]
    assert all(d.returncode == 0 for d in draws), draws[0].stderr
    first, second = (d.stdout.split() for d in draws)
    assert first[0] != second[0] and first[1] != second[1]


@pytest.mark.parametrize("threads", ["1", "3", None])
def test_torch_uses_the_threads_a_fresh_interpreter_would(forked, tmp_path, threads):
    """OMP_NUM_THREADS sizes torch's pool when an interpreter starts: the server's was sized
    before the call's environment came (the pytest workers set 1: a command that computes with
    two threads on a loaded machine spins them against the other workers)."""
    script = tmp_path / "threads.py"
    script.write_text("import torch\nprint(torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    forked_run = forked.run(("path", str(script)), [], env, 60, cwd=tmp_path)
    fresh = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert forked_run.returncode == fresh.returncode == 0, forked_run.stderr + fresh.stderr
    assert forked_run.stdout == fresh.stdout


def test_a_file_takes_a_started_commands_output(forked, tmp_path):
    """As `Popen(stdout=file, stderr=STDOUT)`: both streams in the file, none in the worker's."""
    script = tmp_path / "talk.py"
    script.write_text("import sys\nprint('out', flush=True)\nprint('err', file=sys.stderr)\n")
    log = tmp_path / "talk.log"
    with log.open("w") as out:
        started = forked.start(
            ("path", str(script)), [], dict(os.environ), stdout=out, stderr=subprocess.STDOUT
        )
        assert started.wait(60) == 0
    assert log.read_text().split() == ["out", "err"]


def test_a_waiter_that_ends_without_the_status_is_an_error_not_a_made_up_status(forked, tmp_path):
    script = tmp_path / "sleeper.py"
    script.write_text("import time\ntime.sleep(600)\n")
    started = forked.start(("path", str(script)), [], dict(os.environ), start_new_session=True)
    try:
        waiter = int(Path(f"/proc/{started.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.kill(waiter, signal.SIGKILL)
        with pytest.raises(ChildProcessError, match="ended without its status"):
            started.wait(30)
    finally:
        os.killpg(started.pid, signal.SIGKILL)
