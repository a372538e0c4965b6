"""Every preset, every row, protocol, precision and dataset on fake data (--smoke), in-process
(two processes: the same `train_trial` Ray would run, without its start-up per study); smoke
studies through Ray Tune and MLflow are the end-to-end tests' (tests/e2e/), and `plan` of
every preset.

Each trial here takes two training steps, the smoke study's 2 steps an epoch where it trains
one epoch, and one step an epoch where it trains two (the hybrid presets: the switch between
the epochs still runs): the same code paths, the second step on the first's optimizer state,
for 91 CPU-s of the test where four steps of the hybrid trials took 108 (measured alone)."""

import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest

from svdablate import cli
from svdablate.spec.presets import PRESETS
from svdablate.study.plan import StudyPlan

TRAINING_STEPS = 2  # a trial's, over its epochs (module docstring)


def _train(config_json: dict) -> tuple[str, str, dict]:
    """One smoke trial in a worker process: its id, status and last epoch's metrics."""
    import torch

    from svdablate.spec.config import TrialConfig
    from svdablate.training.loop import train_trial

    torch.set_num_threads(1)
    config = TrialConfig.model_validate(config_json)
    steps = max(1, TRAINING_STEPS // config.epochs)
    config = config.model_copy(update={"max_steps_per_epoch": steps})
    reported: list[dict] = []
    result = train_trial(config, lambda metrics, state: reported.append(metrics))
    return config.trial_id, result["status"], reported[-1] if reported else {}


@pytest.mark.slow
def test_every_preset_trains_every_smoke_trial():
    configs = [
        c.model_dump(mode="json")
        for name in sorted(PRESETS)
        for c in StudyPlan.create(preset=name, smoke=True, check=False).configs
    ]
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_train, configs))
    assert len(results) == len(configs) > 90
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
