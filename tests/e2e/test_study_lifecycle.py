"""A study's life through Ray Tune and MLflow: the README's Study API example, exit codes of
failed and interrupted studies, Ctrl-C and SIGTERM leaving a resumable study."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from svdablate.schema import Tag
from svdablate.training.faults import faults_env

README = Path(__file__).resolve().parents[2] / "README.md"


def trial_runs(results: Path):
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`{Tag.ROLE}` = 'trial'", max_results=1000)


def parent_run(results: Path):
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    (parent,) = client.search_runs(experiments, f"tags.`{Tag.ROLE}` = 'parent'")
    return parent


def test_the_readme_study_api_example_runs(tmp_path, monkeypatch, capsys, shared_ray):
    import ray

    text = README.read_text()
    code = re.search(r"<!-- study-api-example -->\n```python\n(.*?)```", text, re.S)[1]
    assert len([line for line in code.splitlines() if line.strip()]) <= 6
    monkeypatch.chdir(tmp_path)
    try:
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    study, outcome = namespace["study"], namespace["outcome"]
    assert outcome.exit_code == 0 and outcome.finished == 4
    assert list(study.table().table.index) == ["SVD", "NS"] or "SVD" in out
    assert "finished=4" in out
    assert study.parent_run_id in {p.name[:-5] for p in (tmp_path / "results/studies").iterdir()}
    from svdablate import Study

    again = Study.load(tmp_path / "results").run()  # nothing left to run: Ray never starts
    assert (again.exit_code, again.skipped, again.finished) == (0, 4, 4)
    assert not ray.is_initialized()


def test_failed_trials_exit_1_everywhere_and_a_bad_value_is_never_retried(
    tmp_path, cli, shared_ray
):
    starts = tmp_path / "starts.log"
    hooks = [{"rows": ["NS"], "bad_value_at_epoch": 0, "start_log": str(starts)}]
    args = ["--results-dir", str(tmp_path)]
    run = cli(
        "run", "--rows", "SVD,NS", "--seeds", "1", "--epochs", "1", "--smoke", "--no-progress",
        "--max-failures", "2", *args, env=faults_env(hooks),
    )  # fmt: skip
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert "1 failed" in " ".join(run.stdout.split())
    assert "svdablate resume" in run.stderr.strip().splitlines()[-1]
    assert starts.read_text().count("start-epoch-0") == 1, "a deterministic error is not retried"
    statuses = {r.data.tags[Tag.ROW]: r.data.tags[Tag.STATUS] for r in trial_runs(tmp_path)}
    assert statuses == {"SVD": "finished", "NS": "failed"}
    assert parent_run(tmp_path).data.tags[Tag.STATUS] == "failed"
    for command in (["status"], ["resume", "--latest", "--no-progress"], ["report"]):
        result = cli(*command, *args, env=faults_env(hooks))  # a rerun would log its start
        assert result.returncode == 1, (command, result.stderr[-2000:])
    assert starts.read_text().count("start-epoch-0") == 1, "resume does not rerun a bad value"


def _epochs_logged(results: Path) -> int:
    """The epochs the study's trials have logged so far (0 before its store exists)."""
    if not (results / "mlflow.db").exists():
        return 0
    try:
        runs = trial_runs(results)
    except Exception:
        return 0
    return int(sum(r.data.metrics.get("epochs_completed", 0) for r in runs))


def _a_trial_mid_training(results: Path) -> bool:
    """A trial is tagged running and has epochs left (SIGTERM then finds it running)."""
    try:
        runs = trial_runs(results)
    except Exception:  # the store is being written
        return False
    return any(
        r.data.tags.get(Tag.STATUS) == "running" and r.data.metrics.get("epochs_completed", 0) < 3
        for r in runs
    )


def _interrupt(cli, wait_for, results: Path, args: list[str], sig: int, group: bool, env=None):
    """Start `svdablate ARGS` (a study with a Ray of its own), send `sig` once its trials have
    logged an epoch more than they had and one of them is mid-training; returns the exit code,
    stdout and stderr."""
    before = _epochs_logged(results)

    def ready() -> bool:
        return _epochs_logged(results) > before and _a_trial_mid_training(results)

    driver = cli.start(
        *args,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(ready, 300), "no epoch was logged"
        if group:
            os.killpg(driver.pid, sig)  # Ctrl-C reaches the whole foreground process group
        else:
            os.kill(driver.pid, sig)
        out, err = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    return driver.returncode, out, err


def test_ctrl_c_and_sigterm_leave_a_resumable_study_that_resume_finishes(
    tmp_path, cli, wait_for, session_cluster
):
    """Ctrl-C stops `run` (exit 130), SIGTERM the `resume` that follows (exit 1), each with a Ray
    of its own: both leave the study interrupted with the command that resumes it, SIGTERM its
    running trials too (no child run is left running), and a last resume (on the shared
    cluster: a Ray started for it is not what this tests) finishes every trial once."""
    results = tmp_path / "results"
    hooks = [{"sleep_per_epoch": 1.5}]
    run = [
        "run", "--rows", "SVD,NS", "--seeds", "2", "--epochs", "3", "--smoke",
        "--results-dir", str(results), "--no-progress", "--no-report",
    ]  # fmt: skip
    code, out, err = _interrupt(
        cli, wait_for, results, run, signal.SIGINT, group=True, env=faults_env(hooks)
    )
    assert code == 130, out[-2000:] + err[-2000:]
    last = err.strip().splitlines()[-1]
    parent = parent_run(results)
    assert f"svdablate resume {parent.info.run_id} --results-dir {results}" in last
    assert parent.data.tags[Tag.STATUS] == "interrupted" and parent.info.status == "KILLED"
    before = trial_runs(results)
    assert any(r.data.tags[Tag.STATUS] != "finished" for r in before)

    resume = [
        "resume", parent.info.run_id, "--results-dir", str(results), "--no-progress", "--no-report",
    ]  # fmt: skip
    code, out, err = _interrupt(
        cli, wait_for, results, resume, signal.SIGTERM, group=False, env=faults_env(hooks)
    )
    assert code == 1, out[-2000:] + err[-2000:]
    assert "svdablate resume" in err.strip().splitlines()[-1]
    assert parent_run(results).data.tags[Tag.STATUS] == "interrupted"
    statuses = {(r.data.tags[Tag.STATUS], r.info.status) for r in trial_runs(results)}
    assert ("running", "RUNNING") not in statuses and ("interrupted", "KILLED") in statuses

    began = time.time()
    resumed = cli(*resume, env={**faults_env(hooks), "RAY_ADDRESS": session_cluster})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = trial_runs(results)
    assert len(after) == 4, "one MLflow child run per trial"
    assert {r.data.tags[Tag.STATUS] for r in after} == {"finished"}
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    for run in after:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_err")]
        assert sorted(steps) == [0, 1, 2], steps
    assert parent_run(results).data.tags[Tag.STATUS] == "finished"
    assert time.time() - began < 300
