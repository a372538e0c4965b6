"""Faults a trial meets, made for real (issue 28 items 1, 2, 7; issue 27 item 2): a starting
checkpoint that runs code when unpickled, a trial that crashes, a driver killed with SIGKILL and
the trial checkpoints it left truncated."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from svdablate.schema import Tag
from svdablate.training.faults import faults_env

SMALL = ["--rows", "SVD", "--seeds", "1", "--no-progress", "--no-report", "--smoke"]


def runs_of(results: Path, role: str) -> list:
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`{Tag.ROLE}` = '{role}'", max_results=100)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text[-3000:]
    return lines[0]


def test_a_checkpoint_that_runs_code_when_loaded_is_refused_before_ray_starts(tmp_path, cli):
    marker = tmp_path / "code-ran"
    folder = tmp_path / "models"
    folder.mkdir()
    program = (
        "import os, sys, torch\n"
        "class Payload:\n"
        "    def __reduce__(self):\n"
        "        return (os.system, ('touch ' + sys.argv[2],))\n"
        "torch.save({'model': Payload()}, sys.argv[1])\n"
    )
    subprocess.run([sys.executable, "-c", program, str(folder / "SVD.pt"), str(marker)], check=True)
    results = tmp_path / "results"
    run = cli(
        "run", *SMALL, "--epochs", "1", "--checkpoints", str(folder), "--results-dir", str(results)
    )
    assert run.returncode == 2, run.stderr[-3000:]
    line = one_line(run.stderr)
    assert "SVD.pt" in line and "not plain tensors" in line, line
    assert not marker.exists(), "loading the checkpoint ran its code"
    assert not (results / "ray").exists(), "Ray started"

    import torch

    torch.save({"unrelated.weight": torch.zeros(3)}, folder / "SVD.pt")  # plain, fits nothing
    run = cli(
        "run", *SMALL, "--epochs", "1", "--checkpoints", str(folder), "--results-dir", str(results)
    )
    assert run.returncode == 2 and "does not fit" in one_line(run.stderr), run.stderr[-3000:]


def test_a_crashed_trial_carries_its_exception_and_traceback(tmp_path, cli, shared_ray):
    results = tmp_path / "results"
    run = cli(
        "run", *SMALL, "--epochs", "1", "--max-failures", "0", "--results-dir", str(results),
        env=faults_env([{"crash_at_epoch": 0}]),
    )  # fmt: skip
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    (trial,) = runs_of(results, "trial")
    assert trial.data.tags[Tag.STATUS] == "failed"
    assert trial.data.tags[Tag.ERROR] == "RuntimeError: injected crash at epoch 0"
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    trace = Path(
        client.download_artifacts(trial.info.run_id, "error.txt", str(tmp_path))
    ).read_text()
    assert "in inject" in trace and "RuntimeError: injected crash" in trace, trace


def _stop_mid_study(cli, wait_for, results: Path, sig: int = signal.SIGKILL) -> int:
    """A study of two 3-epoch trials whose driver gets `sig` once each trial has checkpointed
    an epoch (SIGKILL goes to its process group: the Ray it started dies with it); returns the
    driver's exit code."""
    driver = cli.start(
        "run", "--rows", "SVD,NS", "--seeds", "1", "--epochs", "3", "--smoke", "--no-progress",
        "--no-report", "--results-dir", str(results), "--set", "checkpoint_every_s=0",
        env=faults_env([{"sleep_per_epoch": 1.5}]),
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def both_checkpointed() -> bool:
        return len({p.parent.parent for p in results.glob("ray/*/*/checkpoint_*/state.pt")}) == 2

    try:
        assert wait_for(both_checkpointed, 300), "no checkpoint was written"
        wait_for(lambda: False, 1.5)  # Tune records the checkpoints in its experiment state
        if sig == signal.SIGKILL:
            os.killpg(driver.pid, sig)
        else:
            os.kill(driver.pid, sig)
        return driver.wait(180)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(30)


def test_sigterm_tags_the_running_trials_interrupted_with_their_study(tmp_path, cli, wait_for):
    results = tmp_path / "results"
    assert _stop_mid_study(cli, wait_for, results, signal.SIGTERM) == 1
    (parent,) = runs_of(results, "parent")
    assert parent.data.tags[Tag.STATUS] == "interrupted"
    statuses = {(r.data.tags[Tag.STATUS], r.info.status) for r in runs_of(results, "trial")}
    assert ("running", "RUNNING") not in statuses and ("interrupted", "KILLED") in statuses


def test_a_killed_driver_leaves_its_trials_interrupted_and_truncated_checkpoints_set_aside(
    tmp_path, cli, wait_for
):
    results = tmp_path / "results"
    _stop_mid_study(cli, wait_for, results)
    assert {r.data.tags[Tag.STATUS] for r in runs_of(results, "trial")} == {"running"}

    status = cli("status", "--results-dir", str(results))
    assert status.returncode == 1, status.stdout + status.stderr
    assert "interrupted" in status.stdout
    (parent,) = runs_of(results, "parent")
    assert parent.data.tags[Tag.STATUS] == "interrupted" and parent.info.status == "KILLED"
    trials = runs_of(results, "trial")
    assert {(r.data.tags[Tag.STATUS], r.info.status) for r in trials} == {("interrupted", "KILLED")}

    states = sorted(results.glob("ray/*/*/checkpoint_*/state.pt"))
    assert states
    for state in states:  # what a disk that filled, or a copy cut short, leaves
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    resumed = cli(
        "resume", "--latest", "--results-dir", str(results), "--no-progress", "--no-report"
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    for trial_dir in {state.parent.parent for state in states}:  # the one Tune restores from
        (kept,) = trial_dir.glob("checkpoint_*-state.pt.unreadable")
        assert str(kept) in resumed.stderr, resumed.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    trials = runs_of(results, "trial")
    assert len(trials) == 2
    for run in trials:
        assert (run.data.tags[Tag.STATUS], run.info.status) == ("finished", "FINISHED")
        assert run.data.tags[Tag.SET_ASIDE].startswith(str(results))
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_err")]
        assert sorted(steps) == [0, 1, 2], steps
