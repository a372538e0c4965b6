"""Where a study's records go and are read from: --tracking-uri > MLFLOW_TRACKING_URI > the
results dir's own store, on run, resume, status and report; a copied results dir is its own."""

import shutil
from pathlib import Path

from mlflow.tracking import MlflowClient

from svdablate.schema import Tag


def parents(uri: str) -> list:
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`{Tag.ROLE}` = 'parent'")


SMALL = ["--rows", "SVD", "--seeds", "1", "--epochs", "1", "--no-progress", "--no-report"]


def test_the_environment_names_the_store_when_no_flag_does(tmp_path, cli, shared_ray):
    results = tmp_path / "results"
    env_uri = f"sqlite:///{tmp_path / 'env.db'}"
    env = {"MLFLOW_TRACKING_URI": env_uri, "MLFLOW_EXPERIMENT_NAME": "from-env"}
    run = cli("run", *SMALL, "--results-dir", str(results), env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert not (results / "mlflow.db").exists(), "the environment's store, not the default"
    (parent,) = parents(env_uri)
    assert MlflowClient(env_uri).get_experiment(parent.info.experiment_id).name == "from-env"
    # status and resume: the environment's store (the manifest also remembers it)
    assert cli("status", "--results-dir", str(results), env=env).returncode == 0
    assert cli("status", "--results-dir", str(results)).returncode == 0
    resumed = cli("resume", "--latest", "--results-dir", str(results), "--no-progress", env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # report: the environment's store; a flag beats it
    assert cli("report", "--results-dir", str(results), env=env).returncode == 0
    missing = tmp_path / "missing.db"
    flagged = cli("report", "--tracking-uri", f"sqlite:///{missing}", env=env)
    assert flagged.returncode == 2 and str(missing) in flagged.stderr
    # an environment store that lacks the study: one line, not a traceback
    other = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'other.db'}"}
    MlflowClient(other["MLFLOW_TRACKING_URI"]).search_experiments()
    status = cli("status", "--results-dir", str(results), env=other)
    assert status.returncode == 2 and "not in the MLflow store" in status.stderr


def test_a_copied_results_dir_reads_and_writes_its_own_store(tmp_path, cli, shared_ray):
    original = tmp_path / "original"
    run = cli("run", *SMALL, "--results-dir", str(original))
    assert run.returncode == 0, run.stderr[-2000:]
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)  # anything still pointing at the original now fails
    status = cli("status", "--results-dir", str(copy))
    assert status.returncode == 0 and "finished" in status.stdout, status.stderr[-2000:]
    report = cli("report", "--results-dir", str(copy), "--format", "csv")
    assert report.returncode == 0 and "SVD" in report.stdout, report.stderr[-2000:]
    resumed = cli("resume", "--latest", "--results-dir", str(copy), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not original.exists()
    assert Path(copy / "mlflow.db").exists()
