"""Faults of the places a study writes to and talks to, made for real (issue 28 items 3-6): a
tmpfs that fills mid-study or is full already, a tracking server killed, a store file truncated
or overwritten, a read-only bind mount and `chattr +i`, a web server where Ray should be. Each
ends in one line within seconds, and nothing trained is lost."""

import os
import shutil
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from refusals import refused, timed

from svdablate.schema import Tag
from svdablate.training.faults import faults_env

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts and chattr need root")
SMALL = ["--rows", "SVD", "--seeds", "1", "--epochs", "1", "--smoke", "--no-progress"]


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
def finished_study(tmp_path_factory, cli, session_cluster) -> Path:
    """A results dir holding one finished study (copied by each test that damages it)."""
    results = tmp_path_factory.mktemp("finished") / "results"
    run = cli(
        "run", *SMALL, "--no-report", "--results-dir", str(results),
        env={"RAY_ADDRESS": session_cluster},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return results


#: The tests that copy `finished_study` run on one pytest-xdist worker (`--dist loadgroup`): one
#: study for all of them, not one per worker they land on.
SHARES_THE_FINISHED_STUDY = pytest.mark.xdist_group("finished-study")


def copy_of(study: Path, folder: Path) -> Path:
    target = folder / "results"
    shutil.copytree(study, target)
    return target


# ---- item 5: damaged and read-only stores ---------------------------------------------------
@SHARES_THE_FINISHED_STUDY
@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_a_damaged_store_is_one_line_for_status_resume_and_run(
    finished_study, tmp_path, cli, damage
):
    results = copy_of(finished_study, tmp_path)
    db = results / "mlflow.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3] if damage == "truncated" else os.urandom(len(data)))
    for command in (["status"], ["resume", "--latest", "--no-progress"], ["run", *SMALL]):
        refused(timed(cli, *command, "--results-dir", str(results)), str(db))


@SHARES_THE_FINISHED_STUDY
def test_a_read_only_results_dir_reads_but_is_one_line_for_resume_and_run(
    finished_study, tmp_path, cli
):
    source = copy_of(finished_study, tmp_path)
    view = tmp_path / "read-only"
    bind = ["mount", "--bind", str(source), str(view)]
    remount = ["mount", "-o", "remount,bind,ro", str(view)]
    with mounted(bind, remount, target=view):
        status = cli("status", "--results-dir", str(view))
        assert status.returncode == 0 and "finished" in status.stdout, status.stderr[-2000:]
        for command in (["resume", "--latest", "--no-progress"], ["run", *SMALL]):
            refused(
                timed(cli, *command, "--results-dir", str(view)), "Read-only file system", str(view)
            )


@SHARES_THE_FINISHED_STUDY
def test_an_immutable_store_or_results_dir_is_one_line_for_resume(finished_study, tmp_path, cli):
    results = copy_of(finished_study, tmp_path)
    for path in (results / "mlflow.db", results):
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            resume = ("resume", "--latest", "--no-progress", "--results-dir", str(results))
            refused(timed(cli, *resume), str(path))
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)


# ---- item 4: a tracking server that is down: test_store_outage.py, after its study -----------


# ---- item 3: a full disk --------------------------------------------------------------------
def test_a_disk_that_fills_mid_study_stops_it_in_one_line_and_resume_finishes(
    tmp_path, cli, wait_for, shared_ray
):
    disk = tmp_path / "disk"
    tmpfs = ["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(disk)]
    with mounted(tmpfs, target=disk):
        results = disk / "results"
        driver = cli.start(
            "run", "--rows", "SVD,NS", "--seeds", "1", "--epochs", "6", "--smoke",
            "--no-progress", "--no-report", "--results-dir", str(results),
            "--set", "checkpoint_every_s=0", env=faults_env([{"sleep_per_epoch": 1}]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
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

        other = disk / "other"
        refused(timed(cli, "run", *SMALL, "--results-dir", str(other)), str(other))

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
def web_server(port, wait_for):
    """A web server on a free loopback port: something answers there, but not Ray."""
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


def test_an_address_that_is_not_a_ray_cluster_is_one_line_in_seconds(web_server, tmp_path, cli):
    results = ["--results-dir", str(tmp_path / "results")]
    refused(
        timed(cli, "run", *SMALL, *results, "--address", web_server),
        "not as a Ray cluster",
        "omit --address",
    )
    by_env = timed(cli, "run", *SMALL, *results, env={"RAY_ADDRESS": web_server})
    refused(by_env, "not as a Ray cluster", "unset RAY_ADDRESS")
    # `ray start` left /tmp/ray/ray_current_cluster naming that port (in a private mount
    # namespace: the machine's own file is left alone)
    script = (
        "mount -t tmpfs tmpfs /tmp/ray && "
        f"echo {web_server} > /tmp/ray/ray_current_cluster && "
        f"exec {sys.executable} -m svdablate.cli run {' '.join(SMALL)} --results-dir "
        f"{tmp_path / 'results'} --address auto"
    )
    stale = timed(
        subprocess.run,
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    refused(stale, "is stale", "not as a Ray cluster")
