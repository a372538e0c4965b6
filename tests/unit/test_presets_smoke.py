"""Every preset, every row, protocol, precision and dataset on fake data (--smoke): the demo
through Ray Tune and MLflow, the others' trials in-process (two processes: the same
`train_trial` Ray would run, without its start-up per study)."""

import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest
from mlflow.tracking import MlflowClient

from svdablate import cli
from svdablate.schema import Tag
from svdablate.spec.presets import PRESETS
from svdablate.study.plan import StudyPlan

THROUGH_RAY = "demo"


def _train(config_json: dict) -> tuple[str, str, dict]:
    """One smoke trial in a worker process: its id, status and last epoch's metrics."""
    import torch

    from svdablate.spec.config import TrialConfig
    from svdablate.training.loop import train_trial

    torch.set_num_threads(1)
    config = TrialConfig.model_validate(config_json)
    reported: list[dict] = []
    result = train_trial(config, lambda metrics, state: reported.append(metrics))
    return config.trial_id, result["status"], reported[-1] if reported else {}


@pytest.mark.slow
def test_the_demo_preset_runs_as_a_smoke_study_through_ray_and_mlflow(tmp_path):
    command = [
        sys.executable, "-m", "svdablate.cli", "run", "--preset", THROUGH_RAY, "--smoke",
        "--results-dir", str(tmp_path), "--no-progress", "--no-report", "--max-failures", "0",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not list((tmp_path / "ray").rglob("checkpoint_*")), "smoke runs drop checkpoints"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(THROUGH_RAY)
    runs = client.search_runs([experiment.experiment_id], f"tags.`{Tag.ROLE}` = 'trial'")
    expected = {
        c.trial_id for c in StudyPlan.create(preset=THROUGH_RAY, smoke=True, check=False).configs
    }
    assert {r.data.tags[Tag.TRIAL_ID] for r in runs} == expected
    assert {r.data.tags[Tag.STATUS] for r in runs} == {"finished"}
    for run in runs:
        assert "kappa_median" in run.data.metrics and "pre_svd_lr" in run.data.metrics


@pytest.mark.slow
def test_every_other_preset_trains_every_smoke_trial():
    configs = [
        c.model_dump(mode="json")
        for name in sorted(PRESETS)
        if name != THROUGH_RAY
        for c in StudyPlan.create(preset=name, smoke=True, check=False).configs
    ]
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_train, configs))
    assert len(results) == len(configs) > 80
    broken = [(t, s) for t, s, _ in results if s != "finished"]
    assert not broken, broken
    for trial_id, _, metrics in results:
        assert "kappa_median" in metrics and "pre_svd_lr" in metrics, trial_id


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_plan_of_every_preset(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["svdablate", "plan", "--preset", name])
    monkeypatch.setenv("COLUMNS", "200")
    try:
        cli.main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    trials = len(StudyPlan.create(preset=name, check=False).configs)
    assert f"{trials} trials" in " ".join(capsys.readouterr().out.split())
