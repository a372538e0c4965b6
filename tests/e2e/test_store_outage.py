"""A real `mlflow server` on loopback killed and restarted mid-study (issue 14, item 2): trials
keep running while it is away, their writes wait in the spool and reach the server once each when
it is back. Two load-independent bounds say no trial waited for the server: while it was away the
trials logged epochs at (at least 70 % of) their own pace in the same study, and the study took
less extra time over an undisturbed one than the outage lasted (a trial that waited for the server
would add the whole outage; a wall-time ratio failed under a load of 17 on 2 cores)."""

import subprocess
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from svdablate.schema import EPOCH_METRICS, FINAL_OF, Metric, Tag, TrialStatus
from svdablate.training.faults import faults_env

EPOCHS = 16  # 4 trials on 2 slots, 1 s an epoch: ~40 s of trials around a ~20 s outage
TRIALS = 4


def _study(cli, results: Path, url: str) -> subprocess.Popen:
    return cli.start(
        "run", "--rows", "SVD,NS", "--seeds", "2", "--epochs", str(EPOCHS), "--smoke",
        "--results-dir", str(results), "--tracking-uri", url, "--no-progress", "--no-report",
        env=faults_env([{"sleep_per_epoch": 1}]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _finish(driver: subprocess.Popen) -> str:
    try:
        output, _ = driver.communicate(timeout=400)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output[-3000:]
    return output


def _parent_id(output: str) -> str:
    return output.split("parent run ", 1)[1].split(",", 1)[0].strip()


def _trial_runs(client: MlflowClient, parent_id: str):
    experiment = client.get_run(parent_id).info.experiment_id
    return client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent_id}'")


def _epochs_while_away(runs, client: MlflowClient, down_at: float, up_at: float):
    """(epochs the trials logged while the server was away, epochs their own pace predicts for
    that window): the pace is each trial's mean time per epoch over its whole run."""
    logged = predicted = 0.0
    for run in runs:
        history = client.get_metric_history(run.info.run_id, Metric.EPOCHS_COMPLETED)
        stamps = sorted(m.timestamp for m in history)
        pace = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        overlap = min(up_at, stamps[-1]) - max(down_at, stamps[0])
        predicted += max(0.0, overlap) / pace
        logged += sum(down_at < t < up_at for t in stamps)
    return logged, predicted


def test_a_server_outage_mid_study_stalls_no_trial_and_loses_no_write(
    tmp_path, cli, wait_for, mlflow_server, shared_ray
):
    server = mlflow_server
    client = MlflowClient(server.url)
    began = time.perf_counter()
    undisturbed = _finish(_study(cli, tmp_path / "undisturbed", server.url))
    undisturbed_s = time.perf_counter() - began
    earlier = {r.info.run_id for r in _trial_runs(client, _parent_id(undisturbed))}

    results = tmp_path / "outage"
    began = time.perf_counter()
    driver = _study(cli, results, server.url)

    def an_epoch_logged() -> bool:
        experiment = client.get_experiment_by_name("demo")
        runs = client.search_runs(
            [experiment.experiment_id], "metrics.epochs_completed >= 1", max_results=100
        )
        return any(r.info.run_id not in earlier for r in runs)

    assert wait_for(an_epoch_logged, 300), "no epoch was logged"
    down_at = time.time() * 1000
    server.kill()
    spooled = 0
    for _ in range(10):  # while it is away, writes wait in the spool
        time.sleep(1)
        spooled = max([spooled, *(p.stat().st_size for p in results.glob("studies/*.spool*"))])
    server.start()
    up_at = time.time() * 1000
    output = _finish(driver)
    outage_s = time.perf_counter() - began

    runs = _trial_runs(client, _parent_id(output))
    assert len(runs) == TRIALS, "one child run per trial"
    for run in runs:
        assert run.data.tags[Tag.STATUS] == TrialStatus.FINISHED
        for key in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, key)
            steps = sorted(m.step for m in history)
            if key in FINAL_OF:
                assert steps == [EPOCHS - 1], (key, steps)
            else:
                assert key in (*EPOCH_METRICS, Metric.EPOCHS_COMPLETED), key
                assert steps == list(range(EPOCHS)), (key, steps)
    logged, predicted = _epochs_while_away(runs, client, down_at, up_at)
    away_s = (up_at - down_at) / 1000
    print(
        f"undisturbed {undisturbed_s:.1f} s, outage run {outage_s:.1f} s, server away {away_s:.1f}"
        f" s, {logged:.0f} epochs logged meanwhile ({predicted:.1f} at the trials' own pace)"
    )
    assert predicted >= 2 * 5, f"the outage overlapped only {predicted:.1f} epochs of trials"
    assert logged >= 0.7 * predicted, f"{logged} epochs while away, {predicted:.1f} at pace"
    assert outage_s - undisturbed_s < away_s, (outage_s, undisturbed_s, away_s)
    assert spooled > 0, "no write waited in the spool while the server was away"
    assert not list(results.glob("studies/*.spool*")), "the spool was sent and removed"
