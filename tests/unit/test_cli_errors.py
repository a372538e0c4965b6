"""Bad input is one clear line on stderr, exit code 2, no traceback, before any trial starts."""

import sqlite3
import subprocess
import sys

import pytest

from svdablate import cli
from svdablate.errors import UserError
from svdablate.runtime import ray_cluster
from svdablate.spec.field_reference import reference_markdown


def assert_one_error_line(code, err, needle):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and all(x.startswith(("error: ", "warning: ")) for x in lines), err
    assert "Traceback" not in err
    assert needle.lower() in errors[0].lower(), errors[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--preset", "nope"], "valid presets"),
        (["run", "--preset", "dmeo"], "did you mean demo"),
        (["run", "--rows", "SVD+XYZ"], "XYZ"),
        (["run", "--rows", "QR-ITER"], "QR-ITER"),
        (["run", "--rows", ""], "no row given"),
        (["run", "--seeds", "0"], "--seeds 0"),
        (["run", "--epochs", "0"], "--epochs 0"),
        (["run", "--epochs", "-1"], "--epochs -1"),
        (["plan", "--epochs", "0"], "--epochs 0"),
        (["run", "--set", "nosuchkey=1"], "unknown key"),
        (["run", "--set", "lrr=0.1"], "did you mean lr"),
        (["run", "--set", "lr=abc"], 'lr="abc": must be a valid number'),
        (["run", "--set", "lr=-1"], "lr is float > 0"),
        (["run", "--set", "batch_size=0"], "batch_size=0"),
        (["run", "--set", "milestones=[10]"], "milestones=[10]"),
        (["run", "--set", "model_options.grops=2"], "did you mean model_options.groups"),
        (["run", "--set", "model_options.groups=x"], "model_options.groups"),
        (["run", "--set", "seed=3"], "--seeds"),
        (["run", "--set", "ow_map=sco"], "valid: matrix_exp, cayley, soc"),
        (["run", "--cpus-per-trial", "0"], "--cpus-per-trial 0"),
        (["run", "--gpus-per-trial", "1.5", "--smoke"], "whole number"),
        (["run", "--max-failures", "-1"], "--max-failures -1"),
        (["run", "--address", "127.0.0.1:1"], "ray start --head"),
        (["run", "--tracking-uri", "http://127.0.0.1:1"], "mlflow server"),
        (["run", "--preset", "eccv22-dbn-cifar10", "--data-dir", "/nonexistent"], "cifar"),
        (["run", "--set", "novalue"], "key=value"),
        (["run", "--preset", "demo,eccv22-dbn-cifar10", "--extend", "abc"], "one --preset"),
        (["run", "--extend", "abc", "--epochs", "3"], "no study abc"),
        (["report", "--results-dir", "/nonexistent"], "--results-dir"),
        (["resume"], "resume --latest"),
        (["resume", "--latest", "--results-dir", "/nonexistent"], "svdablate run"),
        (["status", "--results-dir", "/nonexistent"], "svdablate run"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, needle, tmp_path, monkeypatch, run_main):
    import ray

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if args[0] == "run":
        args = [*args, "--results-dir", str(tmp_path)]
    code, _, err = run_main(*args)
    assert_one_error_line(code, err, needle)
    assert not ray.is_initialized(), "the mistake must be found before Ray starts"


def test_a_results_dir_that_is_a_file(tmp_path, run_main):
    path = tmp_path / "results"
    path.write_text("not a folder")
    for args in (["run", "--results-dir", str(path)], ["report", "--results-dir", str(path)]):
        code, _, err = run_main(*args)
        assert_one_error_line(code, err, "is a file")


def test_a_malformed_store_is_one_line(tmp_path, run_main):
    (tmp_path / "mlflow.db").write_bytes(b"this is not sqlite" * 100)
    code, _, err = run_main("report", "--results-dir", str(tmp_path))
    assert_one_error_line(code, err, "cannot be opened")
    code, _, err = run_main("run", "--results-dir", str(tmp_path))
    assert_one_error_line(code, err, "cannot be opened")


def test_report_of_an_unknown_study_or_an_empty_store_is_one_line(tmp_path, run_main):
    import logging

    from mlflow import MlflowClient

    db = tmp_path / "mlflow.db"
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    MlflowClient(f"sqlite:///{db}").search_experiments()  # an empty, valid store
    code, _, err = run_main("report", "--results-dir", str(tmp_path))
    assert_one_error_line(code, err, "no svdablate")
    code, _, err = run_main("report", "0123456789abcdef", "--results-dir", str(tmp_path))
    assert_one_error_line(code, err, "0123456789abcdef")
    assert sqlite3.connect(db).execute("select count(*) from runs").fetchone() == (0,)


def test_a_bug_still_shows_its_traceback(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ValueError("a bug, not a user mistake")

    monkeypatch.setattr("svdablate.study.plan.StudyPlan.create", broken)
    monkeypatch.setattr(sys, "argv", ["svdablate", "plan"])
    with pytest.raises(ValueError, match="a bug"):
        cli.main()


def test_without_an_address_the_cli_starts_its_own_ray(tmp_path, monkeypatch):
    stale = tmp_path / "ray_current_cluster"
    stale.write_text("127.0.0.1:1")  # a dead `ray start` cluster leaves this behind
    monkeypatch.setattr(ray_cluster, "CURRENT_CLUSTER_FILE", stale)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_cluster.resolve_address(None) == "local"
    assert ray_cluster.resolve_address("local") == "local"
    with pytest.raises(UserError, match="stale"):
        ray_cluster.resolve_address("auto")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    with pytest.raises(UserError, match=r"127\.0\.0\.1:1"):
        ray_cluster.resolve_address(None)


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


def test_plan_prints_trials_schedule_and_gpu_hours_without_running(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["svdablate", "plan", "--preset", "eccv22-dbn-cifar100"])
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(cli.console, "width", 250)  # made at import, maybe in a narrower shell
    try:
        cli.main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    out = " ".join(capsys.readouterr().out.split())
    assert "130 trials" in out and "GPU-hours" in out and "SVD+NOG+OW+OLR" in out
    assert "×0.1 at epochs 100, 200, 300 (of 350)" in out
    assert "-0.0" not in out


def test_plan_shows_the_recipe_beyond_the_schedule(monkeypatch, capsys):
    """ICCV'21 presets clip the gradient norm at 5 (main.py); fine-grained fine-tuning runs the
    classifier at 5× the lr (finetune/finetune.sh); `plan` says both."""
    for preset, expected in (
        (
            "iccv21-gcp-alexnet",
            "batch 128 · SGD momentum 0.9, weight decay 0.0005 · classifier lr"
            " ×1 · gradient norm clipped at 5",
        ),
        ("iccv21-fgvc", "classifier lr ×5 · gradient norm clipped at 5"),
        ("eccv22-dbn-cifar10", "gradient norm not clipped"),
    ):
        monkeypatch.setattr(sys, "argv", ["svdablate", "plan", "--preset", preset])
        monkeypatch.setattr(cli.console, "width", 250)
        try:
            cli.main()
        except SystemExit as exc:
            assert exc.code in (0, None)
        assert expected in " ".join(capsys.readouterr().out.split())


def test_docs_config_md_documents_every_config_field():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()
    assert reference_markdown() in page, "regenerate with `make docs`"
