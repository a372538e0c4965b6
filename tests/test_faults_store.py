"""Faults of the places a study writes to and talks to, made for real (issue 28 items 3-6): a
tmpfs that fills mid-study or is full already, a tracking server killed, a store file truncated
or overwritten, a read-only bind mount and `chattr +i`, a web server where Ray should be. Each
ends in one line within seconds, and nothing trained is lost."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from polling import wait_for

from svdablate.schema import Tag

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts and chattr need root"),
]
SMALL = ["--rows", "SVD", "--seeds", "1", "--epochs", "1", "--smoke", "--no-progress"]
# "Within seconds", not the minutes of retries they took: a fault found before any trial runs
# (`run` checks the grid and its data first: 5-10 s alone, up to 30 s on a machine shared by six)
QUICK_S = 60


def cli(*args: str, env: dict | None = None, timeout: float = 300):
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "svdablate.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    result.seconds = time.monotonic() - began
    return result


def refused(result, *words: str) -> str:
    """The one error line of a command that stopped with exit code 2 within seconds."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for word in words:
        assert word in lines[0], lines[0]
    assert result.seconds < QUICK_S, f"{result.seconds:.1f} s: {lines[0]}"
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mounted(*commands: list[str], target: Path):
    """`target` with a mount on it (the commands that make it), unmounted afterwards."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        for command in commands:
            subprocess.run(command, check=True)
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory) -> Path:
    """A results dir holding one finished study (copied by each test that damages it)."""
    results = tmp_path_factory.mktemp("finished") / "results"
    run = cli("run", *SMALL, "--no-report", "--results-dir", str(results))
    assert run.returncode == 0, run.stderr[-3000:]
    return results


def copy_of(study: Path, folder: Path) -> Path:
    target = folder / "results"
    shutil.copytree(study, target)
    return target


# ---- item 5: damaged and read-only stores ---------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_a_damaged_store_is_one_line_for_status_resume_and_run(finished_study, tmp_path, damage):
    results = copy_of(finished_study, tmp_path)
    db = results / "mlflow.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3] if damage == "truncated" else os.urandom(len(data)))
    for command in (["status"], ["resume", "--latest", "--no-progress"], ["run", *SMALL]):
        refused(cli(*command, "--results-dir", str(results)), str(db))


def test_a_read_only_results_dir_reads_but_is_one_line_for_resume_and_run(finished_study, tmp_path):
    source = copy_of(finished_study, tmp_path)
    view = tmp_path / "read-only"
    bind = ["mount", "--bind", str(source), str(view)]
    remount = ["mount", "-o", "remount,bind,ro", str(view)]
    with mounted(bind, remount, target=view):
        status = cli("status", "--results-dir", str(view))
        assert status.returncode == 0 and "finished" in status.stdout, status.stderr[-2000:]
        for command in (["resume", "--latest", "--no-progress"], ["run", *SMALL]):
            refused(cli(*command, "--results-dir", str(view)), "Read-only file system", str(view))


def test_an_immutable_store_or_results_dir_is_one_line_for_resume(finished_study, tmp_path):
    results = copy_of(finished_study, tmp_path)
    for path in (results / "mlflow.db", results):
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            refused(
                cli("resume", "--latest", "--no-progress", "--results-dir", str(results)), str(path)
            )
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)


# ---- item 4: a tracking server that is down -------------------------------------------------
def test_a_tracking_server_that_is_down_is_said_in_seconds(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    port = url.rsplit(":", 1)[1]
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", port,
        "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(tmp_path / "artifacts"),
    ]  # fmt: skip
    server = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return True
        except OSError:
            return False

    results = tmp_path / "results"
    try:
        assert wait_for(healthy, 180), "mlflow server did not start"
        run = cli(
            "run", *SMALL, "--no-report", "--results-dir", str(results), "--tracking-uri", url
        )
        assert run.returncode == 0, run.stderr[-3000:]
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(30)
    for command in (["status"], ["resume", "--latest", "--no-progress"]):
        refused(cli(*command, "--results-dir", str(results)), url, "is down")


# ---- item 3: a full disk --------------------------------------------------------------------
def test_a_disk_that_fills_mid_study_stops_it_in_one_line_and_resume_finishes(tmp_path):
    disk = tmp_path / "disk"
    tmpfs = ["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(disk)]
    with mounted(tmpfs, target=disk):
        results = disk / "results"
        hooks = json.dumps([{"sleep_per_epoch": 1}])
        command = [
            sys.executable, "-m", "svdablate.cli", "run", "--rows", "SVD,NS", "--seeds", "1",
            "--epochs", "6", "--smoke", "--no-progress", "--no-report", "--results-dir",
            str(results), "--set", "checkpoint_every_s=0", "--set", f"test_hooks={hooks}",
        ]  # fmt: skip
        driver = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert wait_for(lambda: any(results.glob("ray/*/*/checkpoint_*")), 300, 0.2)
            filler = disk / "filler"  # another program's file takes what is left
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True)
            _, err = driver.communicate(timeout=300)
        finally:
            if driver.poll() is None:
                driver.kill()
        lines = [line for line in err.splitlines() if line.strip()]
        assert driver.returncode == 1 and len(lines) == 1, err[-3000:]
        assert "no space left on the device of" in lines[0] and str(results) in lines[0]
        assert "MiB free, the study needs at least" in lines[0] and "svdablate resume" in lines[0]
        client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
        experiments = [e.experiment_id for e in client.search_experiments()]
        (parent,) = client.search_runs(experiments, f"tags.`{Tag.ROLE}` = 'parent'")
        assert parent.data.tags[Tag.STATUS] == "interrupted"

        refused(cli("run", *SMALL, "--results-dir", str(disk / "other")), str(disk / "other"))

        filler.unlink()
        resumed = cli(
            "resume", "--latest", "--no-progress", "--no-report", "--results-dir", str(results)
        )
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        trials = client.search_runs(experiments, f"tags.`{Tag.ROLE}` = 'trial'")
        assert len(trials) == 2 and {r.data.tags[Tag.STATUS] for r in trials} == {"finished"}
        for run in trials:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_err")]
            assert sorted(steps) == list(range(6)), steps


# ---- item 6: an address where no Ray cluster is ---------------------------------------------
@pytest.fixture
def web_server():
    """A web server on a free loopback port: something answers there, but not Ray."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 30, 0.1)
        yield f"127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait(10)


def test_an_address_that_is_not_a_ray_cluster_is_one_line_in_seconds(web_server, tmp_path):
    results = ["--results-dir", str(tmp_path / "results")]
    refused(
        cli("run", *SMALL, *results, "--address", web_server),
        "not as a Ray cluster",
        "omit --address",
    )
    by_env = cli("run", *SMALL, *results, env={"RAY_ADDRESS": web_server})
    refused(by_env, "not as a Ray cluster", "unset RAY_ADDRESS")
    # `ray start` left /tmp/ray/ray_current_cluster naming that port (in a private mount
    # namespace: the machine's own file is left alone)
    script = (
        "mount -t tmpfs tmpfs /tmp/ray && "
        f"echo {web_server} > /tmp/ray/ray_current_cluster && "
        f"exec {sys.executable} -m svdablate.cli run {' '.join(SMALL)} --results-dir "
        f"{tmp_path / 'results'} --address auto"
    )
    began = time.monotonic()
    stale = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    stale.seconds = time.monotonic() - began
    refused(stale, "is stale", "not as a Ray cluster")
