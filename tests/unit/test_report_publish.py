"""publish_study puts a study on its parent run: table, page, CSVs, figures, claims, metrics."""

from __future__ import annotations

import json
import tempfile

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from test_report import BEST_GAIN, KEPT, _child, _final, store  # noqa: F401  (store: the fixture)

from svdablate.report import publish_study, report_table
from svdablate.schema import ROW_STATS, Metric, Tag, row_metric_key

#: One `store` for the module's tests (test_report.py's `pytestmark` says why).
pytestmark = pytest.mark.xdist_group("report-publish")

MEAN, STD, KAPPA, N = ROW_STATS
TABLE = "report/eccv22-t4.json"  # the preset eccv22-dbn-cifar100 reproduces ECCV'22 Table 4
FILES = {
    TABLE,
    "report/eccv22-t4.html",
    "report/eccv22-t4.csv",
    "report/eccv22-t4.claims.csv",
    "report/kappa.png",
    "report/val_err.png",
}
DONE = 12  # the fixture's de-duplicated finished (11) and diverged (1) trials


def _history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    keys = client.get_run(run_id).data.metrics
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}


def _table(client: MlflowClient, run_id: str, path: str) -> pd.DataFrame:
    """The MLflow table `path` of the run, read as `log_table` wrote it (JSON, split orient;
    `MlflowClient.load_table` would search the global tracking URI, not this store)."""
    with tempfile.TemporaryDirectory() as folder:
        return pd.read_json(client.download_artifacts(run_id, path, folder), orient="split")


def test_publish_puts_the_study_on_its_parent_run(store, tmp_path):  # noqa: F811
    uri, parent = store["uri"], store["parent"]
    assert publish_study(uri, parent) == []
    client = MlflowClient(uri)
    assert {a.path for a in client.list_artifacts(parent, "report")} >= FILES
    run = client.get_run(parent)
    logged = json.loads(run.data.tags["mlflow.loggedArtifacts"])
    assert {"path": TABLE, "type": "table"} in logged  # what makes the UI render it as a table
    table = _table(client, parent, TABLE)
    assert list(table["row"]) == report_table(uri, parent).rows
    svd = table.set_index("row").loc["SVD"]
    assert svd["cifar100.val_err_mean"] == pytest.approx(np.mean(KEPT["SVD"]) - BEST_GAIN)
    client.download_artifacts(parent, "report", str(tmp_path))
    page = (tmp_path / "report" / "eccv22-t4.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 2
    assert (tmp_path / "report" / "kappa.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "NOG lowers the error vs SVD: supported" in run.data.tags[Tag.CLAIMS]
    error = Metric.BEST_VAL_ERR
    metrics = run.data.metrics
    for row, values in KEPT.items():
        best = np.array(values) - BEST_GAIN
        assert metrics[row_metric_key(MEAN, row, error)] == pytest.approx(best.mean())
        assert metrics[row_metric_key(N, row, error)] == len(values)
        if len(values) > 1:
            assert metrics[row_metric_key(STD, row, error)] == pytest.approx(np.std(best, ddof=1))
        else:
            assert row_metric_key(STD, row, error) not in metrics  # NaN is not logged
    assert metrics[row_metric_key(KAPPA, "SVD", error)] == pytest.approx(2e12)
    assert "best_val_err_mean/SVD-NOG-SN" in metrics  # `+` is not a metric-key character
    history = _history(client, parent)
    assert {steps[0][0] for steps in history.values()} == {DONE}


def test_a_second_publish_duplicates_nothing_and_a_resume_adds_a_step(store):  # noqa: F811
    uri = store["uri"]
    client = MlflowClient(uri)
    exp = client.get_run(store["parent"]).info.experiment_id
    tags = {Tag.ROLE: "parent", Tag.PRESET: "demo", Tag.ROWS: json.dumps(["SVD", "NS"])}
    parent = client.create_run(exp, tags=tags).info.run_id
    for seed, (svd, ns) in enumerate([(20.0, 19.0), (20.4, 19.2)]):
        _child(client, exp, parent, "SVD", seed, "finished", 2000 + seed, _final(svd))
        _child(client, exp, parent, "NS", seed, "finished", 2010 + seed, _final(ns))
    assert publish_study(uri, parent) == []
    first = _history(client, parent)
    rows = len(_table(client, parent, "report/summary.json"))
    assert publish_study(uri, parent) == []
    assert _history(client, parent) == first  # nothing logged twice
    assert len(_table(client, parent, "report/summary.json")) == rows == 2
    # `resume` finishes one more NS trial: NS's numbers change, SVD's do not.
    _child(client, exp, parent, "NS", 2, "finished", 2020, _final(19.9))
    assert publish_study(uri, parent) == []
    after = _history(client, parent)
    ns_mean = row_metric_key(MEAN, "NS")
    assert after[ns_mean] == [
        *first[ns_mean],
        (5, pytest.approx(np.mean([19.0, 19.2, 19.9]) - 0.5)),
    ]
    assert after[row_metric_key(MEAN, "SVD")] == first[row_metric_key(MEAN, "SVD")]
    for points in after.values():
        steps = [step for step, _ in points]
        assert len(steps) == len(set(steps))  # no (key, step) twice
    table = _table(client, parent, "report/summary.json").set_index("row")
    assert len(table) == 2 and table.loc["NS", "n"] == 3  # replaced, not appended


def test_publish_on_a_read_only_store_warns_once_and_writes_nothing(store, tmp_path, capsys):  # noqa: F811
    client = MlflowClient(store["uri"])
    exp = client.create_experiment("archived-publish", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(exp, tags={Tag.ROLE: "parent", Tag.PRESET: "demo"}).info.run_id
    _child(client, exp, parent, "SVD", 0, "finished", 3000, _final(20.0))
    read_only = f"sqlite:///file:{store['uri'].removeprefix('sqlite:///')}?mode=ro&uri=true"
    warnings = publish_study(read_only, parent)
    assert len(warnings) == 1 and warnings[0].startswith("warning: not attached to parent run(s)")
    assert capsys.readouterr().err == warnings[0] + "\n"
    assert client.get_run(parent).data.metrics == {}
    assert client.list_artifacts(parent) == []
