"""Bad input is one clear line on stderr, exit code 2, no traceback, before any trial starts."""

import subprocess
import sys

import pytest


def svdablate(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "svdablate.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--preset", "nope"], "valid presets"),
        (["run", "--rows", "SVD+XYZ"], "XYZ"),
        (["run", "--rows", "QR-ITER"], "QR-ITER"),
        (["run", "--address", "127.0.0.1:1"], "ray start --head"),
        (["run", "--tracking-uri", "http://127.0.0.1:1"], "mlflow server"),
        (["run", "--preset", "eccv22-dbn-cifar10", "--data-dir", "/nonexistent"], "cifar"),
        (["run", "--set", "novalue"], "key=value"),
        (["report", "--results-dir", "/nonexistent"], "--results-dir"),
        (["resume"], "resume --latest"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, needle, tmp_path):
    result = (
        svdablate(*args, "--results-dir", str(tmp_path))
        if args[0] == "run"
        else svdablate(*args, cwd=tmp_path)
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert needle.lower() in lines[0].lower()


def test_plan_prints_trials_and_gpu_hours_without_running():
    result = svdablate("plan", "--preset", "eccv22-dbn-cifar100")
    assert result.returncode == 0, result.stderr
    assert "130 trials" in result.stdout and "GPU-hours" in result.stdout
    assert "SVD+NOG+OW+OLR" in result.stdout
