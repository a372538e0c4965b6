"""The CLI behaves as CLIs do: --version, shell completion, typed choices listed in --help,
examples under every command, one line for a wrong option or type."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from svdablate import __version__, cli
from svdablate.report.render.formats import FORMATS
from svdablate.schema import REPORT_LAYOUTS
from svdablate.spec.presets import PRESETS

COMMANDS = ["plan", "run", "resume", "status", "report", "plot", "ui", "fields"]


def test_version(run_main):
    code, out, _ = run_main("--version")
    assert code == 0 and out.startswith(f"svdablate {__version__} (torch ")
    assert "ray " in out and "mlflow " in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_examples_in_its_help(command, monkeypatch, run_main):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_main(command, "--help")
    assert code == 0 and "Examples:" in out and f"svdablate {command}" in out


def _flat(text: str) -> str:
    """Help text without whitespace and box lines (choices wrap inside their column)."""
    return "".join(text.replace("│", " ").split())


def test_choices_are_listed_in_help(monkeypatch, run_main):
    monkeypatch.setenv("COLUMNS", "400")
    _, report_help, _ = run_main("report", "--help")
    text = _flat(report_help)
    assert "|".join(FORMATS) in text and "|".join(REPORT_LAYOUTS) in text
    assert "<best|final>" in text
    _, plan_help, _ = run_main("plan", "--help")
    assert "|".join(PRESETS) in _flat(plan_help)
    _, run_help, _ = run_main("run", "--help")
    assert "Exit codes: 0" in " ".join(run_help.split())


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--seeds", "abc"], "--seeds"),
        (["report", "--format", "xml"], "'xml' is not one of"),
        (["report", "--layout", "table9"], "'table9' is not one of"),
        (["run", "--nope"], "No such option: --nope"),
        (["plan", "--preset", "dmeo"], "'dmeo' is not one of"),
    ],
)
def test_a_wrong_option_or_type_is_one_line(args, needle, run_main):
    code, _, err = run_main(*args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0] and "--help" in lines[0]


def test_shell_completion_is_typers_own(tmp_path):
    env = {"_SVDABLATE_COMPLETE": "complete_bash", "COMP_WORDS": "svdablate run --preset ecc",
           "COMP_CWORD": "3", "PATH": "/usr/bin:/bin"}  # fmt: skip
    installed = Path(sys.executable).parent / "svdablate"  # the script's name keys completion
    result = subprocess.run(
        [str(installed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    offered = result.stdout.split()
    assert "eccv22-dbn-cifar10" in offered and "demo" not in offered, result.stdout
    assert cli._complete_presets("demo,iccv21-gcp-") == [
        "demo,iccv21-gcp-alexnet",
        "demo,iccv21-gcp-resnet50",
    ]
    assert "SVD+NOG" in cli._complete_rows("SVD+")


@pytest.mark.parametrize("exported", [None, "true"])
def test_ui_starts_mlflow_without_its_job_runner_unless_asked(
    exported, monkeypatch, run_main, tmp_path
):
    """`svdablate ui` execs `mlflow ui` with MLflow's GenAI job runner off (~10 processes and
    ~14 CPU-s a start, nothing a study's page needs); an exported value is the user's."""
    from svdablate.cli import read_commands

    if exported is None:
        monkeypatch.delenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", exported)
    started = []

    def execvp(program, command):
        started.append((command, os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION")))
        raise SystemExit(0)

    monkeypatch.setattr(read_commands.os, "execvp", execvp)
    (tmp_path / "mlflow.db").touch()
    code, _, err = run_main("ui", "--results-dir", str(tmp_path))
    assert code == 0 and started, err
    command, job_execution = started[0]
    assert command[1:4] == ["-m", "mlflow", "ui"]
    assert job_execution == (exported or "false")
