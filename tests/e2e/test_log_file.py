"""A study sent to a file is readable there while it runs: plain, timestamped, flushed lines."""

import re
import subprocess

import pytest
from polling import poll as wait_for

from svdablate.training.faults import faults_env

pytestmark = pytest.mark.e2e

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d ")


def test_the_log_file_grows_while_the_study_runs(tmp_path, monkeypatch, shared_ray, cli):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    hooks = [{"sleep_per_epoch": 2.0}, {"rows": ["NS"], "bad_value_at_epoch": 1}]
    log = tmp_path / "study.log"
    arguments = [
        "run", "--rows", "SVD,NS", "--seeds", "1", "--epochs", "3",
        "--results-dir", str(tmp_path / "results"), "--no-report",
    ]  # fmt: skip
    with log.open("w") as out:
        study = cli.start(*arguments, env=faults_env(hooks), stdout=out, stderr=subprocess.STDOUT)
        try:
            started = wait_for(lambda: "trial SVD · seed 0 started" in log.read_text(), 240, 0.2)
            running = study.poll() is None
            seen = log.read_text()
            study.wait(240)
        finally:
            if study.poll() is None:
                study.kill()
    text = log.read_text()
    assert started and running, f"nothing in the log while the study ran:\n{text}"
    first = seen.splitlines()[0]
    assert STAMP.match(first) and " study demo: 2 trials " in first, first
    assert "parent run " in first and "tracking sqlite:///" in first, first
    lines = text.splitlines()
    assert all(STAMP.match(line) for line in lines), text
    assert any("trial SVD · seed 0 epoch 1/3: val_err " in line for line in lines), text
    assert any("trial SVD · seed 0 finished: best val_err " in line for line in lines), text
    assert any(
        "trial NS · seed 0 failed: ValueError: injected bad value at epoch 1" in line
        for line in lines
    ), text
    assert any("demo: 2 trials — 1 finished, 0 diverged, 1 failed" in line for line in lines)
    assert study.returncode == 1
    assert "\x1b[" not in text and "━" not in text, "terminal drawing in a file"
