"""Bad input is one clear line on stderr, exit code 2, no traceback, before any trial starts."""

import subprocess
import sys

import pytest

from svdablate import cli


def run_main(monkeypatch, capsys, *args):
    """Run the installed entry point in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["svdablate", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


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
        (["run", "--preset", "demo,eccv22-dbn-cifar10", "--extend", "abc"], "one --preset"),
        (["report", "--results-dir", "/nonexistent"], "--results-dir"),
        (["resume"], "resume --latest"),
        (["resume", "--latest", "--results-dir", "/nonexistent"], "svdablate run"),
        (["status", "--results-dir", "/nonexistent"], "svdablate run"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if args[0] == "run":
        args = [*args, "--results-dir", str(tmp_path)]
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and all(x.startswith(("error: ", "warning: ")) for x in lines), err
    assert "Traceback" not in err
    assert needle.lower() in errors[0].lower()


def test_the_installed_command_reports_errors_the_same_way(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "svdablate.cli", "run", "--preset", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "valid presets" in result.stderr


def test_plan_prints_trials_and_gpu_hours_without_running(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["svdablate", "plan", "--preset", "eccv22-dbn-cifar100"])
    monkeypatch.setenv("COLUMNS", "200")
    try:
        cli.main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    out = " ".join(capsys.readouterr().out.split())
    assert "130 trials" in out and "GPU-hours" in out and "SVD+NOG+OW+OLR" in out
