"""docs/deploy/: each recipe parses, its `svdablate run` line is one `run` accepts and whose grid
`svdablate plan` takes, and its nodes hold whole trials of the resources `plan` shows."""

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from svdablate.cli import app

DEPLOY = Path(__file__).parents[2] / "docs" / "deploy"
PLAN_OPTIONS = ("--preset", "--seeds", "--rows", "--epochs", "--gpus-per-trial", "--checkpoints")


def rayjob() -> tuple[str, dict[str, float]]:
    spec = yaml.safe_load((DEPLOY / "rayjob.yaml").read_text())["spec"]
    (workers,) = spec["rayClusterSpec"]["workerGroupSpecs"]
    params = workers["rayStartParams"]
    return spec["entrypoint"], {"CPU": float(params["num-cpus"]), "GPU": float(params["num-gpus"])}


def cluster_launcher() -> tuple[str, dict[str, float]]:
    text = (DEPLOY / "cluster.yaml").read_text()
    config = yaml.safe_load(text)
    node = config["available_node_types"]["gpu"]["resources"]
    return _run_line(text), {"CPU": float(node["CPU"]), "GPU": float(node["GPU"])}


def slurm() -> tuple[str, dict[str, float]]:
    path = DEPLOY / "slurm.sbatch"
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    cpus = re.search(r"^#SBATCH --cpus-per-task=(\d+)", text, re.M)[1]
    gpus = re.search(r"^#SBATCH --gpus-per-task=(\d+)", text, re.M)[1]
    starts = re.findall(r"ray start [^&]*", text.replace("\\\n", " "))
    assert len(starts) == 2, starts  # the head, then a worker on every other node
    for start in starts:  # each node gives Ray what SLURM gave the task
        assert '--num-cpus="$SLURM_CPUS_PER_TASK"' in start and f"--num-gpus={gpus}" in start, start
    return _run_line(text), {"CPU": float(cpus), "GPU": float(gpus)}


def _run_line(text: str) -> str:
    (line,) = re.findall(r"svdablate run [^\n|]*", text)
    return line.strip()


def _options(command: str) -> list[str]:
    words = shlex.split(command)
    assert words[:2] == ["svdablate", "run"], command
    return words[2:]


RECIPES = {"rayjob.yaml": rayjob, "cluster.yaml": cluster_launcher, "slurm.sbatch": slurm}


@pytest.mark.parametrize("name", RECIPES)
def test_a_recipe_runs_a_grid_plan_accepts_on_nodes_that_hold_its_trials(name):
    command, node = RECIPES[name]()
    options = _options(command)
    run = typer.main.get_command(app).commands["run"]
    run.make_context("run", list(options))  # every option is one `run` takes
    pairs = dict(zip(options[0::2], options[1::2], strict=True))
    assert "--address" in pairs and "--storage-path" in pairs, "a cluster needs both"
    grid = [word for key in PLAN_OPTIONS if key in pairs for word in (key, pairs[key])]
    plan = CliRunner().invoke(app, ["plan", *grid], terminal_width=200)
    assert plan.exit_code == 0, plan.output
    shown = re.search(r"([\d.]+) GPU and ([\d.]+) CPUs per trial", " ".join(plan.output.split()))
    gpus, cpus = float(shown[1]), float(shown[2])
    assert gpus > 0 and node["CPU"] // cpus == node["GPU"] // gpus >= 1, (node, shown[0])
    text = " ".join((DEPLOY / name).read_text().split())
    assert f"each trial asks {cpus:g} CPUs and {gpus:g} GPU" in text, "its comment says plan's"
