"""The tests' forked CLI (tests/forked_cli.py) behaves as `subprocess.run` of a fresh interpreter:
the call's arguments, environment and working directory, its stdout, stderr and exit status, an
interpreter exit that runs atexit handlers and waits for threads, and a timeout that kills."""

import os
import subprocess
import sys
import textwrap
import time

import forked_cli
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


@pytest.fixture(scope="module")
def forked():
    runner = forked_cli.ForkedCli()
    yield runner
    runner.close()


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
