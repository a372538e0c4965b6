"""Every preset: every row and protocol on fake data through Ray Tune and MLflow (--smoke)."""

import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from svdablate import cli
from svdablate.orchestrator.config import StudySpec
from svdablate.orchestrator.grid import expand
from svdablate.orchestrator.presets import PRESETS


@pytest.mark.slow
def test_every_preset_runs_as_a_smoke_test(tmp_path):
    names = sorted(PRESETS)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "svdablate.cli",
            "run",
            "--preset",
            ",".join(names),
            "--smoke",
            "--results-dir",
            str(tmp_path),
            "--no-progress",
            "--no-report",
            "--max-failures",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    leftover = list((tmp_path / "ray").rglob("checkpoint_*"))
    assert not leftover, "smoke runs drop their checkpoints once trials finish"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in names:
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None, name
        runs = client.search_runs([experiment.experiment_id], "tags.`svdablate.role` = 'trial'")
        expected = {c.trial_id for c in expand(StudySpec(preset=name, smoke=True))}
        assert {r.data.tags["svdablate.trial_id"] for r in runs} == expected, name
        statuses = {r.data.tags["svdablate.status"] for r in runs}
        assert statuses == {"finished"}, (name, statuses)
        for run in runs:
            assert "kappa_median" in run.data.metrics and "pre_svd_lr" in run.data.metrics


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_plan_of_every_preset(name, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["svdablate", "plan", "--preset", name])
    monkeypatch.setenv("COLUMNS", "200")
    try:
        cli.main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    trials = len(expand(StudySpec(preset=name)))
    assert f"{trials} trials" in " ".join(capsys.readouterr().out.split())
