"""What a user finds in the MLflow UI after `svdablate run`, asserted through the MLflow API:
run names, provenance tags, the table, the report and plots on the parent run, the children's
datasets, and per-row summary metrics."""

import json

from mlflow import MlflowClient

from svdablate.schema import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    REPORT_ARTIFACT_DIR,
    ROW_STATS,
    Tag,
    row_metric_key,
)


def test_a_finished_study_is_readable_in_the_mlflow_ui(tmp_path, monkeypatch, cli, shared_ray):
    results = tmp_path / "results"
    run = cli(
        "run", "--rows", "SVD,NS", "--seeds", "2", "--epochs", "2", "--results-dir", str(results),
        "--no-progress", "--no-report",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("demo")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND  # opens on its runs
    (parent,) = client.search_runs([experiment.experiment_id], f"tags.`{Tag.ROLE}` = 'parent'")
    tags = parent.data.tags
    assert parent.info.run_name == f"demo · {tags[Tag.GRID_ID]}"
    for key in ("mlflow.user", "mlflow.source.name", "mlflow.source.type", Tag.HOST, Tag.PYTHON):
        assert tags.get(key), key
    for library in ("svdablate", "torch", "ray", "mlflow"):
        assert tags.get(Tag.VERSION_PREFIX + library), library
    assert len(tags.get("mlflow.source.git.commit", "")) == 40  # run from this git checkout

    children = client.search_runs([experiment.experiment_id], f"tags.`{Tag.ROLE}` = 'trial'")
    names = sorted(r.info.run_name for r in children)
    assert names == ["NS · seed 0", "NS · seed 1", "SVD · seed 0", "SVD · seed 1"]
    digests = set()
    for child in children:
        assert child.data.tags[Tag.DEVICE] == "cpu"
        (dataset_input,) = child.inputs.dataset_inputs
        dataset = dataset_input.dataset
        assert dataset.name == "digits"
        assert json.loads(dataset.profile) == {
            "train": 1437, "val": 360, "classes": 10, "channels": 1, "image_size": 16,
        }  # fmt: skip
        digests.add(dataset.digest)
    assert len(digests) == 1, "every trial saw the same data"

    files = {a.path for a in client.list_artifacts(parent.info.run_id, REPORT_ARTIFACT_DIR)}
    for name in ("summary.json", "summary.html", "summary.csv", "kappa.png", "val_err.png"):
        assert f"{REPORT_ARTIFACT_DIR}/{name}" in files, (name, files)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)  # load_table searches there
    table = client.load_table(
        experiment.experiment_id, f"{REPORT_ARTIFACT_DIR}/summary.json", [parent.info.run_id]
    )
    assert set(table["row"]) == {"SVD", "NS"}
    metrics = client.get_run(parent.info.run_id).data.metrics
    for row in ("SVD", "NS"):
        for stat in ROW_STATS:
            assert row_metric_key(stat, row) in metrics, (stat, row)
        assert metrics[row_metric_key("n_finished", row)] == 2
